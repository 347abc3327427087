"""The few-label headline: `hnm fit` with its recipe choice on Cranfield (train_80 -> test_20) over three training
seeds, and the SciFact learning curve as fit's rule would pick it; scripts/results/few_labels.{json,md}.

    nice -n 19 nohup python scripts/few_labels.py --data ../shared/data/cranfield --work /work/cache/fewlabels/fit \
        --precision auto --commit &

Per seed, `fit` (hnm/fit.py) runs as a user would run it, every default kept but the split names and the training
seed: the hybrid first stage's top 20, the recipe chosen on the tuning queries (`--recipe auto`: under 400 queries to
learn from, the default and the few-label recipe both trained), alpha chosen in folds. Its OUT/runs/test.*.trec are
read back: the pipeline is each test query's interpolated nDCG@10 averaged over the seeds, tested against the hybrid
alone (paired randomisation test). Each seed's chosen re-ranker also re-ranks BM25's top 20 alone (alpha 1): does it
beat BM25 on BM25's own candidates?

The curve: scripts/results/learning_curve.json (the default recipe) and learning_curve_few_label.json, one entry per
(N, seed); below config.FEW_LABELS queries the recipe whose tuning figure fit.choose_recipe prefers, the default at or
above; per N the chosen entries' per-query values averaged over the seeds, against the first stage alone.

Resumable: each seed is written to few_labels.json with every test query's values as it lands (--commit commits it),
and a rerun trains only the seeds the file lacks, so a machine whose caches are gone starts from what has landed;
within a seed, fit resumes its folder and the BM25 re-ranking is cached beside it. Rerun the same command.
"""

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from hnm.config import FEW_LABELS, PRECISIONS, FirstStageConfig, FitConfig, MineConfig, TrainConfig
from hnm.data import atomic_write, load_beir
from hnm.embed import resolve_precision
from hnm.firststage import FirstStage
from hnm.fit import choose_recipe, fit, fitted_checkpoint
from hnm.metrics import per_query, randomisation_test, read_trec_run, write_trec_run

from learning_curve import commit  # scripts/ is on the path of a script run from it

HERE = Path(__file__).resolve().parent
METRICS = ("ndcg@10", "mrr@10")


def values(run: dict, qrels: dict, qids: list) -> dict:
    """{metric: (Q,) array} in qids' order, 0 for a query the run lacks."""
    v = per_query(run, qrels, ks=(10,), metrics=("ndcg", "mrr"))
    return {m: np.array([v[m].get(q, 0.0) for q in qids]) for m in METRICS}


def bm25_pure(out: Path, bm25: dict, queries: dict, corpus: dict, quiet: bool) -> dict:
    """The seed's chosen re-ranker alone on BM25's top 20, cached as OUT/runs/test.bm25-reranked.trec."""
    path = out / "runs" / "test.bm25-reranked.trec"
    if not path.exists():
        from hnm.reranker import CrossEncoder
        from hnm.twostage import rerank
        model = CrossEncoder.from_checkpoint(fitted_checkpoint(out))
        write_trec_run(path, rerank(model, bm25, queries, corpus, 20, quiet=quiet), "bm25-reranked")
    return read_trec_run(path)


def run_seed(args, seed: int, corpus: dict, test_queries: dict, test_qrels: dict, qids: list, bm25_top20) -> dict:
    """One training seed of `hnm fit` on Cranfield, its test run read back: the entry committed for the seed, with
    each test query's values, so that a later machine whose caches are gone starts from what has landed.
    bm25_top20(): BM25's top 20 for the test queries, the same for every seed."""
    from hnm.experiment import machine_line
    out = args.work / f"seed{seed}"
    cfg = FitConfig(split=args.train_split, test_split=args.test_split, recipe=args.recipe,
                    stage=FirstStageConfig(top_k=20, models=args.models), mine=MineConfig(models=args.models),
                    train=TrainConfig(seed=seed, max_steps=args.max_steps, save_every=200, precision=args.precision))
    fit(args.data, out, cfg, quiet=args.quiet)
    tune = json.loads((out / "tune.json").read_text())
    bm25 = bm25_top20()
    seconds = json.loads((out / "seconds.json").read_text())
    lists = {"first_stage": values(read_trec_run(out / "runs" / "test.first-stage.trec"), test_qrels, qids),
             "interpolated": values(read_trec_run(out / "runs" / "test.interpolated.trec"), test_qrels, qids),
             "reranker_alone": values(read_trec_run(out / "runs" / "test.reranker.trec"), test_qrels, qids),
             "bm25": values(bm25, test_qrels, qids),
             "pure_on_bm25_top20": values(bm25_pure(out, bm25, test_queries, corpus, args.quiet), test_qrels, qids)}
    return {"seed": seed, "recipe": tune.get("recipe", "default"), "alpha": tune["alpha"], "precision": args.precision,
            "minutes": round(sum(seconds.values()) / 60, 1), "machine": machine_line(),
            "per_query": {k: {m: [round(float(x), 6) for x in v[m]] for m in METRICS} for k, v in lists.items()}}


def cranfield(args, done: dict) -> None:
    """Every seed of args.seeds not in `done` (the committed entries, by seed) trained, written and committed."""
    corpus, _, _ = load_beir(args.data, args.train_split)
    _, test_queries, test_qrels = load_beir(args.data, args.test_split)
    qids = sorted(test_qrels)

    @functools.cache
    def bm25_top20() -> dict:  # built once, and only when a seed needs it
        return FirstStage(corpus, FirstStageConfig(kind="bm25", top_k=20), args.quiet).run(
            {q: test_queries[q] for q in qids}, args.quiet)

    for seed in args.seeds:
        landed = done.get(str(seed))
        # a seed that landed before the column "reranker_alone" is read back where its folder is still here
        if landed is None or ("reranker_alone" not in landed["per_query"]
                              and (args.work / f"seed{seed}" / "tune.json").exists()):
            done[str(seed)] = run_seed(args, seed, corpus, test_queries, test_qrels, qids, bm25_top20)
            write(args, done)
            if args.commit:
                commit(args.output, f"few labels: Cranfield test_20, fit seed {seed}", suffixes=(".json", ".md"))


def headline(done: dict) -> dict:
    """The issue's figures over the landed seeds: each test query's value averaged over the seeds, tested against
    the hybrid alone."""
    runs = [done[k] for k in sorted(done, key=int)]
    first = {m: np.array(runs[0]["per_query"]["first_stage"][m]) for m in METRICS}
    mean = {m: np.mean([r["per_query"]["interpolated"][m] for r in runs], axis=0) for m in METRICS}  # (Q,)
    pure = np.mean([r["per_query"]["pure_on_bm25_top20"]["ndcg@10"] for r in runs], axis=0)
    alone = [r["per_query"]["reranker_alone"] for r in runs if "reranker_alone" in r["per_query"]]
    return {"first_stage": {m: float(first[m].mean()) for m in METRICS},
            "bm25": {"ndcg@10": float(np.mean(runs[0]["per_query"]["bm25"]["ndcg@10"]))},
            "pipeline": {**{m: float(mean[m].mean()) for m in METRICS},
                         "p_ndcg@10": randomisation_test(mean["ndcg@10"], first["ndcg@10"], n=10000, seed=0),
                         "p_mrr@10": randomisation_test(mean["mrr@10"], first["mrr@10"], n=10000, seed=0),
                         "per_seed": [{k: r[k] for k in ("seed", "recipe", "alpha", "precision", "minutes")}
                                      | {m: float(np.mean(r["per_query"]["interpolated"][m])) for m in METRICS}
                                      for r in runs], "seeds": len(runs)},
            "pure_on_bm25_top20": {"ndcg@10": float(pure.mean())},
            # the chosen re-ranker alone on the hybrid's top 20, whatever alpha was chosen: what the model learned
            "reranker_alone": {**{m: float(np.mean([a[m] for a in alone])) for m in METRICS}, "seeds": len(alone)}
            if alone else {},
            "test_queries": len(first["ndcg@10"]), "machines": sorted({r["machine"] for r in runs}), "runs": done}


def curve(default: Path, few: Path) -> list:
    """The learning curve as fit's rule picks each (N, seed)'s recipe; [] until the default curve has landed."""
    if not default.exists():
        return []
    d = json.loads(default.read_text())
    f = json.loads(few.read_text()) if few.exists() else {"runs": {}}
    first = np.array(d["first_stage"]["per_query"]["ndcg@10"])
    out = []
    for n in sorted({e["queries"] for e in d["runs"].values()}):
        picked = []
        for key, e in sorted(d["runs"].items()):
            if e["queries"] != n:
                continue
            other = f["runs"].get(key)
            if n < FEW_LABELS and other is None:
                continue  # the rule needs both recipes below FEW_LABELS
            if n < FEW_LABELS:
                tuned = {name: {"alpha": x["alpha"], "curve": x["alpha_curve"], "tuning_queries": x["tuning_queries"],
                                **x.get("tuning", {})} for name, x in (("default", e), ("few-label", other))}
                name, _ = choose_recipe(tuned)
                picked.append((name, e if name == "default" else other))
            else:
                picked.append(("default", e))
        if not picked:
            continue
        mean = np.mean([x["per_query"]["interpolated"]["ndcg@10"] for _, x in picked], axis=0)
        out.append({"queries": n, "first_stage_ndcg@10": float(first.mean()), "pipeline_ndcg@10": float(mean.mean()),
                    "p": randomisation_test(mean, first, n=10000, seed=0), "seeds": len(picked),
                    "recipes": [name for name, _ in picked]})
    return out


def write_md(r: dict, path: Path) -> None:
    c = r["cranfield"]
    lines = ["# Few labels: hnm fit's recipe choice on Cranfield test_20, and the SciFact curve as fit picks it", ""]
    if not c["runs"]:
        lines += ["Cranfield: no training seed has landed yet.", ""]
    else:
        lines += [
            f"Cranfield, {c['test_queries']} test queries, {c['pipeline']['seeds']} training seed"
            f"{'s' if c['pipeline']['seeds'] > 1 else ''} of `hnm fit "
            f"--recipe auto` (made by `python scripts/few_labels.py`); p: paired randomisation test of each query's "
            f"value averaged over the seeds against the hybrid alone. Machine: {'; '.join(c['machines'])}.", "",
            "| system | nDCG@10 | MRR@10 | p nDCG@10 | p MRR@10 |", "| --- | --- | --- | --- | --- |",
            f"| hybrid first stage | {c['first_stage']['ndcg@10']:.4f} | {c['first_stage']['mrr@10']:.4f} | | |",
            f"| fit's pipeline (interpolated) | {c['pipeline']['ndcg@10']:.4f} | {c['pipeline']['mrr@10']:.4f} | "
            f"{c['pipeline']['p_ndcg@10']:.4f} | {c['pipeline']['p_mrr@10']:.4f} |",
            f"| BM25 | {c['bm25']['ndcg@10']:.4f} | | | |",
            f"| re-ranker alone on BM25's top 20 | {c['pure_on_bm25_top20']['ndcg@10']:.4f} | | | |", ""]
        if c["reranker_alone"]:
            a = c["reranker_alone"]
            lines[-1:-1] = [f"| re-ranker alone on the hybrid's top 20 (seeds: {a['seeds']}) | {a['ndcg@10']:.4f} | "
                            f"{a['mrr@10']:.4f} | | |"]
        lines += [
            "Per seed: " + "; ".join(f"seed {s['seed']}: {s['recipe']}, alpha {s['alpha']:g}, nDCG@10 "
                                     f"{s['ndcg@10']:.4f}, MRR@10 {s['mrr@10']:.4f} ({s['precision']}, "
                                     f"{s['minutes']:g} min)" for s in c["pipeline"]["per_seed"]) + ".", "",
            "Each seed's alpha is chosen by `fit` in folds of its tuning queries (a tenth of the 180 it learns "
            "from); alpha 0 keeps the first stage's ranking exactly.", ""]
    if r["curve"]:
        lines += ["SciFact learning curve, each (N, seed) with the recipe fit's rule picks:", "",
                  "| N | seeds | recipes | first stage nDCG@10 | pipeline nDCG@10 | p |", "| --- " * 6 + "|"]
        lines += [f"| {e['queries']} | {e['seeds']} | {', '.join(e['recipes'])} | {e['first_stage_ndcg@10']:.4f} | "
                  f"{e['pipeline_ndcg@10']:.4f} | {e['p']:.4f} |" for e in r["curve"]]
    with atomic_write(path) as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="Cranfield in the BEIR layout")
    p.add_argument("--train-split", default="train_80")
    p.add_argument("--test-split", default="test_20")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--recipe", default="auto")
    p.add_argument("--models", default=MineConfig.models, help="mining's ensemble and the hybrid's (smoke: one)")
    p.add_argument("--work", type=Path, required=True, help="fit's folders, one a seed (outside the repository)")
    p.add_argument("--max-steps", type=int, help="smoke runs only: cut training short")
    p.add_argument("--output", type=Path, default=HERE / "results" / "few_labels.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="the re-ranker's (fit's default: float32; auto: bfloat16 where the CPU has it)")
    p.add_argument("--commit", action="store_true", help="git-commit the JSON and table after each seed lands")
    args = p.parse_args()
    # recorded with each seed: the seeds are independent trainings, averaged query by query, so a machine with
    # bfloat16 and one without each add seeds
    args.precision = resolve_precision(args.precision)
    done = json.loads(args.output.read_text())["cranfield"].get("runs", {}) if args.output.exists() else {}
    cranfield(args, done)
    write(args, done)
    print(args.output.with_suffix(".md").read_text())


def write(args, done: dict) -> None:
    """few_labels.json and .md from the landed seeds (an empty headline until one has)."""
    report = {"cranfield": headline(done) if done else {"runs": {}},
              "curve": curve(args.output.with_name("learning_curve.json"),
                             args.output.with_name("learning_curve_few_label.json"))}
    with atomic_write(args.output) as f:
        json.dump(report, f, indent=1)
    write_md(report, args.output.with_suffix(".md"))

if __name__ == "__main__":
    main()
