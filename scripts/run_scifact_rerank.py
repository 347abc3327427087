"""SciFact end to end on a small CPU budget: fine-tune a cross-encoder from all-MiniLM-L6-v2 on BM25-mined train rows,
then re-rank BM25's top k of the 300 test queries; MRR@10 and nDCG@10 before and after, wall times, pairs/s.

    python -m hnm mine --data /work/shared/data/scifact --split train --strategy bm25 \
        --output /work/tmp_train/bm25.jsonl                      # the rows (the script runs this if they are absent)
    python scripts/run_scifact_rerank.py --steps 100 --max-length 128 --top-k 20 --threads 1
Writes scripts/results/scifact_rerank.json. The budget (steps, maximum length, top k) is the caller's: on a
2-core CPU shared with other work a full run (hundreds of steps at length 256, 30,000 test pairs) takes hours, so
the defaults are cut down and the JSON records exactly what was run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hnm.data import load_beir
from hnm.rerank import COMPARED, EvalConfig, compare, first_stage, rerank
from hnm.reranker import CrossEncoder
from hnm.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "scifact"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=Path, default=Path("/work/tmp_train/bm25.jsonl"))
    p.add_argument("--steps", type=int, default=100, help="optimiser steps (8 triplets = 16 pairs each)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per (query, document) pair")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--top-k", type=int, default=20, help="BM25 documents re-ranked per test query")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--output", type=Path, default=Path(tempfile.gettempdir()) / "hnm_scifact_rerank")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch's default); 1 is faster on a CPU busy with other work")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.rows.is_file():
        subprocess.run([sys.executable, "-m", "hnm", "mine", "--data", str(DATA), "--split", "train", "--strategy",
                        "bm25", "--output", str(args.rows), "--quiet"], check=True)

    cfg = TrainConfig(loss="triplet", batch_size=8, max_steps=args.steps, lr=args.lr, max_length=args.max_length,
                      precision=args.precision, eval_fraction=0.05, eval_every=max(1, args.steps // 2),
                      save_every=args.steps, seed=0)
    started = time.perf_counter()
    summary = train(args.rows, args.output, "all-MiniLM-L6-v2", cfg)
    train_seconds = time.perf_counter() - started
    log = [json.loads(line) for line in (args.output / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    step_seconds = sum(16 / r["pairs_per_s"] for r in steps)

    corpus, queries, qrels = load_beir(DATA, "test")
    bm25 = first_stage(corpus, queries, EvalConfig(first_stage="bm25", top_k=args.top_k))
    model = CrossEncoder.from_checkpoint(args.output / "best")
    model.set_max_length(args.max_length)
    started = time.perf_counter()
    reranked = rerank(model, bm25, queries, corpus, args.top_k, batch_size=64, precision=args.precision)
    rerank_seconds = time.perf_counter() - started
    pairs = sum(map(len, reranked.values()))
    report = compare({"bm25": bm25, "bm25+rerank": reranked}, qrels)

    result = {
        "data": str(DATA), "test_queries": len(queries), "rows": str(args.rows),
        "train": {"config": asdict(cfg), "steps": summary["steps"], "examples": summary["examples"],
                  "skipped_rows": len(summary["skipped_rows"]), "wall_seconds": train_seconds,
                  "pairs_per_s_in_steps": 16 * len(steps) / step_seconds,
                  "first_losses": [r["loss"] for r in steps[:5]], "last_losses": [r["loss"] for r in steps[-5:]],
                  "held_out": [r for r in log if "eval" in r], "best": summary["best"]},
        "rerank": {"top_k": args.top_k, "pairs": pairs, "wall_seconds": rerank_seconds,
                   "pairs_per_s": pairs / rerank_seconds, "precision": args.precision,
                   "max_length": args.max_length},
        "metrics": report["metrics"], "comparisons": report["comparisons"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scifact_rerank.json").write_text(json.dumps(result, indent=1))
    before, after = report["metrics"]["bm25"], report["metrics"]["bm25+rerank"]
    print(f"SciFact test, {len(queries)} queries, BM25 top {args.top_k} re-ranked")
    for metric in ("mrr@10", "ndcg@10"):
        print(f"  {metric}: {before[metric]:.4f} -> {after[metric]:.4f}")
    for c in report["comparisons"]:
        if c["metric"] in COMPARED:
            print(f"  {c['metric']} difference {c['mean_difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}], "
                  f"p = {c['p']:.4f}")
    print(f"training: {summary['steps']} steps in {train_seconds:.0f} s ({result['train']['pairs_per_s_in_steps']:.1f} "
          f"pairs/s in the steps); re-ranking: {pairs} pairs in {rerank_seconds:.0f} s ({pairs / rerank_seconds:.1f} "
          f"pairs/s)")
    print(f"-> {HERE / 'results' / 'scifact_rerank.json'}")


if __name__ == "__main__":
    main()
