"""The re-ranker's training recipe, one lever at a time, measured on a tuning split (never the test split).

    python scripts/ablate_train.py --data ../shared/data/scifact --work /work/cache/ablation-scifact
    python scripts/ablate_train.py --data ../shared/data/cranfield --train-split train_80 --work /work/cache/abl-cran

The training queries of --train-split are mined once with the default ensemble (15 negatives, a quarter random;
two more minings for the skip-top and random-share levers). Every variant trains from the same start with the same
seed and holds out the same share of the queries (--tuning-share, whole queries, train.py's split); the first stage
(--first-stage, default hybrid) retrieves the top k of those held-out queries, the variant re-ranks them, and the
table gives nDCG@10 and MRR@10 of the re-ranker alone (alpha 1) and interpolated half and half with the first
stage (alpha 0.5, fixed, so that nothing is chosen on the split being measured), with the training time, and the
two-sided paired randomisation test of each lever's interpolated nDCG@10 against the base's, query by query (the
tuning split is a few hundred queries: a difference of a point or two can be noise). A variant recorded before the
per-query values were kept is re-ranked once from its saved model to get them.

The base recipe is the listwise one (softmax over 1 + 7, TrainConfig's defaults before this table chose the
triplet) at --max-length tokens (128 by default, half the cost of 256; one lever is
256) for --epochs; each lever changes one field. Every variant's result is cached under --work, so a killed run
resumes; the table and JSON are rewritten after each one, in scripts/results/ablation_<data>.{md,json}. Levers
joined by " & " (`--levers "base" "epochs: 2 & max length 256"`) run as one variant with all their changes, to try
the winners together.
"""

import argparse
import functools
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from hnm.config import TRAIN_FIELDS_BEFORE
from hnm.data import atomic_write, load_beir
from hnm.embed import EmbedConfig, resolve_precision
from hnm.experiment import machine_line
from hnm.firststage import FirstStageConfig, retrieve
from hnm.metrics import evaluate, per_query, randomisation_test, read_trec_run, write_trec_run
from hnm.miner import run as mine
from hnm.negatives import MineConfig
from hnm.reranker import CrossEncoder
from hnm.train import TrainConfig, kept_checkpoint, train
from hnm.twostage import interpolate, rerank

HERE = Path(__file__).resolve().parent

# name -> (changes to the training config, changes to the mining config, start model or None for --start)
LEVERS = {  # the paper's and the levers first, the finer ones after; the MPNet start (about 5x a
    # MiniLM lever's time, and too slow for the CPU experiment's 14 models whatever it scores) last
    "base": ({}, {}, None),
    "loss: triplet, 1 negative (the paper)": ({"loss": "triplet", "negatives": 1}, {}, None),
    "softmax + MarginMSE from the ensemble": ({"distill": 1.0}, {}, None),
    "MarginMSE alone": ({"loss": "margin_mse"}, {}, None),
    "loss: binary cross-entropy": ({"loss": "bce"}, {}, None),
    "loss: softmax over 1 + 15": ({"negatives": 15}, {}, None),
    # the same pairs as the base in 4x the optimiser steps: 1 + 15 (half the steps) lost, the triplet (7x) won
    "batch 1 (4x the steps)": ({"batch_size": 1}, {}, None),
    # the rest cheapest first, so that what a stop cuts off is the dearest: a session's caches may not survive it
    "150 steps (the first round's budget)": ({"max_steps": 150}, {}, None),
    "head: mean pooling": ({"head": "mean"}, {}, None),
    "lr 3e-5": ({"lr": 3e-5}, {}, None),
    "lr 1.5e-4": ({"lr": 1.5e-4}, {}, None),
    "no warm-up": ({"warmup": 0.0}, {}, None),
    "skip the top 5 ranks": ({}, {"skip_top": 5}, None),
    "no random negatives": ({}, {"random_share": 0.0}, None),
    "half random negatives": ({}, {"random_share": 0.5}, None),
    "epochs: 2": ({"epochs": 2}, {}, None),
    "max length 256": ({"max_length": 256}, {}, None),
    # the triplet lever's pairs and steps with the listwise loss: is it the loss or the 7x more updates?
    "loss: softmax over 1 + 1": ({"negatives": 1}, {}, None),
    # the experiment's triplets: its `full` budget mines 7 negatives a query, not the 15 every row here mines, so its
    # models train on about half the triplet lever's triplets
    "loss: triplet over 7 mined negatives (the experiment's)": ({"loss": "triplet", "negatives": 1},
                                                                {"num_negatives": 7}, None),
    "start: all-mpnet-base-v2": ({}, {}, "all-mpnet-base-v2"),
}
BASE_MINE = {"num_negatives": 15, "random_share": 0.25}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--train-split", default="train")
    p.add_argument("--work", type=Path, help="caches: mined rows, models, runs (outside the repo); needed unless "
                   "--report")
    p.add_argument("--start", default="all-MiniLM-L6-v2")
    p.add_argument("--first-stage", default="hybrid")
    p.add_argument("--models", default=MineConfig.models, help="the ensemble: mining and the hybrid first stage")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--tuning-share", type=float, default=0.2)
    p.add_argument("--precision", default="auto")
    p.add_argument("--levers", nargs="*", help="names of LEVERS to run (default all, in order)")
    p.add_argument("--train-queries", type=int, help="at most this many training queries (smoke runs)")
    p.add_argument("--output", type=Path, help="JSON to write (default scripts/results/ablation_<data>.json)")
    p.add_argument("--report", action="store_true",
                   help="only write the Markdown table again from the JSON of --output, training nothing")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    output = args.output or HERE / "results" / f"ablation_{args.data.resolve().name}.json"
    if args.report:
        landed = json.loads(output.read_text())
        for k in ("train_split", "first_stage", "top_k", "max_length", "epochs"):
            setattr(args, k, landed[k])
        write_table(landed["variants"], output.with_suffix(".md"), args)
        return
    if args.work is None:
        p.error("--work is needed to train (only --report goes without it)")
    precision = resolve_precision(args.precision)
    args.work.mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = load_beir(args.data, args.train_split)
    if args.train_queries:
        qrels = dict(list(qrels.items())[:args.train_queries])
    # the base is the listwise recipe the ablation started from (TrainConfig's defaults before it chose the
    # triplet), written out so that the table's rows stay comparable as the defaults move
    base = TrainConfig(loss="softmax", negatives=7, lr=7e-5, warmup=0.1, head="pooler", batch_size=4,
                       max_length=args.max_length, epochs=args.epochs, eval_fraction=args.tuning_share,
                       precision=precision, min_steps=0, save_every=150)  # a stop loses at most 150 steps
    fcfg = FirstStageConfig(kind=args.first_stage, top_k=args.top_k, models=args.models, precision=precision)
    first_path = args.work / "first-stage.trec"

    @functools.cache
    def first_stage():  # built and read once, when a row first needs re-ranking; restored rows need none
        if not first_path.exists():
            write_trec_run(first_path, retrieve(corpus, {q: queries[q] for q in qrels}, fcfg, args.quiet), "first")
        return read_trec_run(first_path)

    names = args.levers or list(LEVERS)
    unknown = [part for n in names for part in n.split(" & ") if part not in LEVERS]
    if unknown:
        sys.exit(f"unknown levers: {unknown}; known: {list(LEVERS)} (join several with ' & ')")
    committed = committed_variants(output, args)
    results = {}
    for name in names:
        train_changes, mine_changes, start = combined(name)
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        done = args.work / "variants" / f"{slug}.json"
        mcfg = MineConfig(**{**BASE_MINE, "models": args.models, **mine_changes})
        tcfg = replace(base, **train_changes)
        landed = committed.get(name)
        if not done.exists() and landed and "per_query" in landed and same_config(landed["train"], asdict(tcfg)) \
                and same_config(landed["mine"], asdict(mcfg)) and landed["start"] == (start or args.start):
            done.parent.mkdir(parents=True, exist_ok=True)  # measured by an earlier session whose caches are gone
            with atomic_write(done) as f:
                json.dump(landed, f, indent=1)
        if not done.exists():
            rows = args.work / "mined" / (f"rows-{json.dumps(mine_changes, sort_keys=True)}.jsonl"
                                          .replace(" ", "").replace('"', "").replace(":", "="))
            rows.parent.mkdir(parents=True, exist_ok=True)
            if not rows.exists():
                mine(corpus, queries, qrels, mcfg, rows, EmbedConfig(precision=precision), quiet=args.quiet)
            folder = args.work / "models" / slug
            first = first_stage()
            t0 = time.monotonic()
            summary = train(rows, folder, start or args.start, tcfg, resume=(folder / "last").exists(),
                            quiet=args.quiet)
            train_seconds = time.monotonic() - t0  # a resumed run's last sitting: made whole just below
            t0 = time.monotonic()
            tuning, pure = rerank_tuning(folder, first, queries, corpus, args.top_k, precision, args.quiet)
            rerank_seconds = time.monotonic() - t0
            picked, judged = {q: first[q] for q in tuning}, {q: qrels[q] for q in tuning}
            row = {"train": asdict(tcfg), "mine": asdict(mcfg), "start": start or args.start,
                   "tuning_queries": len(tuning), "train_seconds": round(train_seconds, 1),
                   "train_pairs_per_s": round(summary["pairs_per_s"], 2), "rerank_seconds": round(rerank_seconds, 1),
                   "best_step": (summary["best"] or {}).get("step"), "steps": summary["steps"],
                   "machine": machine_line()}
            for label, run in (("first stage", picked), ("pure", pure), ("alpha 0.5", interpolate(pure, picked, 0.5))):
                m = evaluate(run, judged, ks=(10,), metrics=("ndcg", "mrr"))
                row[label] = {"ndcg@10": m["ndcg@10"], "mrr@10": m["mrr@10"]}
            row["per_query"] = _per_query(pure, picked, judged)
            done.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(done) as f:
                json.dump(row, f, indent=1)
        row = json.loads(done.read_text())
        whole = round(logged_seconds(args.work / "models" / slug), 1)
        if whole > row["train_seconds"]:  # recorded from a resumed run's last sitting alone
            row["train_seconds"] = whole
            with atomic_write(done) as f:
                json.dump(row, f, indent=1)
        if "per_query" not in row:  # recorded before per-query values were kept: re-rank once from the saved model
            first = first_stage()
            tuning, pure = rerank_tuning(args.work / "models" / slug, first, queries, corpus, args.top_k, precision,
                                         args.quiet)
            row["per_query"] = _per_query(pure, {q: first[q] for q in tuning}, {q: qrels[q] for q in tuning})
            with atomic_write(done) as f:
                json.dump(row, f, indent=1)
        results[name] = row
        write_report({**committed, **results}, output, args)
    print(table(results))


def logged_seconds(folder: Path) -> float:
    """The seconds of every training step in the model's log.jsonl, over all its sittings (a resume cuts the log
    back to its checkpoint, so no step counts twice); 0 without a log. A resumed run's wall clock holds only its
    last sitting."""
    log = folder / "log.jsonl"
    if not log.exists():
        return 0.0
    return sum(r.get("seconds", 0.0) for r in map(json.loads, log.read_text().splitlines()) if "step" in r)


def committed_variants(output: Path, args) -> dict:
    """The variants already in the committed JSON, when it was measured with these settings: a new machine (or one
    whose caches were wiped) starts from what has landed instead of training it again. Each is still checked against
    the variant's configs before it is taken."""
    if not output.exists():
        return {}
    landed = json.loads(output.read_text())
    same = all(landed.get(k) == v for k, v in (("train_split", args.train_split), ("first_stage", args.first_stage),
               ("top_k", args.top_k), ("max_length", args.max_length), ("epochs", args.epochs),
               ("tuning_share", args.tuning_share)))
    return landed["variants"] if same and not args.train_queries else {}


def same_config(landed: dict, now: dict) -> bool:
    """Whether a committed row's config is today's: a field added since counts at the value runs had before it
    (config.TRAIN_FIELDS_BEFORE), or else is at a default that keeps the old behaviour; how often checkpoints are
    saved does not count."""
    before = {k: v for k, v in TRAIN_FIELDS_BEFORE.items() if k in now and k not in landed}
    return all(now.get(k) == v for k, v in {**landed, **before}.items() if k != "save_every")


def combined(name: str) -> tuple:
    """A lever of LEVERS, or several joined by " & ": their changes together (a later one wins a shared field)."""
    train_changes, mine_changes, start = {}, {}, None
    for part in name.split(" & "):
        t, m, s = LEVERS[part]
        train_changes, mine_changes, start = {**train_changes, **t}, {**mine_changes, **m}, s or start
    return train_changes, mine_changes, start


def rerank_tuning(folder: Path, first, queries, corpus, top_k: int, precision: str, quiet: bool):
    """(the variant's tuning queries that the first stage retrieved, its best checkpoint's run of their top k)."""
    tuning = [q for q in json.loads((folder / "tuning_queries.json").read_text()) if q in first]
    model = CrossEncoder.from_checkpoint(kept_checkpoint(folder))
    return tuning, rerank(model, {q: first[q] for q in tuning}, queries, corpus, top_k, precision=precision,
                          quiet=quiet)


def _per_query(pure, picked, judged) -> dict:
    """{"pure" | "alpha 0.5": {"ndcg@10" | "mrr@10": {qid: value}}} of one variant on the tuning queries."""
    return {label: per_query(run, judged, ks=(10,), metrics=("ndcg", "mrr"))
            for label, run in (("pure", pure), ("alpha 0.5", interpolate(pure, picked, 0.5)))}


def p_against(row: dict, base: dict, metric: str = "ndcg@10") -> float:
    """Paired randomisation p-value of the row's interpolated `metric` against the base's, over their common queries."""
    a, b = row["per_query"]["alpha 0.5"][metric], base["per_query"]["alpha 0.5"][metric]
    common = sorted(set(a) & set(b))
    return randomisation_test(np.array([a[q] for q in common]), np.array([b[q] for q in common]), n=10000, seed=0)


def table(results: dict) -> str:
    base = results.get("base")
    lines = ["| variant | nDCG@10 pure | MRR@10 pure | nDCG@10 alpha 0.5 | MRR@10 alpha 0.5 | Δ nDCG@10 (0.5) vs base "
             "| p vs base | steps | training min | pairs/s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if results:
        f = next(iter(results.values()))["first stage"]
        lines.append(f"| first stage alone | {f['ndcg@10']:.4f} | {f['mrr@10']:.4f} | – | – | – | – | – | – | – |")
    for name, r in results.items():
        other = base and name != "base"
        delta = f"{r['alpha 0.5']['ndcg@10'] - base['alpha 0.5']['ndcg@10']:+.4f}" if other else "–"
        p = f"{p_against(r, base):.3f}" if other and "per_query" in r and "per_query" in base else "–"
        lines.append(f"| {name} | {r['pure']['ndcg@10']:.4f} | {r['pure']['mrr@10']:.4f} | "
                     f"{r['alpha 0.5']['ndcg@10']:.4f} | {r['alpha 0.5']['mrr@10']:.4f} | {delta} | {p} | {r['steps']} | "
                     f"{r['train_seconds'] / 60:.1f} | {r['train_pairs_per_s']:.1f} |")
    return "\n".join(lines)


def machines_and_precisions(results: dict) -> str:
    """The distinct machines the rows ran on, with how many rows each, and their precisions."""
    machines = Counter(r.get("machine", "not recorded") for r in results.values())
    precisions = " and ".join(sorted({r["train"]["precision"] for r in results.values()}))
    return "; ".join(f"{m} ({n} rows)" for m, n in machines.items()) + f"; every row in {precisions}"


def write_report(results: dict, output: Path, args) -> None:
    payload = {"data": str(args.data), "train_split": args.train_split, "first_stage": args.first_stage,
               "top_k": args.top_k, "max_length": args.max_length, "epochs": args.epochs,
               "tuning_share": args.tuning_share, "machine": machine_line(), "variants": results}
    with atomic_write(output) as f:
        json.dump(payload, f, indent=1)
    write_table(results, output.with_suffix(".md"), args)


def write_table(results: dict, path: Path, args) -> None:
    n = next(iter(results.values()))["tuning_queries"]
    with atomic_write(path) as f:
        f.write(f"# Training recipe ablation on {args.data.resolve().name} ({args.train_split}), tuning split of "
                f"{n} held-out training queries\n\nFirst stage {args.first_stage}, top {args.top_k} re-ranked; base: "
                f"softmax over 1 + 7 at {args.max_length} tokens, {args.epochs} epoch(s); machines: "
                f"{machines_and_precisions(results)}. Steps are of 4 examples (a triplet lever's example is one pair of "
                f"pairs, the others' 1 + n documents); minutes and pairs/s are wall-clock, on machines that other "
                f"work shared at times: compare speeds only between rows of one machine, and a row far slower than "
                f"its neighbours ran beside other work.\n\n{table(results)}\n")


if __name__ == "__main__":
    main()
