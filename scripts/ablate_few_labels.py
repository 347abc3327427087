"""The few-label levers, one at a time from the default recipe, measured on a tuning split of the training queries
(never on a test split), with p-values and training minutes.

    python scripts/ablate_few_labels.py --data ../shared/data/cranfield --train-split train_80 \
        --work /work/cache/fewlabels/levers-cranfield
    python scripts/ablate_few_labels.py --data ../shared/data/scifact --train-queries 50 \
        --work /work/cache/fewlabels/levers-scifact          # a learning curve's small size

The training queries are mined once (default_recipe.py's mining) and annotated with the first stage's view
(firststage.annotate_rows: its scores of every positive and negative, the teacher of distillation, and its top k,
the list the held-out check and the measurement re-rank). A seeded --tuning-share of them is the tuning split T
(Cranfield's train_80: 36 of 180); the labelled queries are the others, or a seeded --train-queries of them (the
small sizes of learning_curve.py). Each variant trains on the labelled queries as a user would, keeping its
checkpoint by a tenth of them, then re-ranks T's top k. Reported on T: nDCG@10 and MRR@10 of the re-ranker alone, of
the interpolation at alpha 0.5 (fixed, so nothing is chosen on T), and at alpha chosen by twostage.choose_alpha_kfold
out of fold (each query scored at the alpha the other folds chose: what tuning alpha on T's size gives on new
queries); p of the k-fold figure against the first stage alone and of the alpha-0.5 figure against the base, each
the paired randomisation test over T.

Every stage is cached under --work (mined and annotated rows, pseudo rows, one folder a variant with its model and
done.json), so rerunning the same command resumes; the JSON and table (scripts/results/few_labels_<data>[_n<N>]
.{json,md}) are rewritten as each variant lands.
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from hnm.crossfit import cross_fit
from hnm.data import atomic_write, load_beir, read_jsonl, write_jsonl
from hnm.embed import EmbedConfig, resolve_precision
from hnm.experiment import arm_mine_config, machine_line
from hnm.firststage import FirstStageConfig, annotate_rows
from hnm.metrics import per_query, randomisation_test
from hnm.miner import run as mine
from hnm.negatives import MineConfig
from hnm.pseudo import PseudoConfig, pseudo_rows
from hnm.reranker import CrossEncoder
from hnm.train import TrainConfig, kept_checkpoint, train
from hnm.twostage import alpha_of, choose_alpha_kfold, interpolate, rerank

from ablate_train import logged_seconds, same_config  # scripts/ is on the path of a script run from it
from default_recipe import MINED_ARMS, NEGATIVES
from learning_curve import commit

HERE = Path(__file__).resolve().parent
# name -> (changes to the default TrainConfig, or None for no labelled training; pseudo-query pre-training; start
# model or None for MiniLM); the pseudo-query levers first (one pre-trained model serves them all), the MPNet
# start (several times a MiniLM variant's time) last
LEVERS = {
    "base (the default recipe)": ({}, False, None),
    "pseudo-queries alone, no labels": (None, True, None),  # the pre-trained model itself, measured on T
    "pseudo-queries first": ({}, True, None),
    "pseudo-queries first + distil the hybrid": ({"distill": 1.0, "teacher_scores": "first_stage",
                                                  "teacher_scale": 1.0}, True, None),
    "fit's few-label recipe: distil the ensemble, alone (MarginMSE)": ({"loss": "margin_mse"}, False, None),
    "distil the hybrid, alone (MarginMSE)": ({"loss": "margin_mse", "teacher_scores": "first_stage",
                                              "teacher_scale": 1.0}, False, None),
    "triplet + distil the hybrid": ({"distill": 1.0, "teacher_scores": "first_stage", "teacher_scale": 1.0}, False,
                                    None),
    # r 1 was measured on SciFact's 50 labels (few_labels_scifact_n50.json): most triplets then cost nothing, and
    # it scored below r 0.25, the one kept
    "triplet on the hybrid's residual (CLEAR), r 0.25": ({"residual": 0.25, "teacher_scores": "first_stage"}, False,
                                                          None),
    # a floor on the run's length: one epoch of 50 SciFact queries is 185 steps, and each of those runs kept its last
    # checkpoint, still learning; where one epoch is longer, the lever is the run without it, not trained again
    "at least 1,000 steps (more epochs)": ({"min_steps": 1000}, False, None),
    "distil the hybrid, alone (MarginMSE), at least 1,000 steps": ({"loss": "margin_mse", "teacher_scores":
                                                                    "first_stage", "teacher_scale": 1.0,
                                                                    "min_steps": 1000}, False, None),
    "graded: ListNet over 1 + 7": ({"loss": "listnet", "negatives": 7}, False, None),
    "check every fifth of the run on the hybrid's top k": ({"eval_every": -5, "held_out": "candidates"}, False, None),
    "check every fifth of the run on its rows": ({"eval_every": -5}, False, None),
    "start: all-mpnet-base-v2": ({}, False, "all-mpnet-base-v2"),
    # the experiment's arm (c): on Cranfield's test_20 its negatives beat the ensemble's (0.4563 against 0.4201
    # nDCG@10 interpolated, full budget), so it is measured here, on T, as a candidate for the few-label recipe
    "negatives mined by BM25": ({}, False, None),
    # the floor's recipe with no tuning split: alpha and the epochs chosen on every labelled query, out of fold
    # (crossfit.py), then a final model on all of them; k + 1 trainings
    "cross-fitted: alpha and epochs in 5 folds of the labels, at least 1,000 steps": ({"min_steps": 1000}, False,
                                                                                    None),
}
MINING = {"negatives mined by BM25": "bm25"}  # lever -> the experiment's arm that mines its rows (else DEFAULT_ARM)
CROSS_FIT = {"cross-fitted: alpha and epochs in 5 folds of the labels, at least 1,000 steps": 5}  # lever -> folds
DEFAULT_ARM = "ensemble+"
METRICS = ("ndcg@10", "mrr@10")


def tag(arm: str) -> str:
    """The part of a cache file's name that says which arm mined it: none for the default arm (the first names)."""
    return "" if arm == DEFAULT_ARM else f"-{arm}"


def annotated_rows(args, corpus, queries, qrels, arm: str) -> list:
    """The training queries' rows mined by the experiment's `arm` (15 negatives a query) and annotated with the first
    stage's view; each stage cached under --work."""
    mined = args.work / f"rows{tag(arm)}.jsonl"
    if not mined.exists():
        mine(corpus, queries, qrels, arm_mine_config(MINED_ARMS[arm], args.models, NEGATIVES), mined,
             EmbedConfig(precision="float32"), quiet=args.quiet)
    annotated = args.work / f"rows{tag(arm)}-{args.first_stage}-top{args.top_k}.jsonl"
    if not annotated.exists():
        rows = [row for _, row in read_jsonl(mined)]
        fcfg = FirstStageConfig(kind=args.first_stage, top_k=args.top_k, models=args.models, precision="float32")
        write_jsonl(annotated, annotate_rows(corpus, rows, fcfg, args.quiet))
    return [row for _, row in read_jsonl(annotated)]


def prepared_rows(args, corpus, queries, qrels) -> tuple:
    """(annotated labelled rows path, tuning rows, the labelled query ids): the default arm's rows, mined once,
    annotated once, split by the seed. A lever that mines otherwise takes the same labelled queries (labelled_rows),
    so that every lever learns from the same queries and is measured on the same T."""
    rows = annotated_rows(args, corpus, queries, qrels, DEFAULT_ARM)
    order = np.random.default_rng(args.seed).permutation(len(rows))
    n_tuning = round(args.tuning_share * len(rows))
    tuning = [rows[i] for i in sorted(order[:n_tuning])]
    rest = order[n_tuning:]  # in the seed's order: a --train-queries subset is its first N
    chosen = sorted(rest[:args.train_queries] if args.train_queries else rest)
    labelled = args.work / f"labelled-{len(chosen)}.jsonl"
    if not labelled.exists():
        write_jsonl(labelled, [rows[i] for i in chosen])
    return labelled, tuning, {rows[i]["query_id"] for i in chosen}


def labelled_rows(args, corpus, queries, qrels, arm: str, qids: set) -> Path:
    """The labelled queries' rows as `arm` mines them, written once."""
    path = args.work / f"labelled{tag(arm)}-{len(qids)}.jsonl"
    if not path.exists():
        write_jsonl(path, [r for r in annotated_rows(args, corpus, queries, qrels, arm) if r["query_id"] in qids])
    return path


def pseudo_checkpoint(args, corpus, base: TrainConfig, precision: str) -> Path:
    """A MiniLM re-ranker trained on --pseudo-queries pseudo-queries of the corpus (pseudo.py), its last checkpoint."""
    path, folder = args.work / "pseudo.jsonl", args.work / "pseudo-model"
    if not path.exists():
        write_jsonl(path, pseudo_rows(corpus, PseudoConfig(n_queries=args.pseudo_queries, num_negatives=4,
                                                           models=args.models),
                                      EmbedConfig(precision="float32"), args.quiet))
    if not (folder / "done.json").exists():
        train(path, folder, "all-MiniLM-L6-v2", replace(base, eval_fraction=0.0),
              resume=(folder / "last").exists(), quiet=args.quiet)
        with atomic_write(folder / "done.json") as f:
            json.dump({"train_seconds": round(logged_seconds(folder), 1)}, f)
    return folder / "last"


def lists(rows: list) -> tuple:
    """(first stage's top k, judgments) of annotated rows, each {qid: {doc: score or grade}}."""
    return ({r["query_id"]: dict(zip(r["candidate_ids"], r["candidate_scores"])) for r in rows},
            {r["query_id"]: dict(zip(r["positive_ids"], r.get("positive_grades") or [1] * len(r["positive_ids"])))
             for r in rows})


def stage_of(args) -> FirstStageConfig:
    return FirstStageConfig(kind=args.first_stage, top_k=args.top_k, models=args.models, precision="float32")


def labels_alpha(folder: Path, labelled: Path, queries, corpus, args, precision: str) -> float:
    """The alpha a user with only the labelled queries gets, as `hnm fit` chooses it: on the held-out tenth of the
    labels that training kept its checkpoint by (tuning_queries.json), in 5 folds, 0 unless it carries over."""
    held = set(json.loads((folder / "tuning_queries.json").read_text()))
    first, judged = lists([r for _, r in read_jsonl(labelled) if r["query_id"] in held])
    pure = rerank(CrossEncoder.from_checkpoint(kept_checkpoint(folder)), first, queries, corpus, args.top_k,
                  precision=precision, quiet=args.quiet)
    return alpha_of(pure, first, judged, stage_of(args), folds=5)["alpha"]


def measure(folder: Path, tuning: list, queries, corpus, args, precision: str, alpha: float = None) -> dict:
    """The variant's figures on the tuning split T, with per-query values; with `alpha` (chosen on the labels
    alone), also T interpolated at it ("labels' alpha")."""
    first, judged = lists(tuning)
    t0 = time.monotonic()
    pure = rerank(CrossEncoder.from_checkpoint(kept_checkpoint(folder)), first, queries, corpus, args.top_k,
                  precision=precision, quiet=args.quiet)
    out = {"rerank_seconds": round(time.monotonic() - t0, 1), "per_query": {}}
    if alpha is not None:
        values = per_query(interpolate(pure, first, alpha), judged, ks=(10,), metrics=("ndcg", "mrr"))
        out["per_query"]["labels' alpha"] = values
        out["labels' alpha"] = {"alpha": alpha, **{m: float(np.mean(list(values[m].values()))) for m in METRICS}}
    alpha, about = choose_alpha_kfold(pure, first, judged, folds=5, seed=0)
    out["k-fold"] = {"alpha on all of T": alpha, "fold_alphas": about["fold_alphas"]}
    for label, run in (("first stage", first), ("pure", pure), ("alpha 0.5", interpolate(pure, first, 0.5))):
        values = per_query(run, judged, ks=(10,), metrics=("ndcg", "mrr"))
        out["per_query"][label] = values
        out[label] = {m: float(np.mean(list(values[m].values()))) for m in METRICS}
    oof = {m: {} for m in METRICS}  # each query at the alpha its other folds chose, per query
    for held, a in zip(about["fold_queries"], about["fold_alphas"]):
        values = per_query(interpolate({q: pure[q] for q in held}, first, a), judged, ks=(10,),
                           metrics=("ndcg", "mrr"))
        for m in METRICS:
            oof[m].update(values[m])
    out["per_query"]["k-fold alpha"] = oof
    out["k-fold alpha"] = {m: float(np.mean(list(oof[m].values()))) for m in METRICS}
    return out


def p(a: dict, b: dict) -> float:
    """Paired randomisation p of two {qid: value} over their common queries."""
    common = sorted(set(a) & set(b))
    return randomisation_test(np.array([a[q] for q in common]), np.array([b[q] for q in common]), n=10000, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--work", type=Path, required=True, help="caches (outside the repository)")
    ap.add_argument("--train-queries", type=int, help="labelled queries: a seeded subset of those outside T")
    ap.add_argument("--tuning-share", type=float, default=0.2, help="share of the training queries in T")
    ap.add_argument("--first-stage", default="hybrid")
    ap.add_argument("--models", default=MineConfig.models, help="the ensemble: mining and the hybrid (smoke runs: one)")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--pseudo-queries", type=int, default=1000, help="pseudo-queries of the pre-training stage")
    ap.add_argument("--levers", nargs="*", help="names of LEVERS to run (default all, in order)")
    ap.add_argument("--max-steps", type=int, help="smoke runs only: cut every training short")
    ap.add_argument("--seed", type=int, default=0, help="of T and the subset; every variant trains with seed 0")
    ap.add_argument("--output", type=Path)
    ap.add_argument("--commit", action="store_true", help="git-commit the JSON and table as each variant lands")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    precision = resolve_precision(args.precision)
    suffix = f"_n{args.train_queries}" if args.train_queries else ""
    output = args.output or HERE / "results" / f"few_labels_{args.data.resolve().name}{suffix}.json"
    args.work.mkdir(parents=True, exist_ok=True)
    corpus, queries, qrels = load_beir(args.data, args.train_split)
    labelled, tuning, labelled_ids = prepared_rows(args, corpus, queries, qrels)
    n_labelled = sum(1 for _ in read_jsonl(labelled))
    examples = sum(len(r["positive_ids"]) * len(r["negative_ids"]) for _, r in read_jsonl(labelled))
    # the base is the default recipe as it was before the floor on steps (one of the levers below), so that the
    # table's rows stay comparable
    base = TrainConfig(precision=precision, save_every=150, max_steps=args.max_steps, min_steps=0)
    steps = args.max_steps or max(1, int(0.9 * examples) // base.batch_size)  # about: a tenth is held out
    results = json.loads(output.read_text())["variants"] if output.exists() else {}
    for name in args.levers or list(LEVERS):
        changes, pseudo, start = LEVERS[name]
        if changes is None:  # no labels: the pseudo-query model as it is
            if name in results:
                continue
            folder = pseudo_checkpoint(args, corpus, base, precision).parent
            row = {"train": None, "labelled_queries": 0, "steps": 0, "best_step": None, "train_seconds": 0.0,
                   "machine": machine_line()}
        else:
            if "min_steps" in changes and steps >= changes["min_steps"] and name not in CROSS_FIT:
                print(f"{name}: one epoch is already {steps} steps; the same run as without the floor", flush=True)
                continue
            if changes.get("eval_every", 0) < 0:  # a share of the run: -5 is every fifth of its steps
                changes = {**changes, "eval_every": max(1, steps // -changes["eval_every"])}
            tcfg = replace(base, **changes)
            folder = args.work / "".join(c if c.isalnum() else "-" for c in name).strip("-")
            done = folder / "done.json"
            if name in results and same_config(results[name]["train"], asdict(tcfg)) and \
                    "labels' alpha" in results[name]:  # a row measured before that column is measured again
                continue
            if not done.exists():
                begin = str(pseudo_checkpoint(args, corpus, base, precision)) if pseudo else start or \
                    "all-MiniLM-L6-v2"
                rows = labelled_rows(args, corpus, queries, qrels, MINING[name], labelled_ids) if name in MINING \
                    else labelled
                if name in CROSS_FIT:
                    first, judged = lists([r for _, r in read_jsonl(rows)])
                    fitted = cross_fit(rows, folder, begin, tcfg, first, queries, corpus, judged, stage_of(args),
                                       CROSS_FIT[name], args.quiet)
                    runs = [Path(r) for r in fitted["runs"]]
                    summary = {"steps": fitted["steps"], "best": None, "pairs_per_s": 0.0}
                    extra = {"cross_fit": {k: fitted[k] for k in ("alpha", "epochs", "fold_best_epochs",
                                                                   "out_of_fold", "first_stage_alone")},
                             "labels_alpha": fitted["alpha"]}
                else:
                    summary = train(rows, folder, begin, tcfg, resume=(folder / "last").exists(), quiet=args.quiet)
                    runs, extra = [folder], {}
                with atomic_write(done) as f:
                    json.dump({"steps": summary["steps"], "best_step": (summary["best"] or {}).get("step"),
                               "train_seconds": round(sum(logged_seconds(r) for r in runs), 1),
                               "pairs_per_s": round(summary["pairs_per_s"], 2), "machine": machine_line(),
                               **extra}, f)
            row = {"train": asdict(tcfg), "labelled_queries": n_labelled, **json.loads(done.read_text())}
            if "labels_alpha" not in row and not pseudo:  # as fit chooses it on the run's own held-out tenth
                row["labels_alpha"] = labels_alpha(folder, labelled_rows(args, corpus, queries, qrels, MINING[name],
                                                                         labelled_ids) if name in MINING
                                                   else labelled, queries, corpus, args, precision)
        model = folder / "final" if name in CROSS_FIT else folder
        row.update({"pseudo": pseudo, "start": start or "all-MiniLM-L6-v2", "mining": MINING.get(name, DEFAULT_ARM),
                    "tuning_queries": len(tuning),
                    **measure(model, tuning, queries, corpus, args, precision, row.get("labels_alpha"))})
        if pseudo:
            row["pseudo_train_seconds"] = json.loads((args.work / "pseudo-model" / "done.json").read_text())[
                "train_seconds"]
        results[name] = row
        write_report(results, output, args)
        if args.commit:
            commit(output, f"few-label levers on {args.data.resolve().name}: {name}", (".json", ".md"))
        print(f"{name}: k-fold nDCG@10 {row['k-fold alpha']['ndcg@10']:.4f} (first stage "
              f"{row['first stage']['ndcg@10']:.4f})", flush=True)


def write_report(results: dict, output: Path, args) -> None:
    with atomic_write(output) as f:
        json.dump({"data": args.data.resolve().name, "train_split": args.train_split,
                   "first_stage": args.first_stage, "top_k": args.top_k, "tuning_share": args.tuning_share,
                   "train_queries": args.train_queries, "variants": results}, f, indent=1)
    base = results.get("base (the default recipe)")
    any_row = next(iter(results.values()))
    fs = any_row["first stage"]
    lines = [f"# Few-label levers on {args.data.resolve().name} ({args.train_split}): {any_row['labelled_queries']} "
             f"labelled queries, measured on {any_row['tuning_queries']} tuning queries", "",
             f"First stage {args.first_stage}, top {args.top_k} re-ranked; each variant the default recipe with one "
             f"lever changed. First stage alone: nDCG@10 {fs['ndcg@10']:.4f}, MRR@10 {fs['mrr@10']:.4f}. k-fold: "
             "each tuning query at the alpha chosen on the other folds (5). p: paired randomisation test. Machine: "
             f"{'; '.join(sorted({r['machine'] for r in results.values()}))}.", "",
             "labels' alpha: chosen as `hnm fit` chooses it, on the labelled queries alone (the tenth held out, or out "
             "of fold when cross-fitted), and T at it.", "",
             "| variant | alone nDCG@10 | alpha 0.5 nDCG@10 | p vs base | k-fold nDCG@10 | k-fold MRR@10 | p vs first "
             "stage | labels' alpha | nDCG@10 at it | p vs first stage | steps (best) | training min |",
             "| --- " * 12 + "|"]
    for name, r in results.items():
        pq, k = r["per_query"], r["k-fold alpha"]
        vs_base = (f"{p(pq['alpha 0.5']['ndcg@10'], base['per_query']['alpha 0.5']['ndcg@10']):.3f}"
                   if base and r is not base else "–")
        minutes = (r["train_seconds"] + r.get("pseudo_train_seconds", 0.0)) / 60
        at = r.get("labels' alpha")
        labels = "– | – | –"
        if at:
            vs_first = p(pq["labels' alpha"]["ndcg@10"], pq["first stage"]["ndcg@10"])
            labels = f"{at['alpha']:g} | {at['ndcg@10']:.4f} | {vs_first:.3f}"
        lines.append(f"| {name} | {r['pure']['ndcg@10']:.4f} | {r['alpha 0.5']['ndcg@10']:.4f} | {vs_base} | "
                     f"{k['ndcg@10']:.4f} | {k['mrr@10']:.4f} | "
                     f"{p(pq['k-fold alpha']['ndcg@10'], pq['first stage']['ndcg@10']):.3f} | {labels} | "
                     f"{r['steps']} ({'–' if r['best_step'] is None else r['best_step']}) | {minutes:.1f} |")
    with atomic_write(output.with_suffix(".md")) as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
