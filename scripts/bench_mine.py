"""Mining speed and memory: hnm against sentence-transformers' `mine_hard_negatives`, SciFact train, one run.

Both sides use all-MiniLM-L6-v2 alone (hnm: `--strategy dense`, no clustering), the same corpus (title + text), a
window of the top 100 candidates, the relative rule (a negative scores at most 95% of the positive: sentence-
transformers' relative_margin=0.05, hnm's relative_ceiling=0.95), top sampling and 4 negatives. Embedding is
included and no cache is used on either side. Each side runs in its own child process, so its peak resident memory
is its own. One difference stays: sentence-transformers mines per (query, positive) pair, hnm per query against
its weakest positive; the table reports the share of rows each fills with 4 negatives.

    pip install -e '.[bench]'
    python scripts/bench_mine.py            # prints a table, writes scripts/results/bench_mine.json
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "scifact"
OUT = REPO / "scripts" / "results"
MODEL = "all-MiniLM-L6-v2"
NEG, WINDOW, RATIO, BATCH = 4, 100, 0.95, 32


def child_hnm() -> dict:
    from hnm.data import load_beir
    from hnm.embed import EmbedConfig
    from hnm.negatives import MineConfig
    from hnm.miner import run
    corpus, queries, qrels = load_beir(DATA, "train")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stats = run(corpus, queries, qrels, MineConfig(strategy="dense", models=MODEL, max_rank=WINDOW,
                                                       relative_ceiling=RATIO, num_negatives=NEG,
                                                       random_share=0.0),
                    Path(tmp) / "mined.jsonl", EmbedConfig(batch_size=BATCH, cache=False), quiet=True)
    return {"seconds": time.perf_counter() - t0, "rows": stats["queries"],
            "rows_filled": stats["queries"] - stats["queries_with_too_few_negatives"]}


def child_st() -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, models
    from sentence_transformers.util import mine_hard_negatives

    from hnm.data import document_text, load_beir
    from hnm.weights import fetch, model_spec
    corpus, queries, qrels = load_beir(DATA, "train")
    folder = fetch(MODEL, quiet=True)
    t0 = time.perf_counter()
    word = models.Transformer(str(folder), max_seq_length=model_spec(MODEL).max_length)
    st = SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean"),
                                      models.Normalize()], device="cpu")
    pairs = [(queries[q], document_text(corpus[d])) for q, docs in qrels.items() for d, g in docs.items() if g > 0]
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    mined = mine_hard_negatives(dataset, st, corpus=[document_text(d) for d in corpus.values()], range_max=WINDOW,
                                relative_margin=1 - RATIO, num_negatives=NEG, sampling_strategy="top",
                                output_format="n-tuple", batch_size=BATCH, verbose=False)
    return {"seconds": time.perf_counter() - t0, "rows": len(pairs), "rows_filled": len(mined)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=("hnm", "sentence-transformers"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        row = child_hnm() if args.child == "hnm" else child_st()
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(row))
        return
    results = {}
    for side in ("hnm", "sentence-transformers"):
        done = subprocess.run([sys.executable, __file__, "--child", side], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    ours, ref = results["hnm"], results["sentence-transformers"]
    speed = ref["seconds"] / ours["seconds"]
    print(f"Mining SciFact train with {MODEL}: window {WINDOW}, 95% rule, {NEG} negatives, embedding included; "
          f"{machine}")
    print(f"{'system':24s} {'seconds':>8s} {'peak MB':>8s} {'rows':>6s} {'filled':>7s}")
    for side, r in results.items():
        print(f"{side:24s} {r['seconds']:8.1f} {r['peak_rss_mb']:8.0f} {r['rows']:6d} "
              f"{r['rows_filled'] / r['rows']:7.1%}")
    print(f"hnm speed: {speed:.2f}x; peak memory {ours['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x the reference's")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_mine.json").write_text(json.dumps({"machine": machine, "runs": results, "speed_ratio": speed},
                                                    indent=1))


if __name__ == "__main__":
    main()
