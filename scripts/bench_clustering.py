"""Clustering cost: fit time and peak memory of hnm's k-means, agglomerative clustering and Gaussian mixture against
scikit-learn's, in one run.

Two data sets, each algorithm with the settings mining uses (negatives.MineConfig), k = round(sqrt(N)):
- SciFact: the 5,183 documents' ensemble vectors (all-MiniLM-L6-v2 and all-mpnet-base-v2, each unit length scaled
  by sqrt(1/2) and concatenated: 1,152 dimensions, unit length), read through hnm's embedding cache; k = 72.
- Synthetic: 100,000 unit vectors in 384 dimensions around 1,000 random centres (bench_kmeans.gaussian_mixture,
  normalised); k = 316.

The fits, hnm's and scikit-learn's alike:
- k-means: hnm's spherical k-means (k-means++ then Lloyd, at most 25 iterations, tol 1e-4) against KMeans(lloyd,
  n_init=1, the same max_iter and tol) on the same unit vectors (Euclidean there: scikit-learn has no spherical
  form; on unit rows the assignments are the same, the centres differ by their length).
- agglomerative, Ward's and average linkage on cosine distance: both fit the same seeded sample of 4,096 documents
  (MineConfig.agglomerative_sample) against AgglomerativeClustering(the same linkage and metric). hnm then assigns
  every document to the nearest centre, timed apart ("assign"); scikit-learn has no such step.
- Gaussian mixture, diagonal, k-means++ start: on SciFact at mining's settings (at most 100 EM iterations, tol
  1e-3); on the synthetic data 3 iterations with tol=0 on both sides (one iteration is about 100 GFLOP in float64).
  scikit-learn is given float64 points, so both compute in float64 (given float32 it computes in float32); hnm
  keeps the float32 points and casts a block at a time. For SciFact the share of documents whose largest
  responsibility is below 0.99 is reported (gmm.py's reason for hard assignment).

Each fit runs in a fork of the process, which holds the points and both libraries but has computed nothing yet, so
no fit inherits another's freed memory or threads. A fit's time is the fit alone (perf_counter); its peak memory is
the growth of the fork's resident set during the fit: the kernel's high-water mark (VmHWM, reset to the current
resident set through /proc/self/clear_refs at the start) minus the resident set then. So it counts BLAS, OpenMP
and C allocations as well as NumPy's, and not the points themselves.

Threads: one BLAS and one OpenMP thread on both sides by default (threadpoolctl). The machine this was written on
has 2 cores that a long experiment keeps busy; there, two threads made scikit-learn's KMeans up to 10x slower (its
OpenMP threads wait on each other) and the comparison meaningless. `--threads 0` leaves the libraries' own counts.
Prints a table and writes scripts/results/bench_clustering.json; the vectors are kept as .npy under
scripts/results/tmp/ (git-ignored).

    pip install -e '.[bench]'
    python scripts/bench_clustering.py [--skip-synthetic] [--threads 1]
"""

import argparse
import json
import os
import platform
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import sklearn.cluster
import sklearn.mixture
from sklearn.exceptions import ConvergenceWarning

from hnm.agglomerative import AgglomerativeConfig, agglomerative
from hnm.data import atomic_write, document_text, read_corpus
from hnm.gmm import GMMConfig, gaussian_mixture
from hnm.kmeans import KMeansConfig, kmeans

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
OUT = REPO / "scripts" / "results"
TMP = OUT / "tmp"
SAMPLE, SEED = 4096, 42  # MineConfig's agglomerative_sample and seed


def scifact_vectors() -> Path:
    """The (5183, 1152) float32 ensemble vectors of SciFact's documents, as mining makes them, saved as .npy."""
    path = TMP / "scifact_ensemble_docs.npy"
    if not path.is_file():
        from hnm.embed import EmbedConfig, Embedder
        from hnm.ensemble import ensemble_vectors, parse_members
        from hnm.negatives import MineConfig
        texts = [document_text(doc) for doc in read_corpus(CORPUS).values()]
        members = parse_members(MineConfig().models)
        vectors = [Embedder.load(m.name, EmbedConfig(precision="float32")).encode(texts) for m in members]
        with atomic_write(path, "wb") as f:
            np.save(f, ensemble_vectors(vectors, [m.weight for m in members]), allow_pickle=False)
    return path


def synthetic_vectors() -> Path:
    """100,000 x 384 float32 unit vectors around 1,000 centres, saved as .npy."""
    path = TMP / "synthetic_unit_100k.npy"
    if not path.is_file():
        from bench_kmeans import gaussian_mixture
        x = gaussian_mixture(100_000, 384, 1_000, seed=1234)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        with atomic_write(path, "wb") as f:
            np.save(f, x, allow_pickle=False)
    return path


def status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (its high-water mark) of this process, MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak() -> None:
    """Set VmHWM to the current resident set (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def forked(x: np.ndarray, job: dict, threads: int) -> dict:
    """fit(x, job) in a fork of this process, with `threads` BLAS and OpenMP threads; its result comes back as JSON
    through a pipe (an error as its traceback)."""
    from threadpoolctl import threadpool_limits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: fit, write, leave without running the parent's clean-up
        os.close(read)
        try:
            with threadpool_limits(limits=threads or None):
                payload, status = json.dumps(fit(x, job)), 0
        except Exception:
            payload, status = json.dumps({"error": traceback.format_exc()}), 1
        with os.fdopen(write, "w") as f:
            f.write(payload)
        os._exit(status)
    os.close(write)
    with os.fdopen(read) as f:
        result = json.loads(f.read() or '{"error": "the fit died without a word (killed for memory?)"}')
    os.waitpid(pid, 0)
    if "error" in result:
        raise RuntimeError(f"{job['name']} {job['algo']} {job['side']}:\n{result['error']}")
    return result


def sizes(labels: np.ndarray, k: int) -> dict:
    counts = np.bincount(labels, minlength=k)
    return {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max()),
            "empty": int((counts == 0).sum())}


def fit(x: np.ndarray, job: dict) -> dict:
    """Time one fit on (N, D) points and measure the memory it needed."""
    k, algo, side = job["k"], job["algo"], job["side"]
    if algo in ("ward", "average"):  # the seeded sample mining fits on (negatives._sample)
        rows = np.sort(np.random.default_rng(SEED).choice(len(x), SAMPLE, replace=False))
        points = x[rows]
    elif algo == "gmm" and side == "sklearn":
        points = x.astype(np.float64)
    else:
        points = x
    out: dict = {}
    reset_peak()
    before = status_mib("VmRSS")
    t0 = time.perf_counter()
    if algo == "kmeans" and side == "hnm":
        r = kmeans(points, KMeansConfig(k=k, spherical=True, max_iter=job["max_iter"], tol=job["tol"], seed=SEED))
        out.update(n_iter=r.n_iter, objective=r.inertia, clusters=sizes(r.labels, k))
    elif algo == "kmeans":
        r = sklearn.cluster.KMeans(k, n_init=1, max_iter=job["max_iter"], tol=job["tol"], algorithm="lloyd",
                                   random_state=SEED).fit(points)
        out.update(n_iter=int(r.n_iter_), clusters=sizes(r.labels_, k))
    elif side == "hnm" and algo in ("ward", "average"):
        r = agglomerative(points, AgglomerativeConfig(k=k, linkage=algo))
        out["fit_seconds"] = time.perf_counter() - t0
        labels = r.predict(x)
        out["assign_seconds"] = time.perf_counter() - t0 - out["fit_seconds"]
        out.update(top_height=float(r.heights[-1]), clusters=sizes(labels, k), sample_clusters=sizes(r.labels, k))
    elif algo in ("ward", "average"):
        r = sklearn.cluster.AgglomerativeClustering(k, linkage=algo, metric="euclidean" if algo == "ward" else "cosine",
                                                    compute_distances=True).fit(points)
        out.update(top_height=float(r.distances_.max()), sample_clusters=sizes(r.labels_, k))
    elif side == "hnm":
        r = gaussian_mixture(points, GMMConfig(k=k, max_iter=job["max_iter"], tol=job["tol"], seed=SEED))
        out.update(n_iter=r.n_iter, objective=r.lower_bound, clusters=sizes(r.labels, k))
    else:
        with warnings.catch_warnings():  # tol=0 never converges: the synthetic case asks for 3 iterations exactly
            warnings.simplefilter("ignore", ConvergenceWarning)
            r = sklearn.mixture.GaussianMixture(k, covariance_type="diag", init_params="k-means++",
                                                max_iter=job["max_iter"], tol=job["tol"], random_state=SEED).fit(points)
        out.update(n_iter=int(r.n_iter_), objective=float(r.lower_bound_), clusters=sizes(r.predict(points), k))
    out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = status_mib("VmHWM") - before
    if algo == "kmeans" and side == "sklearn":  # hnm's objective, sum of 1 - cos to the normalised centre
        unit = r.cluster_centers_ / np.linalg.norm(r.cluster_centers_, axis=1, keepdims=True)
        out["objective"] = float(len(points) - np.einsum("nd,nd->", points, unit[r.labels_], dtype=np.float64))
    if algo == "gmm" and side == "hnm" and job["name"] == "SciFact":
        log_prob = r.log_prob(points)  # (N, K)
        top = log_prob.max(axis=1)
        largest = 1 / np.exp(log_prob - top[:, None]).sum(axis=1)  # the largest responsibility of each point
        out["share_below_0.99"] = float((largest < 0.99).mean())
    return out


def cases(skip_synthetic: bool) -> list:
    """Every fit, hnm's then scikit-learn's for each algorithm, with its data set, k, iterations and tolerance."""
    data = [("SciFact", scifact_vectors(), 72, (100, 1e-3))]
    if not skip_synthetic:
        data.append(("synthetic", synthetic_vectors(), 316, (3, 0.0)))
    jobs = []
    for name, path, k, gmm in data:
        settings = {"kmeans": (25, 1e-4), "ward": (None, None), "average": (None, None), "gmm": gmm}
        jobs += [{"name": name, "data": str(path), "k": k, "algo": algo, "max_iter": it, "tol": tol, "side": side}
                 for algo, (it, tol) in settings.items() for side in ("hnm", "sklearn")]
    return jobs


def run(jobs: list, threads: int) -> list:
    rows, points = [], {}
    for job in jobs:
        if job["data"] not in points:
            points = {job["data"]: np.load(job["data"], allow_pickle=False)}  # one data set held at a time
        result = forked(points[job["data"]], job, threads)
        rows.append({**{k: job[k] for k in ("name", "algo", "side", "k", "max_iter", "tol")}, **result})
        extra = {k: v for k, v in result.items() if k not in ("seconds", "peak_mib")}
        print(f"  {job['name']:<10} {job['algo']:<8} {job['side']:<8} {result['seconds']:8.2f} s "
              f"{result['peak_mib']:8.1f} MiB  {json.dumps(extra)}", flush=True)
    return rows


def machine() -> dict:
    from threadpoolctl import threadpool_info
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    flags = open("/proc/cpuinfo").read()
    blas = [f"{p['internal_api']} {p['version']}" for p in threadpool_info() if p["user_api"] == "blas"]
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags],
            "avx2": "avx2" in flags, "platform": platform.platform(), "numpy": np.__version__,
            "sklearn": sklearn.__version__, "blas": blas, "load_average_at_start": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-synthetic", action="store_true", help="only the SciFact case")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and OpenMP threads of both sides (default 1; 0: the libraries' own counts)")
    args = parser.parse_args()
    jobs = cases(args.skip_synthetic)  # makes the vectors first if they are not saved yet
    info = machine()
    info["threads"] = args.threads or "the libraries' own"
    print(f"{info['cpu']}, {info['cpu_count']} CPUs (bf16 units: {', '.join(info['bf16']) or 'none'}); numpy "
          f"{info['numpy']} ({', '.join(info['blas'])}), scikit-learn {info['sklearn']}; {info['threads']} threads; "
          f"load average {info['load_average_at_start'][0]:.2f}")
    rows = run(jobs, args.threads)
    info["load_average_at_end"] = os.getloadavg()

    print(f"\n{'data':<11}{'algorithm':<22}{'hnm s':>8}{'(assign)':>10}{'sklearn s':>11}{'hnm MiB':>9}"
          f"{'sklearn MiB':>13}{'iterations':>12}")
    label = {"kmeans": "k-means", "ward": "Ward, sample", "average": "average cos, sample", "gmm": "GMM diagonal"}
    for h, s in zip(rows[::2], rows[1::2]):
        assign = f"{h['assign_seconds']:.2f}" if "assign_seconds" in h else ""
        iters = f"{h['n_iter']} / {s['n_iter']}" if "n_iter" in h else ""
        print(f"{h['name']:<11}{label[h['algo']]:<22}{h['seconds']:>8.2f}{assign:>10}{s['seconds']:>11.2f}"
              f"{h['peak_mib']:>9.1f}{s['peak_mib']:>13.1f}{iters:>12}")
    report = {"machine": info, "sample": SAMPLE, "seed": SEED,
              "memory": "growth of the resident set during the fit: VmHWM (reset just before) minus VmRSS before",
              "rows": rows}
    with atomic_write(OUT / "bench_clustering.json") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {OUT / 'bench_clustering.json'}")


if __name__ == "__main__":
    main()
