"""How many labelled queries before the re-ranker helps: the default recipe trained on seeded subsets of a BEIR
collection's training queries, each measured on the same test split against the first stage alone.

    nice -n 19 nohup python scripts/learning_curve.py --data ../shared/data/scifact \
        --work /work/cache/fewlabels/curve --commit > /work/cache/fewlabels/curve.log 2>&1 &

What a user with N judged queries gets from `hnm mine`, `hnm train` and `hnm tune`, every default kept: the training
queries are mined once (default_recipe.py's mining: the ensemble, 15 negatives a query, a quarter random; mining a
query depends only on the corpus and the query), and each subset of N takes its rows. A subset is the first N of a
permutation of the mined queries drawn from the seed, so one seed's subsets are nested (25 inside 50 inside ...)
and a curve's steps are not blurred by a new draw at every size. The re-ranker trains with TrainConfig's defaults
and that seed; the trainer holds out a tenth of the N (whole queries) as its tuning split, which keeps the best
checkpoint and, re-ranking the first stage's top k of those queries, chooses alpha (as `hnm tune` does). Nothing is
taken from the test split but the final figures: the first stage's top k of every test query, re-ranked, alone and
interpolated with the tuned alpha.

Reported per (N, seed): nDCG@10 and MRR@10 of the re-ranker alone and interpolated, the first stage alone, alpha and
the tuning queries it was chosen on, steps and training seconds, and the paired randomisation test against the first
stage alone; per N, the mean and sd over the seeds and the p of each query's value averaged over the seeds. Sizes
run smallest first, each seed in turn, so the cheap end of the curve lands first.

Resuming. Every stage is cached under --work: the mined rows (rows.jsonl), the first stage's runs, and per (N,
seed) a folder n<N>-seed<S> with its rows, its model and its checkpoints (train.py resumes from `last/`), its
re-ranked runs and done.json (which records the training settings: a folder trained otherwise, say by a recipe
whose settings have changed since, is refused rather than reused). After a stop or a machine restart, run the same
command again: it skips what is done and resumes a half-trained model from its last checkpoint. Each finished (N,
seed) is written at once, atomically, with its per-query values, to scripts/results/learning_curve.json (and the .md
table and .svg chart beside it are made again from it); a rerun whose caches are gone takes the entries of that file
whose configuration matches and trains only the rest. --commit also commits those three files in this repository
after each landing. --report only remakes the table and the chart from the JSON.
"""

import argparse
import functools
import json
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from hnm.config import RECIPES, FitConfig
from hnm.crossfit import cross_fit
from hnm.data import atomic_write, load_beir, read_jsonl
from hnm.embed import EmbedConfig, resolve_precision
from hnm.experiment import arm_mine_config, machine_line
from hnm.firststage import FirstStage, FirstStageConfig
from hnm.fit import teacher_rows
from hnm.metrics import randomisation_test, read_trec_run, write_trec_run
from hnm.miner import run as mine
from hnm.negatives import MineConfig
from hnm.reranker import CrossEncoder
from hnm.svg import lines
from hnm.train import TrainConfig, kept_checkpoint, train
from hnm.twostage import choose_alpha, choose_alpha_kfold, interpolate, rerank

from ablate_train import logged_seconds, same_config  # scripts/ is on the path of a script run from it
from default_recipe import METRICS, MINED_ARMS, NEGATIVES, cached_run, per_query_values

HERE = Path(__file__).resolve().parent
SIZES = (25, 50, 100, 200, 400, 0)  # training queries; 0: all of them
SYSTEMS = ("pure", "interpolated")


def subset(qids: list, size: int, seed: int) -> list:
    """The first `size` of a seeded permutation of the sorted ids (all of them for size 0): nested for one seed."""
    order = np.random.default_rng(seed).permutation(len(qids))
    chosen = sorted(qids)
    return [chosen[i] for i in order[:size or len(qids)]]


def write_rows(rows: Path, ids: list, path: Path) -> None:
    """The mined rows of the queries `ids`, in the file's order, to `path` (atomically)."""
    keep = set(ids)
    with atomic_write(path) as f:
        for _, row in read_jsonl(rows, required=("query_id",)):
            if row["query_id"] in keep:
                f.write(json.dumps(row) + "\n")


def reranked(folder: Path, name: str, first: dict, queries, corpus, args, model: list) -> dict:
    """The kept checkpoint's run of `first`'s top k, cached as folder/name.trec; model: [] or [the loaded model]."""
    path = folder / f"{name}.trec"
    if not path.exists():
        if not model:
            model.append(CrossEncoder.from_checkpoint(kept_checkpoint(folder)))
        t0 = time.monotonic()
        write_trec_run(path, rerank(model[0], first, queries, corpus, args.top_k, precision=args.precision,
                                    quiet=args.quiet), tag=name)
        with atomic_write(path.with_suffix(".json")) as f:
            json.dump({"seconds": round(time.monotonic() - t0, 1)}, f)
    return read_trec_run(path)


def measure(folder: Path, test_first: dict, train_first: dict, queries, corpus, train_qrels, test_qrels,
            test_ids: list, args, fitted: dict = None) -> dict:
    """One trained (N, seed): alpha on its tuning queries as `hnm fit` chooses it (in --alpha-folds folds, 0 when
    the out-of-fold figure does not beat the first stage; on all of them at once with 1 fold or 1 query), or, when
    cross-fitted, the alpha `fitted` (crossfit.cross_fit's result) chose out of fold on all N; then the test
    split's figures and per-query values."""
    model = []
    if fitted:  # folder is the cross-fit's final model, trained on all N, nothing held out
        alpha, curve, n_tuning = fitted["alpha"], fitted["curve"], fitted["tuning_queries"]
        folds = {k: fitted[k] for k in ("out_of_fold", "first_stage_alone", "epochs", "fold_best_epochs")}
    else:
        tuning = [q for q in json.loads((folder / "tuning_queries.json").read_text()) if q in train_first]
        tune_first, n_tuning, folds = {q: train_first[q] for q in tuning}, len(tuning), {}
        tune_run, tune_qrels = reranked(folder, "tuning", tune_first, queries, corpus, args, model), \
            {q: train_qrels[q] for q in tuning}
        if args.alpha_folds > 1 and len(tuning) > 1:
            alpha, info = choose_alpha_kfold(tune_run, tune_first, tune_qrels, folds=args.alpha_folds)
            curve, folds = info["curve"], {"out_of_fold": round(info["out_of_fold"], 5),
                                           "first_stage_alone": round(info["first_stage"], 5)}
        else:
            alpha, curve = choose_alpha(tune_run, tune_first, tune_qrels)
    pure = reranked(folder, "test", test_first, queries, corpus, args, model)
    out = {"tuning_queries": n_tuning, "alpha": alpha, "tuning": folds,
           "alpha_curve": {str(a): round(v, 5) for a, v in curve.items()},
           "rerank_seconds": sum(json.loads((folder / f"{n}.json").read_text())["seconds"] for n in ("tuning", "test")
                                 if (folder / f"{n}.json").exists()),
           "per_query": {}}
    for system, run in (("pure", pure), ("interpolated", interpolate(pure, test_first, alpha))):
        values = per_query_values(run, test_qrels)
        out["per_query"][system] = {m: [round(values[m].get(q, 0.0), 6) for q in test_ids] for m in METRICS}
        out[system] = {m: float(np.mean(out["per_query"][system][m])) for m in METRICS}
    return out  # the p-values against the first stage: run_p_values, when the report is written


def run_p_values(report: dict, resamples: int) -> None:
    """Each run's p against the first stage alone, from the per-query values the JSON stores (both rounded to 6
    places, so a run equal to the first stage, at alpha 0, gets p = 1 and the figures can be checked from the file)."""
    first = report["first_stage"]["per_query"]
    for entry in report["runs"].values():
        for system in SYSTEMS:
            for m in METRICS:
                entry[system][f"p {m}"] = randomisation_test(np.array(entry["per_query"][system][m]),
                                                             np.array(first[m]), n=resamples, seed=0)


def summary(report: dict, resamples: int) -> dict:
    """Per N: each system's mean, sd, and p of each query's value averaged over the seeds against the first stage."""
    sizes = {}
    for entry in report["runs"].values():
        sizes.setdefault(entry["queries"], []).append(entry)
    first = report["first_stage"]["per_query"]
    out = {}
    for n in sorted(sizes):
        entries = sorted(sizes[n], key=lambda e: e["seed"])
        row = {"seeds": [e["seed"] for e in entries], "tuning_queries": [e["tuning_queries"] for e in entries],
               "alphas": [e["alpha"] for e in entries],
               "train_minutes": round(float(np.mean([e["train_seconds"] for e in entries])) / 60, 1)}
        for system in SYSTEMS:
            row[system] = {}
            for m in METRICS:
                seeds = [e[system][m] for e in entries]
                averaged = np.mean([e["per_query"][system][m] for e in entries], axis=0)  # (Q,) over the seeds
                row[system][m] = {"mean": float(np.mean(seeds)),
                                  "sd": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0,
                                  "min": float(min(seeds)), "max": float(max(seeds)),
                                  "p": randomisation_test(averaged, np.array(first[m]), n=resamples, seed=0)}
        out[str(n)] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--work", type=Path, help="caches (outside the repository); needed unless --report")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="training queries; 0: all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--first-stage", default="hybrid", help="hnm's recommended first stage, the curve's baseline")
    p.add_argument("--models", default=MineConfig.models, help="the ensemble: mining and the hybrid (smoke runs: one)")
    p.add_argument("--top-k", type=int, default=20, help="documents re-ranked per query (tuning and test)")
    p.add_argument("--precision", default="auto", help="of training and re-ranking (auto: bfloat16 where native)")
    p.add_argument("--embed-precision", default="float32", help="of mining and the dense side of the hybrid")
    p.add_argument("--recipe", default="default", choices=list(RECIPES), help="hnm fit's recipes (config.RECIPES)")
    p.add_argument("--alpha-folds", type=int, default=FitConfig.alpha_folds, help="as hnm fit's (1: no folds)")
    p.add_argument("--cross-fit", type=int, default=0, help="k > 1: no tuning split; alpha and the epochs chosen out "
                                                             "of fold on all N in k folds (crossfit.py)")
    p.add_argument("--max-steps", type=int, help="smoke runs only: cut training short")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument("--output", type=Path, help="JSON to write (default scripts/results/learning_curve.json, "
                                               "learning_curve_<recipe>.json for another recipe)")
    p.add_argument("--commit", action="store_true", help="git-commit the JSON, table and chart after each landing")
    p.add_argument("--report", action="store_true", help="only write the table and chart again from the JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    variant = ("" if args.recipe == "default" else "_" + args.recipe.replace("-", "_")) + \
        (f"_cross_fit{args.cross_fit}" if args.cross_fit > 1 else "")
    output = args.output or HERE / "results" / f"learning_curve{variant}.json"
    if args.report:
        write_outputs(json.loads(output.read_text()), output)
        return
    if args.work is None:
        p.error("--work is needed to train (only --report goes without it)")
    args.precision = resolve_precision(args.precision)
    args.work.mkdir(parents=True, exist_ok=True)
    corpus, train_queries, train_qrels = load_beir(args.data, args.train_split)
    _, test_queries, test_qrels = load_beir(args.data, args.test_split)
    queries = {**train_queries, **test_queries}

    rows = args.work / "rows.jsonl"
    mcfg = arm_mine_config(MINED_ARMS["ensemble+"], args.models, NEGATIVES)
    if not rows.exists():
        mine(corpus, queries, train_qrels, mcfg, rows, EmbedConfig(precision=args.embed_precision), quiet=args.quiet)
    mined = [r["query_id"] for _, r in read_jsonl(rows, required=("query_id",))]
    tcfg = replace(TrainConfig(precision=args.precision, max_steps=args.max_steps, save_every=150),
                   **RECIPES[args.recipe])
    fcfg = FirstStageConfig(kind=args.first_stage, top_k=args.top_k, models=args.models,
                            precision=args.embed_precision)
    first_stage = functools.lru_cache(maxsize=None)(lambda: FirstStage(corpus, fcfg, args.quiet))  # built once
    test_first = cached_run(args.work / f"{args.test_split}-{args.first_stage}-top{args.top_k}.trec",
                            lambda: first_stage().run({q: queries[q] for q in test_qrels}, args.quiet))
    train_first = cached_run(args.work / f"{args.train_split}-{args.first_stage}-top{args.top_k}.trec",
                             lambda: first_stage().run({q: queries[q] for q in mined}, args.quiet))
    test_ids = sorted(test_qrels)
    base = per_query_values(test_first, test_qrels)
    config = {"data": args.data.resolve().name, "train_split": args.train_split, "test_split": args.test_split,
              "first_stage": args.first_stage, "models": args.models, "top_k": args.top_k,
              "precision": args.precision, "embed_precision": args.embed_precision, "mined_queries": len(mined),
              "recipe": args.recipe, "alpha_folds": args.alpha_folds,
              **({"cross_fit": args.cross_fit} if args.cross_fit > 1 else {}),
              "mine": asdict(mcfg), "train": {k: v for k, v in asdict(tcfg).items() if k not in ("seed", "save_every")}}
    report = {"config": config, "test_queries": test_ids,
              "first_stage": {**{m: float(np.mean([base[m].get(q, 0.0) for q in test_ids])) for m in METRICS},
                              "per_query": {m: [round(base[m].get(q, 0.0), 6) for q in test_ids] for m in METRICS}},
              "runs": {}}
    if output.exists():  # entries measured before, perhaps on a machine whose caches are gone
        landed = json.loads(output.read_text())
        if not (same_settings(landed["config"], config) and landed["test_queries"] == test_ids):
            p.error(f"{output} holds runs of other settings (precision {landed['config'].get('precision')}, "
                    f"recipe {landed['config'].get('recipe')}, ...); give --output another file, or the same "
                    f"settings (--precision {landed['config'].get('precision')}), so that nothing landed is lost")
        report["runs"] = landed["runs"]
    for size in sorted(args.sizes, key=lambda s: s or len(mined)):
        n = min(size or len(mined), len(mined))
        for seed in args.seeds:
            key = f"{n} queries, seed {seed}"
            if key in report["runs"]:
                continue
            folder = args.work / (f"n{n}-seed{seed}" + ("" if args.recipe == "default" else f"-{args.recipe}")
                                  + (f"-cf{args.cross_fit}" if args.cross_fit > 1 else ""))
            folder.mkdir(parents=True, exist_ok=True)
            subset_rows = folder / "rows.jsonl"
            if not subset_rows.exists():
                write_rows(rows, subset(mined, n, seed), subset_rows)
            done = folder / "done.json"
            if done.exists() and not same_config(json.loads(done.read_text()).get("train", {}), config["train"]):
                p.error(f"{folder} holds a model trained with other settings (its done.json's train); move it away "
                        f"to train this recipe's, or give --work another folder")
            if not done.exists():
                taught = teacher_rows(folder, subset_rows, tcfg, corpus, first_stage, args.quiet)  # as fit does
                if args.cross_fit > 1:
                    ids = subset(mined, n, seed)
                    fitted = cross_fit(taught, folder / "model", "all-MiniLM-L6-v2", replace(tcfg, seed=seed),
                                       {q: train_first[q] for q in ids if q in train_first}, queries, corpus,
                                       train_qrels, fcfg, args.cross_fit, args.quiet)
                    runs = [Path(r) for r in fitted["runs"]]
                    summary_ = {"steps": fitted["steps"], "pairs_per_s": 0.0, "best": None}
                    extra = {"cross_fit": fitted}
                else:
                    summary_ = train(taught, folder / "model", "all-MiniLM-L6-v2", replace(tcfg, seed=seed),
                                     resume=(folder / "model" / "last").exists(), quiet=args.quiet)
                    runs, extra = [folder / "model"], {}
                with atomic_write(done) as f:
                    json.dump({"steps": summary_["steps"], "pairs_per_s": round(summary_["pairs_per_s"], 2),
                               "best_step": (summary_["best"] or {}).get("step"),
                               "train_seconds": round(sum(logged_seconds(r) for r in runs), 1),
                               "machine": machine_line(), "train": config["train"], **extra}, f, indent=1)
            trained = {k: v for k, v in json.loads(done.read_text()).items() if k not in ("train", "cross_fit")}
            fitted = json.loads(done.read_text()).get("cross_fit")
            entry = {"queries": n, "seed": seed, **trained,
                     **measure(folder / "model" / ("final" if fitted else ""), test_first, train_first, queries,
                               corpus, train_qrels, test_qrels, test_ids, args, fitted)}
            report["runs"][key] = entry
            write_outputs(report, output, args.resamples)
            print(f"{key}: interpolated nDCG@10 {entry['interpolated']['ndcg@10']:.4f} "
                  f"(first stage {report['first_stage']['ndcg@10']:.4f}), alpha {entry['alpha']}", flush=True)
            if args.commit:
                commit(output, f"learning curve: {key}")


def same_settings(landed: dict, now: dict) -> bool:
    """Whether entries measured with the `landed` configuration count today: training fields added since (at
    defaults that keep the old behaviour) do not matter (ablate_train.same_config)."""
    return ({k: v for k, v in landed.items() if k != "train"} == {k: v for k, v in now.items() if k != "train"}
            and same_config(landed["train"], now["train"]))


def write_outputs(report: dict, output: Path, resamples: int = 10000) -> None:
    """The JSON (with the per-N summary made again), its Markdown table and its SVG chart, each atomically."""
    run_p_values(report, resamples)
    report["sizes"] = summary(report, resamples)
    with atomic_write(output) as f:
        json.dump(report, f, indent=1)
    write_table(report, output.with_suffix(".md"))
    write_chart(report, output.with_suffix(".svg"))


def commit(output: Path, message: str, suffixes=(".json", ".md", ".svg")) -> None:
    """Commit the result files alone (whatever else the work tree holds); a busy or failed git is reported, and the
    next landing commits the files again."""
    output = output.resolve()  # git runs in the results folder
    paths = [str(output.with_suffix(s)) for s in suffixes]
    for cmd in (["git", "add", "--", *paths], ["git", "commit", "-q", "-m", message, "--", *paths]):
        done = subprocess.run(cmd, cwd=output.parent, capture_output=True, text=True)
        if done.returncode:
            print(f"git {cmd[1]} failed: {done.stderr.strip()}", flush=True)
            return


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def write_table(r: dict, path: Path) -> None:
    c, fs = r["config"], r["first_stage"]
    machines = sorted({e["machine"] for e in r["runs"].values()})
    text = [f"# Learning curve on {c['data']} {c['test_split']}: the {c.get('recipe', 'default')} recipe trained on "
            f"N of the "
            f"{c['mined_queries']} training queries", "",
            "Each N a seeded subset (one seed's subsets nested), mined once with the ensemble "
            f"({c['mine']['strategy']}, "
            f"{c['mine']['num_negatives']} negatives a query, {c['mine']['random_share']:g} random); `hnm train`'s "
            f"defaults ({c['train']['loss']}, {c['train']['epochs']} epoch"
            + (f" of at least {c['train']['min_steps']:,} steps" if c['train'].get('min_steps') else "") +
            f", {c['train']['max_length']} tokens"
            + (f"), {c['precision']}; cross-fitted in {c['cross_fit']} folds of the N (crossfit.py): each fold's "
               f"queries re-ranked by a model trained on the others, alpha chosen on all N out of fold (in "
               f"{c['alpha_folds']} folds, 0 unless it beats the first stage), and a final model trained on all N "
               f"for the median of the folds' best epochs; over " if c.get("cross_fit") else
               f", a tenth of the N held out as the tuning split), {c['precision']}; alpha chosen on that tuning "
               f"split" + (f" in {c['alpha_folds']} folds (0 unless the out-of-fold figure beats the first stage)"
                           if c.get("alpha_folds", 1) > 1 else "") + " over ") +
            f"the {c['first_stage']} first stage's top {c['top_k']}; the {len(r['test_queries'])} test queries' top "
            f"{c['top_k']} re-ranked. First stage alone ({c['first_stage']}): nDCG@10 {fs['ndcg@10']:.4f}, MRR@10 "
            f"{fs['mrr@10']:.4f}. p: paired randomisation test against the first stage alone, on each query's value "
            f"averaged over the seeds. Machine: {'; '.join(machines)}.", "",
            "| N | seeds | tuning queries | alpha per seed | interpolated nDCG@10 mean ± sd | p | interpolated MRR@10 "
            "mean ± sd | p | re-ranker alone nDCG@10 | p | minutes of training |",
            "| --- " * 11 + "|"]
    for n, s in r["sizes"].items():
        i, a = s["interpolated"], s["pure"]
        text.append(f"| {n} | {len(s['seeds'])} | {', '.join(map(str, s['tuning_queries']))} | "
                    f"{', '.join(f'{x:g}' for x in s['alphas'])} | "
                    f"{i['ndcg@10']['mean']:.4f} ± {i['ndcg@10']['sd']:.4f} "
                    f"| {_p(i['ndcg@10']['p'])} | {i['mrr@10']['mean']:.4f} ± {i['mrr@10']['sd']:.4f} | "
                    f"{_p(i['mrr@10']['p'])} | {a['ndcg@10']['mean']:.4f} ± {a['ndcg@10']['sd']:.4f} | "
                    f"{_p(a['ndcg@10']['p'])} | {s['train_minutes']:.1f} |")
    text += ["", "Each run (p against the first stage alone on that seed's own per-query values):", "",
             "| N | seed | steps | alpha | interpolated nDCG@10 | p | MRR@10 | p | alone nDCG@10 | p |",
             "| --- " * 10 + "|"]
    for e in sorted(r["runs"].values(), key=lambda e: (e["queries"], e["seed"])):
        i, a = e["interpolated"], e["pure"]
        text.append(f"| {e['queries']} | {e['seed']} | {e['steps']} | {e['alpha']:g} | {i['ndcg@10']:.4f} | "
                    f"{_p(i['p ndcg@10'])} | {i['mrr@10']:.4f} | {_p(i['p mrr@10'])} | {a['ndcg@10']:.4f} | "
                    f"{_p(a['p ndcg@10'])} |")
    with atomic_write(path) as f:
        f.write("\n".join(text) + "\n")


def write_chart(r: dict, path: Path) -> None:
    """nDCG@10 against N: the interpolated pipeline and the re-ranker alone (mean, whiskers from the lowest to the
    highest seed), and the first stage alone as a flat line."""
    sizes = list(r["sizes"])
    series = {f"{r['config']['first_stage']} alone": [r["first_stage"]["ndcg@10"]] * len(sizes)}
    low, high = {}, {}
    for system, label in (("interpolated", "interpolated (tuned alpha)"), ("pure", "re-ranker alone")):
        values = [r["sizes"][n][system]["ndcg@10"] for n in sizes]
        series[label] = [v["mean"] for v in values]
        low[label], high[label] = [v["min"] for v in values], [v["max"] for v in values]
    with atomic_write(path) as f:
        f.write(lines(sizes, series, low, high, title=f"{r['config']['data']} {r['config']['test_split']}: nDCG@10 "
                      f"against labelled training queries", xlabel="training queries (N)", ylabel="nDCG@10"))


if __name__ == "__main__":
    main()
