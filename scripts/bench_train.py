"""The device feed, measured: training and re-ranking pairs/s, and the share of each step the device waits for the
host, with the old feed (each step's pairs tokenised and padded in the loop) against the new (feed.py: texts
tokenised once, batches padded ahead on a thread), in one run, on any device.

Rows: the judged queries of a BEIR folder (train split), each with its positives and 4 documents drawn at random
from the corpus as negatives (the speed does not depend on how hard they are). Training: hnm.train.train itself,
all-MiniLM-L6-v2 with a new head, the default triplet loss, --batch examples a step (2 pairs each), --max-length
tokens; its per-step pairs/s and host seconds come from log.jsonl, after --warmup untimed steps. Re-ranking:
CrossEncoder.score on --rerank-queries queries x --rerank-docs documents (a query re-ranking its candidates), after
one untimed call. The host share is the time the step waited for its batch (tokenising and padding, or waiting on
the thread) over the step's time. The feeds alternate, --repeats times, to share out the noise of a busy machine.

    python scripts/bench_train.py --data DATA/scifact [--device auto] [--precision bfloat16]
Writes scripts/results/bench_train.json (--out to change), and prints the table.
"""

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from hnm.data import document_text, load_beir
from hnm.distributed import Processes
from hnm.reranker import CrossEncoder
from hnm.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
MODEL = "all-MiniLM-L6-v2"


def make_rows(data: Path, path: Path, seed: int) -> list:
    """Write the rows file; returns the rows."""
    corpus, queries, qrels = load_beir(data, "train")
    ids = list(corpus)
    rng = np.random.default_rng(seed)
    rows = []
    for qid, judged in qrels.items():
        pos = [d for d in judged if d in corpus]
        if qid not in queries or not pos:
            continue
        neg = [ids[i] for i in rng.choice(len(ids), 4, replace=False) if ids[i] not in judged]
        rows.append({"query_id": qid, "query": queries[qid], "positive_ids": pos,
                     "positives": [document_text(corpus[d]) for d in pos], "negative_ids": neg,
                     "negatives": [document_text(corpus[d]) for d in neg]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def bench_train(args, rows_path: Path, feed: str) -> dict:
    cfg = TrainConfig(batch_size=args.batch, max_steps=args.warmup + args.steps, max_length=args.max_length,
                      precision=args.precision, eval_fraction=0.0, save_every=10 ** 6, feed=feed)
    with tempfile.TemporaryDirectory() as out:
        train(rows_path, Path(out), MODEL, cfg, quiet=True, device=args.device)
        log = [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
    timed = [r for r in log if "loss" in r][args.warmup:]
    seconds = sum(r["seconds"] for r in timed)
    pairs = len(timed) * args.batch * 2
    return {"pairs_per_s": pairs / seconds, "host_share": sum(r["host_seconds"] for r in timed) / seconds,
            "host_ms_per_step": 1000 * sum(r["host_seconds"] for r in timed) / len(timed),
            "step_ms": 1000 * seconds / len(timed), "losses": [r["loss"] for r in log if "loss" in r]}


def bench_rerank(args, model: CrossEncoder, rows: list, feed: str) -> dict:
    docs = [d for r in rows for d in r["positives"] + r["negatives"]]
    queries = [r["query"] for r in rows[:args.rerank_queries]]
    q = [x for x in queries for _ in range(args.rerank_docs)]
    d = [docs[(i * 7919 + j) % len(docs)] for i in range(len(queries)) for j in range(args.rerank_docs)]
    model.score(q[:args.batch_rerank], d[:args.batch_rerank], args.batch_rerank, args.precision, feed)  # warm-up
    timings = {}
    scores = model.score(q, d, args.batch_rerank, args.precision, feed, timings)
    return {"pairs_per_s": len(q) / timings["seconds"], "host_share": timings["host_seconds"] / timings["seconds"],
            "seconds": timings["seconds"], "scores_sha": hash(scores.tobytes())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a BEIR folder with a train split")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch", type=int, default=16, help="training examples a step (2 pairs each)")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per feed")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-rerank", type=int, default=64, help="pairs a re-ranking batch")
    p.add_argument("--rerank-queries", type=int, default=8)
    p.add_argument("--rerank-docs", type=int, default=64, help="documents re-ranked per query")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "bench_train.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = Processes.start(args.device).device
    runs = {"train": {"text": [], "tokens": []}, "rerank": {"text": [], "tokens": []}}
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / "rows.jsonl"
        rows = make_rows(args.data, rows_path, args.seed)
        model = CrossEncoder.from_encoder(MODEL, seed=args.seed, quiet=True)
        model.set_max_length(args.max_length)
        model.to(device)
        for r in range(args.repeats):
            for feed in (("text", "tokens") if r % 2 == 0 else ("tokens", "text")):
                runs["train"][feed].append(bench_train(args, rows_path, feed))
                runs["rerank"][feed].append(bench_rerank(args, model, rows, feed))
                print(f"{feed:7s} train {runs['train'][feed][-1]['pairs_per_s']:8.1f} pairs/s "
                      f"(host {runs['train'][feed][-1]['host_share']:.1%}), rerank "
                      f"{runs['rerank'][feed][-1]['pairs_per_s']:8.1f} pairs/s "
                      f"(host {runs['rerank'][feed][-1]['host_share']:.1%})", flush=True)
    same_losses = all(a["losses"] == b["losses"] for a, b in zip(runs["train"]["text"], runs["train"]["tokens"]))
    same_scores = all(a["scores_sha"] == b["scores_sha"]
                      for a, b in zip(runs["rerank"]["text"], runs["rerank"]["tokens"]))
    summary = {}
    for task in ("train", "rerank"):
        for feed in ("text", "tokens"):
            rs = runs[task][feed]
            summary[f"{task}/{feed}"] = {"pairs_per_s": float(np.median([r["pairs_per_s"] for r in rs])),
                                         "host_share": float(np.median([r["host_share"] for r in rs]))}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    out = {"device": f"{device.type}: {name}", "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "platform": platform.platform(), "load_average_at_end": os.getloadavg(),
           "settings": {k: str(v) for k, v in vars(args).items()}, "same_losses": same_losses,
           "same_scores": same_scores, "summary": summary, "runs": runs}
    for r in (x for task in runs.values() for feed in task.values() for x in feed):
        r.pop("scores_sha", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"\n{out['device']}, {args.precision}, {args.max_length} tokens; losses equal: {same_losses}, scores "
          f"equal: {same_scores}")
    print(f"{'':8s} {'train pairs/s':>14s} {'host':>6s} {'rerank pairs/s':>15s} {'host':>6s}")
    for feed in ("text", "tokens"):
        t, r = summary[f"train/{feed}"], summary[f"rerank/{feed}"]
        print(f"{feed:8s} {t['pairs_per_s']:14.1f} {t['host_share']:6.1%} {r['pairs_per_s']:15.1f} "
              f"{r['host_share']:6.1%}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
