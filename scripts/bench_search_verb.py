"""`hnm search` as a user runs it: one process a question, the first call building the index, a later call reusing it.

For each first stage asked for, four calls of `python -m hnm search --data DATA --first-stage S --format jsonl Q`,
each a fresh process timed from start to exit:
- first call: BM25's saved index removed first, so the call builds and saves it (the document vectors come from the
  embedding cache when an earlier run made them, else they are computed and cached: the table says which);
- later call: the same, reusing the saved index and the cached vectors;
- each again with `--reranker CKPT`, which re-ranks the top `--candidates` (20) pages;
and, in one process as the loop over standard input runs, the Searcher built once and the median time of a query.

    python scripts/bench_search_verb.py --data ../shared/data/scifact --reranker RUN/model/best \\
        [--stages bm25,hybrid]      # writes scripts/results/bench_search_verb.json and prints a table
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hnm.data import read_corpus
from hnm.firststage import bm25_folder

OUT = Path(__file__).resolve().parents[1] / "scripts" / "results"


def timed(args: list) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hnm", "search", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"hnm search {' '.join(args)} failed:\n{done.stderr}")
    return seconds


def in_process(data: Path, stage: str, reranker, query: str, repeats: int = 5):
    """What the loop over standard input costs: the Searcher built once (index and vectors from the caches), then
    the median seconds of one query."""
    from hnm.config import FirstStageConfig
    from hnm.searcher import Searcher
    started = time.perf_counter()
    searcher = Searcher.from_folder(data, stage=FirstStageConfig(kind=stage, top_k=20), reranker=reranker, quiet=True)
    built = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        searcher.search([query], top_k=10)
        times.append(time.perf_counter() - t0)
    return built, sorted(times)[repeats // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--reranker", type=Path, required=True)
    p.add_argument("--stages", default="bm25,hybrid")
    p.add_argument("--query", default="Vitamin D deficiency is associated with an increased risk of fractures.")
    args = p.parse_args()
    folder = bm25_folder(read_corpus(args.data / "corpus.jsonl"))  # BM25's saved index of this corpus
    rows = []
    for stage in args.stages.split(","):
        base = ["--data", str(args.data), "--first-stage", stage, "--format", "jsonl", "--quiet", args.query]
        for reranked in (False, True):
            extra = ["--reranker", str(args.reranker)] if reranked else []
            shutil.rmtree(folder, ignore_errors=True)
            first = timed(base + extra)
            later = timed(base + extra)
            built, per_query = in_process(args.data, stage, args.reranker if reranked else None, args.query)
            rows.append({"first_stage": stage, "reranker": reranked, "first_call_s": round(first, 2),
                         "later_call_s": round(later, 2), "searcher_built_s": round(built, 2),
                         "per_query_s": round(per_query, 3)})
    docs = sum(1 for line in (args.data / "corpus.jsonl").open() if line.strip())
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}", "documents": docs,
              "query": args.query, "candidates": 20, "rows": rows}
    print(f"{'first stage':<12} {'re-ranker':<10} {'first call (s)':>15} {'later call (s)':>15} "
          f"{'in a process: built (s)':>24} {'per query (s)':>14}")
    for r in rows:
        print(f"{r['first_stage']:<12} {'yes' if r['reranker'] else 'no':<10} {r['first_call_s']:>15.2f} "
              f"{r['later_call_s']:>15.2f} {r['searcher_built_s']:>24.2f} {r['per_query_s']:>14.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "bench_search_verb.json", "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
