"""The default recipe as one resumable job, for a user with one folder of documents and judged questions.

    report = fit(Path("kestrel"), Path("kestrel/fit"))      # `python -m hnm fit --data kestrel --output kestrel/fit`

Five stages; each leaves its result in the output folder, and a rerun (after a kill, or with --stop-after) skips
what is done and resumes what is half done:

1. split.json   the judged queries of `split` (qrels/<split>.tsv) to learn from, and the test queries: those of
                qrels/<test_split>.tsv when the folder has it, else a seeded share `test_share` of the judged
                queries, held out of everything else. Training then holds out `TrainConfig.eval_fraction` of the
                learning queries as the tuning split (model/tuning_queries.json), which picks the kept checkpoint
                and alpha.
2. mined.jsonl  hard negatives for the training queries (miner.py, MineConfig).
3. model/       the cross-encoder trained on them (train.py, TrainConfig); model/best is kept. Under the "auto"
                recipe, with fewer than config.FEW_LABELS queries to learn from, also model-few-label/: the same
                with MarginMSE on a teacher's scores (config.RECIPES), which helps where labels are few. A recipe
                whose teacher is the first stage trains on mined.first-stage.jsonl: the mined rows with the first
                stage's scores of their positives and negatives (firststage.annotate_rows), written once.
                With `cross_fit` k > 1 there is no tuning split: each recipe is cross-fitted (crossfit.py: k fold
                models, alpha and the epochs chosen out of fold on every query to learn from, a final model on all
                of them, in model*/final), and stage 4 compares the recipes' out-of-fold figures.
4. tune.json    alpha for the first stage (FirstStageConfig) on the tuning queries, chosen in folds (each fold
                scored at the alpha the others chose), and stored in the checkpoint; with two recipes, the one whose
                re-ranker scores better there. When no re-ranker beats the first stage alone out of fold, alpha is
                0 and fit says so: a re-ranker that learned nothing never makes the user's ranking worse.
5. report.md    on the test queries: the first stage alone, the re-ranker alone and interpolated, MRR@10, nDCG@10
                and the other metrics, with paired tests against the first stage (report.json: the same, whole;
                runs/test.*.trec: the three runs, for trec_eval or another look).

Before training it says how many examples the rows make and roughly what they cost, and it warns when the tuning
split is too small to choose alpha well. A chunked corpus is handled throughout (pages.py). The folder's settings
are written to fit.json on the first run; a rerun with other settings is refused (start a new output folder).

Not here: the stages themselves (miner.py, train.py, twostage.py) and the command line (__main__.py).
"""

import functools
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from hnm.config import FEW_LABELS, FIT_FIELDS_BEFORE, RECIPES, FitConfig, TrainConfig
from hnm.data import Qrels, atomic_write, load_beir, read_jsonl, read_qrels, write_jsonl
from hnm.errors import HnmError
from hnm.firststage import FirstStage, annotate_rows
from hnm.pages import page_qrels

TUNING_FLOOR = 30  # tuning queries under which alpha and the kept checkpoint are uncertain
CPU_PAIRS_PER_S = (13, 21)  # training pairs/s of the default recipe on a 2-core CPU (scripts/results/ablation_*)


def split_queries(qrels: Qrels, share: float, seed: int) -> List[str]:
    """The test queries drawn from `qrels`: round(share x n) of them (at least 1 of 2 or more), seeded, sorted."""
    qids = sorted(qrels)
    n = max(1, round(share * len(qids))) if len(qids) > 1 else 0
    return sorted(np.array(qids)[np.random.default_rng(seed).permutation(len(qids))[:n]].tolist())


def _settings(cfg: FitConfig) -> dict:
    """fit.json: what a rerun must repeat (not stop_after, which only says where this invocation ends)."""
    out = asdict(cfg)
    out["train"].pop("stop_after")
    return out


def _same_settings(out: Path, cfg: FitConfig) -> None:
    path = out / "fit.json"
    if path.exists():
        try:
            before = {**FIT_FIELDS_BEFORE, **json.loads(path.read_text(encoding="utf-8"))}
        except json.JSONDecodeError as e:
            raise HnmError(f"{path}: not valid JSON ({e.msg}); remove the output folder to start again") from None
        now = json.loads(json.dumps(_settings(cfg)))  # as JSON reads it back: tuples become lists
        if before != now:
            changed = [k for k in now if before.get(k) != now[k]]
            raise HnmError(f"{path}: this folder was fitted with other settings ({', '.join(changed)}); give the "
                           f"same flags to resume, or another --output")
    else:
        with atomic_write(path) as f:
            json.dump(_settings(cfg), f, indent=1)


def _split(data: Path, out: Path, qrels: Qrels, cfg: FitConfig, say) -> dict:
    """split.json: {"learn": [qids], "test": [qids], "test_from": file or share}, made once."""
    path = out / "split.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    test_file = Path(data) / "qrels" / f"{cfg.test_split}.tsv"
    if test_file.is_file():
        test = sorted(read_qrels(test_file, quiet=True))
        learn = sorted(set(qrels) - set(test))
        source = str(test_file)
    else:
        test = split_queries(qrels, cfg.test_share, cfg.seed)
        learn = sorted(set(qrels) - set(test))
        source = f"a seeded {cfg.test_share:.0%} of {cfg.split}'s judged queries (seed {cfg.seed})"
    if not learn:
        raise HnmError(f"{Path(data) / 'qrels' / (cfg.split + '.tsv')}: no judged query is left to learn from")
    split = {"learn": learn, "test": test, "test_from": source}
    n_tuning = round(cfg.train.eval_fraction * len(learn))
    how = (f"cross-fitted in {cfg.cross_fit} folds, no tuning split" if cfg.cross_fit > 1 else
           f"{len(learn) - n_tuning} to train on, {n_tuning} to tune on, {cfg.train.eval_fraction:.0%}")
    say(f"split: {len(learn)} queries to learn from ({how}), {len(test)} to test on ({source})")
    with atomic_write(path) as f:
        json.dump(split, f, indent=1)
    return split


def fit(data: Path, out: Path, cfg: FitConfig = FitConfig(), quiet: bool = False, say=print) -> dict:
    """Run (or resume) the five stages of the module docstring; -> the report ({"metrics", "comparisons",
    "alpha", "seconds", ...}), or {"stopped": step} when training ended early at TrainConfig.stop_after."""
    from hnm.crossfit import cross_fit
    from hnm.miner import run as mine
    from hnm.train import train
    from hnm.twostage import store_alpha, tune_alpha
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _same_settings(out, cfg)
    seconds: Dict[str, float] = json.loads((out / "seconds.json").read_text()) if (out / "seconds.json").exists() \
        else {}

    def timed(stage: str, started: float) -> None:
        seconds[stage] = round(seconds.get(stage, 0.0) + time.monotonic() - started, 1)
        with atomic_write(out / "seconds.json") as f:
            json.dump(seconds, f)

    corpus, queries, qrels = load_beir(data, cfg.split)
    split = _split(data, out, qrels, cfg, say)
    learn = {q: qrels[q] for q in split["learn"] if q in qrels}
    rows = out / "mined.jsonl"
    if not rows.exists():
        t0 = time.monotonic()
        mine(corpus, queries, learn, cfg.mine, rows, cfg.embed, quiet=quiet)
        timed("mine", t0)
    names = recipes_to_try(cfg.recipe, len(learn), say)
    first_stage = functools.lru_cache(maxsize=None)(lambda: FirstStage(corpus, cfg.stage, quiet))  # built once
    for name in names:
        folder, done = model_folder(out, name), out / ("train.json" if name == "default" else f"train-{name}.json")
        if done.exists():
            continue
        tcfg = replace(cfg.train, **RECIPES[name])
        t0 = time.monotonic()
        taught = teacher_rows(out, rows, tcfg, corpus, first_stage, quiet)
        _announce(taught, tcfg, say, f" ({name} recipe)" if len(names) > 1 else "")
        if cfg.cross_fit > 1:  # the recipe's alpha too: cross-fit.json, read by the tune stage below
            picked = {q: queries[q] for q in learn}
            summary = cross_fit(taught, folder, cfg.start, tcfg, first_stage().run(picked, quiet), picked, corpus,
                                learn, cfg.stage, cfg.cross_fit, quiet, say)
        else:
            summary = train(taught, folder, cfg.start, tcfg, resume=(folder / "last").exists(), quiet=quiet)
        timed(f"train {name}", t0)
        step = summary.get("stopped") if cfg.cross_fit > 1 else summary["steps"]
        if step is not None and step < summary["total_steps"]:
            say(f"training ({name} recipe{', ' + summary['model'] if 'model' in summary else ''}) stopped at step "
                f"{step} of {summary['total_steps']} (--stop-after); run the same command again to go on")
            return {"stopped": step}
        with atomic_write(done) as f:
            json.dump(summary, f, indent=1, default=str)
    first = first_stage()
    if not (out / "tune.json").exists() and cfg.cross_fit > 1:  # each recipe's alpha was chosen out of fold
        tuned = {name: json.loads((model_folder(out, name) / "cross-fit.json").read_text()) for name in names}
        chosen, why = choose_recipe(tuned)
        say(f"{'recipe: ' + chosen + '; ' if len(names) > 1 else ''}{why} (cross-fitted)")
        with atomic_write(out / "tune.json") as f:
            json.dump({**tuned[chosen], "recipe": chosen, "why": why, "recipes": tuned}, f, indent=1)
    if not (out / "tune.json").exists():
        t0 = time.monotonic()
        tuning = [q for q in json.loads((model_folder(out, names[0]) / "tuning_queries.json").read_text())
                  if q in learn]
        if 0 < len(tuning) < TUNING_FLOOR:
            say(f"note: {len(tuning)} tuning queries: with fewer than {TUNING_FLOOR}, alpha and the kept checkpoint "
                f"are uncertain (judge more queries, raise --eval-fraction, or cross-fit: --cross-fit 5)")
        picked = {q: queries[q] for q in tuning}
        if tuning:
            rows_run = first.run(picked, quiet)
            tuned = {name: tune_alpha(recipe_checkpoint(out, name), rows_run, picked, corpus,
                                      {q: learn[q] for q in tuning}, cfg.stage, precision=cfg.train.precision,
                                      quiet=quiet, folds=cfg.alpha_folds) for name in names}
            chosen, why = choose_recipe(tuned)
            say(f"{'recipe: ' + chosen + '; ' if len(names) > 1 else ''}{why}")
            tuned = {**tuned[chosen], "recipe": chosen, "why": why, "recipes": tuned}
        else:  # nothing to choose alpha on: the first stage alone, which a re-ranker cannot make worse
            say("note: no tuning queries, so alpha is 0 (the first stage alone); raise --eval-fraction")
            tuned = {"alpha": 0.0, "tuning_queries": 0, "top_k": cfg.stage.top_k, "recipe": names[0]}
            store_alpha(recipe_checkpoint(out, names[0]), 0.0, cfg.stage,
                        {k: v for k, v in tuned.items() if k != "alpha"})
        timed("tune", t0)
        with atomic_write(out / "tune.json") as f:
            json.dump(tuned, f, indent=1)
    tune = json.loads((out / "tune.json").read_text())
    recipe = tune.get("recipe", "default")  # a folder fitted before recipes were chosen trained the default
    t0 = time.monotonic()
    report = _report(data, out, cfg, split, first, recipe_checkpoint(out, recipe), tune["alpha"], quiet)
    report.update(recipe=recipe, why=tune.get("why"))
    timed("report", t0)
    report["seconds"] = seconds
    with atomic_write(out / "report.json") as f:
        json.dump(report, f, indent=1)
    with atomic_write(out / "report.md") as f:
        f.write(report_markdown(report))
    return report


def teacher_rows(out: Path, rows: Path, tcfg: TrainConfig, corpus: Dict[str, dict], first_stage,
                 quiet: bool = False) -> Path:
    """The rows a recipe trains on: the mined rows, or, when its teacher is the first stage, the same rows with the
    first stage's scores of their positives and negatives, written once to OUT/mined.first-stage.jsonl. The top k
    that annotate_rows also adds is kept only for a held-out check on it (TrainConfig.held_out "candidates").
    `first_stage`: () -> the FirstStage of the fit, built on first use."""
    if not (tcfg.teacher and tcfg.teacher_scores == "first_stage"):
        return rows
    path = out / "mined.first-stage.jsonl"
    if not path.exists():
        stage = first_stage()
        annotated = annotate_rows(corpus, [row for _, row in read_jsonl(rows)], stage.cfg, quiet, stage=stage)
        if tcfg.held_out != "candidates":
            annotated = [{k: v for k, v in row.items() if not k.startswith("candidate")} for row in annotated]
        write_jsonl(path, annotated)
    return path


def model_folder(out: Path, recipe: str) -> Path:
    """Where a recipe's model is trained: OUT/model for the default, OUT/model-<recipe> for another."""
    return out / ("model" if recipe == "default" else f"model-{recipe}")


def recipe_checkpoint(out: Path, recipe: str) -> Path:
    """The checkpoint a recipe's training keeps: its best held-out one (train.kept_checkpoint), or, cross-fitted,
    the final model's."""
    from hnm.train import kept_checkpoint
    folder = model_folder(out, recipe)
    return kept_checkpoint(folder / "final" if (folder / "cross-fit.json").is_file() else folder)


def fitted_checkpoint(path: Path) -> Path:
    """A re-ranker as given: a checkpoint folder as it is, or fit's output folder (it holds tune.json), whose kept
    checkpoint of the recipe fit chose is meant."""
    if not (path / "tune.json").is_file():
        return path
    return recipe_checkpoint(path, json.loads((path / "tune.json").read_text()).get("recipe", "default"))


def recipes_to_try(recipe: str, learn: int, say=print) -> List[str]:
    """The recipes to train: the one asked for, or under "auto" both below FEW_LABELS queries to learn from (the
    default first) and the default above."""
    if recipe != "auto":
        return [recipe]
    if learn >= FEW_LABELS:
        say(f"recipe: default ({learn} queries to learn from, at least {FEW_LABELS})")
        return ["default"]
    say(f"recipe: {learn} queries to learn from, under {FEW_LABELS}: both the default and the few-label recipe are "
        f"trained, and the one better on the tuning queries is kept")
    return list(RECIPES)


def choose_recipe(tuned: Dict[str, dict]) -> Tuple[str, str]:
    """The recipe whose re-ranker, interpolated at the alpha tuned for it, scores best on the tuning queries (out of
    fold where tune_alpha had folds), and why, in a sentence. When none beats the first stage alone there, every
    recipe's alpha is already 0 (tune_alpha): the first recipe is kept, and the sentence says the first stage stays
    alone.

    {"default": {"alpha": 0.3, "out_of_fold": 0.61, "first_stage_alone": 0.55, ...},
     "few-label": {"alpha": 0.0, "out_of_fold": 0.52, "first_stage_alone": 0.55, ...}} -> ("default", "...")
    """
    def score(t: dict) -> float:  # without folds: the best point of the alpha curve, on the same queries
        return t["out_of_fold"] if "out_of_fold" in t else max(t["curve"].values())

    names = list(tuned)
    best = max(names, key=lambda n: (tuned[n]["alpha"] > 0, score(tuned[n])))  # ties: the first, the default
    t = tuned[best]
    alone = t.get("first_stage_alone", t["curve"].get("0.0", t["curve"].get("0")))
    figures = ", ".join(f"{n} {score(tuned[n]):.4f}" for n in names)
    how = "out of fold" if "out_of_fold" in t else "at the best alpha"
    if t["alpha"] == 0:
        return names[0], (f"no re-ranker beat the first stage alone on the {t['tuning_queries']} tuning queries "
                          f"(nDCG@10 {how}: {figures}; the first stage {alone:.4f}), so alpha is 0: search keeps "
                          f"the first stage's ranking")
    return best, (f"alpha {t['alpha']:g}: nDCG@10 {how} on the {t['tuning_queries']} tuning queries {figures}, "
                  f"the first stage alone {alone:.4f}")


def _announce(rows: Path, tcfg: TrainConfig, say, which: str = "") -> None:
    """How many examples the rows make and roughly what training them costs, said before it starts."""
    from hnm.train import examples_of, read_rows, split_rows
    usable, _ = read_rows(rows, tcfg.negatives, tcfg.teacher)
    kept, _ = split_rows(usable, tcfg.eval_fraction, tcfg.seed)
    examples = len(examples_of(kept, tcfg.negatives, tcfg.teacher))
    per_query = np.mean([len(r["positives"]) for r in kept]) if kept else 0.0
    per_step = tcfg.batch_size * tcfg.grad_accum
    steps = tcfg.total_steps(examples // per_step)
    pairs = steps * per_step * (1 + tcfg.negatives)
    fast, slow = (pairs / rate for rate in CPU_PAIRS_PER_S[::-1])  # seconds
    when = f"{fast:.0f} to {slow:.0f} seconds" if slow < 120 else f"{fast / 60:.0f} to {slow / 60:.0f} minutes"
    say(f"training{which}: {len(kept)} queries with {per_query:.1f} positives each make {examples:,} examples; {steps:,} "
        f"steps of {per_step} examples, {pairs:,} (query, document) pairs in all: about "
        f"{when} on a 2-core CPU in float32, far less on a GPU")


def _report(data: Path, out: Path, cfg: FitConfig, split: dict, first, checkpoint: Path, alpha: float,
            quiet: bool) -> dict:
    """The test queries: the first stage alone, the re-ranker alone and interpolated, compared per page; the three
    runs also as TREC files, OUT/runs/test.{first-stage,reranker,interpolated}.trec (per page)."""
    from hnm.data import beir_file, read_queries
    from hnm.metrics import write_trec_run
    from hnm.reranker import CrossEncoder
    from hnm.twostage import compare, interpolate, rerank_pages
    test_file = Path(data) / "qrels" / f"{cfg.test_split}.tsv"
    all_queries = read_queries(beir_file(data, "queries.jsonl"))
    qrels = read_qrels(test_file if test_file.is_file() else Path(data) / "qrels" / f"{cfg.split}.tsv",
                       all_queries, quiet=True)
    test = {q: all_queries[q] for q in split["test"] if q in all_queries and q in qrels}
    if not test:
        raise HnmError(f"no test query of split.json has a text and judgments in {data}")
    rows = first.run(test, quiet)
    first_pages, pure = rerank_pages(CrossEncoder.from_checkpoint(checkpoint), rows, test, first.corpus, quiet=quiet)
    name = f"first stage ({cfg.stage.kind})"
    systems = {name: first_pages, "re-ranker alone": pure, f"interpolated (alpha {alpha:g})": interpolate(
        pure, first_pages, alpha)}
    (out / "runs").mkdir(exist_ok=True)
    for tag, run in zip(("first-stage", "reranker", "interpolated"), systems.values()):
        write_trec_run(out / "runs" / f"test.{tag}.trec", run, tag)
    report = compare(systems, page_qrels({q: qrels[q] for q in test}, first.pages))
    report["comparisons"] = [c for c in report["comparisons"] if c["a"] == name]
    return {**report, "alpha": alpha, "test_queries": len(test), "first_stage": cfg.stage.kind,
            "checkpoint": str(checkpoint), "top_k": cfg.stage.top_k}


def report_markdown(report: dict) -> str:
    """report.md: the before/after table with the paired tests against the first stage."""
    from hnm.twostage import REPORTED
    lines = [f"# hnm fit: {report['test_queries']} test queries, first stage {report['first_stage']} top "
             f"{report['top_k']}, alpha {report['alpha']:g}", "",
             *([f"Recipe {report['recipe']}: {report['why']}.", ""] if report.get("why") else []),
             "| system | " + " | ".join(REPORTED) + " |", "| --- |" + " --- |" * len(REPORTED)]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in REPORTED) + " |")
    lines += ["", "Against the first stage (paired randomisation test; 95% bootstrap interval of the difference):", ""]
    for c in report["comparisons"]:
        lines.append(f"- {c['b']}, {c['metric']}: {c['mean_difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}], "
                     f"p = {c['p']:.4f}")
    if report.get("seconds"):
        lines += ["", "Wall time (s): " + ", ".join(f"{k} {v:g}" for k, v in report["seconds"].items())]
    return "\n".join(lines) + "\n"
