"""Mining at scale: 1,000,000 x 384 synthetic document vectors and 20,000 queries, through hnm's mining job.

The documents are unit vectors drawn around 5,000 random topic centres; each query is a noisy copy of one document,
its only positive. The job runs with the default ensemble settings (k = round(sqrt(N)) = 1,000 spherical k-means
clusters fitted on a 100,000-document sample, 2 probed clusters, window 100, the 95% ceiling; 4 negatives, none
random, as when it was first measured) on the given vectors (no encoder). Reported: wall time of each phase and peak resident memory, and that peak minus the
memory held once the inputs exist, which the issue bounds at 2 GiB.

    python scripts/bench_mine_scale.py [--docs 1000000] [--queries 20000]   # writes scripts/results/bench_mine_scale.json
"""

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from hnm.ensemble import Ensemble, Member
from hnm.negatives import MineConfig
from hnm.miner import run

OUT = Path(__file__).resolve().parents[1] / "scripts" / "results"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n_docs: int, n_queries: int, dim: int, topics: int, seed: int):
    """Unit document vectors around random topic centres, in place and in blocks (no float64 temporaries)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim), dtype=np.float32)
    docs = np.empty((n_docs, dim), dtype=np.float32)
    for s in range(0, n_docs, 100_000):
        e = min(s + 100_000, n_docs)
        docs[s:e] = centres[rng.integers(0, topics, e - s)] + 0.6 * rng.standard_normal((e - s, dim), dtype=np.float32)
        docs[s:e] /= np.linalg.norm(docs[s:e], axis=1, keepdims=True)
    source = rng.choice(n_docs, size=n_queries, replace=False)
    queries = docs[source] + 0.5 * rng.standard_normal((n_queries, dim), dtype=np.float32) / np.sqrt(dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return docs, queries, source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    docs, queries, source = synthetic(args.docs, args.queries, args.dim, 5_000, args.seed)
    corpus = {f"d{i}": {"title": "", "text": f"doc {i}"} for i in range(args.docs)}
    query_texts = {f"q{i}": f"query {i}" for i in range(args.queries)}
    qrels = {f"q{i}": {f"d{d}": 1} for i, d in enumerate(source.tolist())}
    t_inputs = time.perf_counter() - t0
    base = rss_mb()
    inputs_mb = (docs.nbytes + queries.nbytes) / 2 ** 20
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stats = run(corpus, query_texts, qrels, MineConfig(models="synthetic", num_negatives=4, random_share=0.0),
                    Path(tmp) / "mined.jsonl",
                    ensemble=Ensemble([Member("synthetic")], [docs], [queries]), quiet=False)
    t_mine = time.perf_counter() - t1
    peak = peak_mb()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
              "docs": args.docs, "queries": args.queries, "dim": args.dim, "seconds_inputs": round(t_inputs, 1),
              "seconds_mining": round(t_mine, 1), "input_matrices_mb": round(inputs_mb),
              "rss_with_inputs_mb": round(base), "peak_rss_mb": round(peak),
              "peak_above_inputs_mb": round(peak - base), "queries_mined": stats["queries"],
              "queries_with_too_few_negatives": stats["queries_with_too_few_negatives"],
              "flagged": stats["likely_false_negatives_flagged"], "clusters": stats["clusters"]}
    print(json.dumps(result, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_mine_scale.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
