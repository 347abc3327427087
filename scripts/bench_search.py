"""Dense top-k at scale: 10,000 queries against 500,000 x 384 synthetic vectors, top 100, in bounded memory.

Runs hnm's `search.topk` with its default blocks and reports the time and the peak resident memory above what the
two input matrices already hold (the issue's bound: 1 GiB). A sample of queries is checked against the plain
sort of their full score rows, so the speed is not bought with wrong answers.

    python scripts/bench_search.py [--docs 500000] [--queries 10000] [--k 100]   # writes scripts/results/bench_search.json
"""

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from hnm.search import topk

OUT = Path(__file__).resolve().parents[1] / "scripts" / "results"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=500_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    corpus = np.empty((args.docs, args.dim), dtype=np.float32)
    for s in range(0, args.docs, 50_000):  # in blocks, so that no temporary the size of the corpus inflates the peak
        block = rng.standard_normal((min(50_000, args.docs - s), args.dim), dtype=np.float32)
        corpus[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    base = rss_mb()
    t0 = time.perf_counter()
    scores, ids = topk(queries, corpus, args.k)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for q in rng.choice(args.queries, size=20, replace=False):
        full = corpus @ queries[q]
        expected = np.sort(full)[::-1][:args.k]
        # the blocked product and this matrix-vector product may differ in the last bit, so compare scores, not ids
        assert np.allclose(full[ids[q]], expected, atol=1e-6), f"query {q}: top-k differs from the full sort"
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
              "docs": args.docs, "queries": args.queries, "dim": args.dim, "k": args.k,
              "seconds": round(seconds, 2), "queries_per_s": round(args.queries / seconds, 1),
              "inputs_mb": round((corpus.nbytes + queries.nbytes) / 2 ** 20), "rss_with_inputs_mb": round(base),
              "peak_rss_mb": round(peak), "peak_above_inputs_mb": round(peak - base)}
    print(f"top-{args.k} of {args.queries:,} queries over {args.docs:,} x {args.dim}: {seconds:.1f} s "
          f"({result['queries_per_s']} queries/s); peak memory above the inputs {result['peak_above_inputs_mb']} MB "
          f"(inputs {result['inputs_mb']} MB); {result['machine']}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_search.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
