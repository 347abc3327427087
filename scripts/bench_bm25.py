"""Benchmark hnm's BM25 against bm25s (NumPy backend) and rank_bm25 (BM25Okapi) on SciFact, single-threaded.

    python scripts/bench_bm25.py [--data ../shared/data/scifact] [--k 100] [--repeats 5]

All three get the same token lists: hnm's analyser (lower-case, words of 2+ characters, Lucene's stop words, Porter
stems) over corpus and queries, done once before any timing; so indexing time is the index build from tokens, and
queries/s is retrieval of pre-tokenised queries (all 1,109 SciFact queries, top k). hnm and bm25s use the Lucene
variant with k1=1.5, b=0.75; rank_bm25 has only its own Okapi form (k1=1.5, b=0.75, epsilon=0.25), scored with
get_scores and cut with argpartition. bm25s is timed with n_threads=0 (a plain loop) and n_threads=1 (a one-worker
pool) and its faster setting is the reference. Best of --repeats runs, except rank_bm25 (one run; it is slow).
Writes scripts/results/bench_bm25.json.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported, so every library runs on one thread
os.environ["DISABLE_TQDM"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import rank_bm25  # noqa: E402

from hnm.bm25 import Analyser, BM25Config, BM25Index  # noqa: E402
from hnm.data import document_text, read_corpus, read_queries  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def best_time(fn, repeats: int) -> float:
    """Fastest wall time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"), help="BEIR folder")
    parser.add_argument("--k", type=int, default=100, help="documents retrieved per query")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of hnm and bm25s; the best counts")
    parser.add_argument("--out", default=str(ROOT / "scripts" / "results" / "bench_bm25.json"), help="JSON output")
    args = parser.parse_args()

    corpus = read_corpus(Path(args.data) / "corpus.jsonl")
    queries = read_queries(Path(args.data) / "queries.jsonl")
    analyse = Analyser()
    start = time.perf_counter()
    doc_tokens = [analyse(document_text(d)) for d in corpus.values()]
    analyse_s = time.perf_counter() - start
    query_tokens = [analyse(q) for q in queries.values()]
    config = BM25Config(variant="lucene", k1=1.5, b=0.75)

    rows = {}
    index = BM25Index.build(doc_tokens, list(corpus), config)
    rows["hnm"] = {"index_s": best_time(lambda: BM25Index.build(doc_tokens, list(corpus), config), args.repeats),
                   "search_s": best_time(lambda: index.search(query_tokens, args.k), args.repeats)}
    rows["hnm (one query a call)"] = {
        "index_s": rows["hnm"]["index_s"],
        "search_s": best_time(lambda: [index.search([q], args.k) for q in query_tokens], args.repeats)}

    def bm25s_index():
        retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75, backend="numpy")
        retriever.index(doc_tokens, show_progress=False)
        return retriever

    retriever = bm25s_index()
    bm25s_search = {n: best_time(lambda: retriever.retrieve(query_tokens, k=args.k, n_threads=n, show_progress=False,
                                                            backend_selection="numpy"), args.repeats)
                    for n in (0, 1)}
    rows["bm25s"] = {"index_s": best_time(bm25s_index, args.repeats), "search_s": min(bm25s_search.values()),
                     "n_threads": min(bm25s_search, key=bm25s_search.get),
                     "search_s_by_n_threads": {str(n): t for n, t in bm25s_search.items()}}

    # the same top k on both sides: the scores agree (float32 sums against float64 sums, hence the tolerance)
    ours_idx, ours_score = index.search(query_tokens, args.k)
    theirs_idx, theirs_score = retriever.retrieve(query_tokens, k=args.k, n_threads=0, show_progress=False,
                                                  backend_selection="numpy")
    assert np.allclose(ours_score, theirs_score, rtol=1e-5, atol=1e-5), "hnm and bm25s disagree on the top-k scores"

    start = time.perf_counter()
    okapi = rank_bm25.BM25Okapi(doc_tokens, k1=1.5, b=0.75, epsilon=0.25)
    okapi_index_s = time.perf_counter() - start
    start = time.perf_counter()
    for q in query_tokens:
        s = okapi.get_scores(q)
        np.argpartition(s, len(s) - args.k)[len(s) - args.k:]
    rows["rank_bm25"] = {"index_s": okapi_index_s, "search_s": time.perf_counter() - start}

    for row in rows.values():
        row["queries_per_s"] = len(query_tokens) / row["search_s"]
    ours = rows["hnm"]["queries_per_s"]
    machine = f"{platform.platform()}, {cpu_name()}, {os.cpu_count()} CPUs, 1 thread"
    print(f"SciFact: {len(corpus)} documents, {len(query_tokens)} queries (all), top {args.k}, pre-tokenised; "
          f"analysis of the corpus (not timed below): {analyse_s:.2f} s\nmachine: {machine}\n")
    print(f"{'system':<24} {'index s':>8} {'queries/s':>10} {'hnm q/s ratio':>14}")
    for name, row in rows.items():
        print(f"{name:<24} {row['index_s']:8.3f} {row['queries_per_s']:10.0f} {ours / row['queries_per_s']:13.2f}x")
    result = {"machine": machine, "data": "scifact", "documents": len(corpus), "queries": len(query_tokens),
              "k": args.k, "variant": "lucene", "k1": 1.5, "b": 0.75, "tokenisation": "pre-tokenised, hnm analyser",
              "corpus_analysis_s": analyse_s, "systems": rows,
              "ratio_vs_bm25s": ours / rows["bm25s"]["queries_per_s"],
              "ratio_vs_rank_bm25": ours / rows["rank_bm25"]["queries_per_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
