"""Encoding speed: hnm against sentence-transformers on the same 2,000 SciFact documents, in one run.

Both sides load the same files (hnm's verified cache), use all-MiniLM-L6-v2 with batch size 32 and maximum length
256, sort by length, and run on the same cores. Each configuration runs in its own child process so that its peak
resident memory is its own; the configurations take turns, and each figure is the median of `--rounds` runs (this
machine's speed drifts by 10% or more between runs; the best round of each is kept in the JSON too).
The embedding cache is off. The ratio is hnm as a user runs it against sentence-transformers as a user runs it.

hnm does two things by default that the reference does not, and the other rows give the reference each of them, so
the table shows how much of the difference each one is:
- it sets glibc's malloc to keep large freed blocks (hnm/allocator.py); the reference gets the same setting through
  glibc's MALLOC_*_THRESHOLD_ environment variables ("+malloc");
- it encodes two batches at once, each on its own share of torch's threads (`EmbedConfig.streams`; "hnm, one
  stream" turns that off); the reference gets the same through its multi-process pool of two processes of one thread
  each ("+malloc, 2 processes"; OMP_NUM_THREADS=1; the pool's start-up is not timed).
Prints a table and writes scripts/results/bench_encode.json.

    pip install -e '.[bench]'
    python scripts/bench_encode.py [--docs 2000] [--rounds 3] [--sides hnm,st]
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hnm import allocator  # its ENVIRONMENT gives the reference run the same setting

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
OUT = REPO / "scripts" / "results"
MODEL = "all-MiniLM-L6-v2"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SIDES = {  # id: (label, environment of its child process)
    "hnm": ("hnm", {}),
    "hnm-1stream": ("hnm, one stream", {}),
    "st": ("sentence-transformers", {}),
    "st-malloc": ("sentence-transformers+malloc", allocator.ENVIRONMENT),
    "st-malloc-pool": ("sentence-transformers+malloc, 2 processes", {**allocator.ENVIRONMENT, **ONE_THREAD}),
}


def load_docs(n: int) -> list:
    from hnm.data import document_text, read_corpus
    corpus = read_corpus(DATA)
    return [document_text(corpus[d]) for d in list(corpus)[:n]]


def child(side: str, precision: str, n: int, batch_size: int, vectors_out: str) -> None:
    """Encode in this process and print one JSON line: seconds, docs/s, peak RSS."""
    import torch

    from hnm.weights import fetch, read_lock
    docs = load_docs(n)
    spec = read_lock()[MODEL]
    folder = fetch(MODEL, quiet=True)
    if side.startswith("hnm"):
        from hnm.embed import EmbedConfig, Embedder
        model = Embedder(spec, folder, EmbedConfig(batch_size=batch_size, precision=precision, cache=False,
                                                   streams=1 if side == "hnm-1stream" else 0))
        model.encode(docs[:64], quiet=True)  # warm-up, as for the reference
        t0 = time.perf_counter()
        vectors = model.encode(docs, quiet=True)
    else:
        from sentence_transformers import SentenceTransformer, models
        word = models.Transformer(str(folder), max_seq_length=spec.max_length)
        st = SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean"),
                                          models.Normalize()], device="cpu")
        pool = st.start_multi_process_pool(["cpu", "cpu"]) if side == "st-malloc-pool" else None
        st.encode(docs[:64], batch_size=batch_size, pool=pool)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            vectors = st.encode(docs, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False,
                                pool=pool, chunk_size=None if pool is None else -(-n // 2))
    seconds = time.perf_counter() - t0
    if side == "st-malloc-pool":
        st.stop_multi_process_pool(pool)
    np.save(vectors_out, np.asarray(vectors, dtype=np.float32))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if side == "st-malloc-pool" else 0.0
    print(json.dumps({"seconds": seconds, "docs_per_s": n / seconds, "peak_rss_mb": peak_mb,
                      "workers_peak_rss_mb": workers_mb, "threads": torch.get_num_threads()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="float32,bfloat16")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"which of {', '.join(SIDES)} to run (hnm and st always)")
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "PRECISION"), help=argparse.SUPPRESS)
    ap.add_argument("--vectors", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.docs, args.batch_size, args.vectors)
        return
    sides = [s for s in SIDES if s in {"hnm", "st", *args.sides.split(",")}]
    tmp = OUT / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    results, rounds = {}, {}
    for precision in args.precisions.split(","):
        for rnd in range(args.rounds):
            for side in sides if rnd % 2 == 0 else sides[::-1]:
                if side == "st-malloc-pool" and precision != "float32":
                    continue  # the pool's processes would not see this process's autocast
                vec = tmp / f"encode-{side}-{precision}.npy"
                done = subprocess.run([sys.executable, __file__, "--child", side, precision, "--docs", str(args.docs),
                                       "--batch-size", str(args.batch_size), "--vectors", str(vec)],
                                      capture_output=True, text=True, check=True, env={**os.environ, **SIDES[side][1]})
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rounds.setdefault(f"{SIDES[side][0]} {precision}", []).append(row)
                print(f"  round {rnd + 1} {SIDES[side][0]:42s} {precision:9s} {row['docs_per_s']:7.1f} docs/s",
                      file=sys.stderr)
        ref = np.load(tmp / f"encode-st-{precision}.npy")
        ref32 = np.load(tmp / "encode-st-float32.npy") if (tmp / "encode-st-float32.npy").exists() else ref
        for side in (s for s in sides if f"{SIDES[s][0]} {precision}" in rounds):
            key = f"{SIDES[side][0]} {precision}"
            rows = sorted(rounds[key], key=lambda r: r["docs_per_s"])  # the median round (upper one of an even count)
            vectors = np.load(tmp / f"encode-{side}-{precision}.npy")
            results[key] = {**rows[len(rows) // 2], "rounds_docs_per_s": [r["docs_per_s"] for r in rounds[key]],
                            "best_docs_per_s": rows[-1]["docs_per_s"],
                            "max_abs_diff_vs_reference_same_precision": float(np.abs(vectors - ref).max()),
                            "min_cosine_vs_reference_float32": float((vectors * ref32).sum(1).min())}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}"
    print(f"\nEncoding {args.docs} SciFact documents, {MODEL}, batch {args.batch_size}, max length 256; {machine}")
    print(f"{'system':52s} {'docs/s':>7s} {'ratio':>6s} {'hnm/it':>6s} {'peak MB':>8s} {'max |diff|':>10s}")
    summary = {"machine": machine, "docs": args.docs, "batch_size": args.batch_size, "model": MODEL, "runs": results}
    for precision in args.precisions.split(","):
        ref = results[f"sentence-transformers {precision}"]["docs_per_s"]
        ours = results[f"hnm {precision}"]["docs_per_s"]
        summary[f"ratio_{precision}"] = ours / ref
        for side in (s for s in sides if f"{SIDES[s][0]} {precision}" in results):
            r = results[f"{SIDES[side][0]} {precision}"]
            r["ratio_to_reference"], r["hnm_ratio_to_it"] = r["docs_per_s"] / ref, ours / r["docs_per_s"]
            workers = f" + 2 x {r['workers_peak_rss_mb']:.0f}" if r.get("workers_peak_rss_mb") else ""
            print(f"{SIDES[side][0] + ' ' + precision:52s} {r['docs_per_s']:7.1f} {r['ratio_to_reference']:5.2f}x "
                  f"{r['hnm_ratio_to_it']:5.2f}x {r['peak_rss_mb']:8.0f}{workers} "
                  f"{r['max_abs_diff_vs_reference_same_precision']:10.2e}")
    (OUT / "bench_encode.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
