"""The experiment of the paper (arXiv 2411.02404, section 4), on any BEIR-layout folder: one re-ranker, trained from
the same start with the same recipe and seeds on negatives mined by each strategy, judged on the same test queries.

Arms (a list in the configuration, so an ablation is one more line):
  (a) first-stage     the first stage alone, no re-ranker
  (b) random          random negatives                          (c) bm25   BM25's top non-positives
  (d) dense           one model's nearest non-positives          (e) ensemble   the paper: ensemble + k-means
  (f) ensemble+       (e) with the positive-aware ceiling and a quarter of random negatives
and, for the paper's open question on long documents, (f) mined over passages (a document scores as its best
passage), judged twice: documents truncated at the window, and cut into passages scored by the best one (MaxP).
On request (CLUSTERING_ARMS, `experiment --clustering-arms`), for its open question on clustering: (f) with
agglomerative clustering, a Gaussian mixture, or no clustering at all. Also on request (RULE_ARMS, named in
`experiment --arms`), the authors' follow-up rule (arXiv 2505.18366): (f)'s ensemble and recipe with the rule in a
PCA space instead of k-means and the ceiling.

Each trained model re-ranks the first stage's top k of every test query, and is reported twice: pure (alpha 1)
and interpolated with the first stage, alpha x z(re-ranker) + (1 - alpha) x z(first stage), alpha chosen on the
model's own tuning split (the held-out tenth of the training queries, train.py) and stored in its checkpoint
(twostage.py). Nothing is tuned on the test split. The pure rows are read against a floor: the same candidates in
SHUFFLES seeded random orders (results.FLOOR), what a re-ranker that learned nothing would score. With several
seeds, every metric is given as the mean and standard deviation over them and per seed; intervals and paired
randomisation tests are computed on each test query's metric averaged over the seeds. Each arm's first-seed model
also re-ranks BM25's top k of the test queries alone (ExperimentConfig.check): whether the re-ranker by itself
beats BM25 on BM25's own candidates.

Every stage writes its result under OUT and is skipped when the result is there (mining and training also resume
from their own checkpoints), so a long experiment can be split across sittings. The work goes seed by seed, arm by
arm, and the report is rewritten after each model, so a run stopped half-way leaves a report of what it finished.
Outputs: OUT/report.md, OUT/results.json, OUT/chart.svg. Under torchrun every rank walks the same stages, each
stage shares its work among them (distributed.py), and rank 0 writes; OUT must be one folder all ranks see.

Not here: the mining, training and ranking themselves (miner.py, train.py, firststage.py, twostage.py); judging and
the report (results.py).
"""

import json
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from hnm.chunk import chunk_spans
from hnm.config import (ARMS, BUDGETS, CLUSTERING_ARMS, RULE_ARMS, Arm, Budget, ChunkConfig, ExperimentConfig, MineConfig,
                        TrainConfig)
from hnm.data import Qrels, atomic_write, document_text, load_beir, read_json
from hnm.errors import InputError
from hnm.distributed import current
from hnm.embed import resolve_precision
from hnm.firststage import FirstStageConfig, retrieve
from hnm.metrics import Run, rank_documents, read_trec_run, write_trec_run
from hnm.reranker import CrossEncoder
from hnm.results import FIRST, FLOOR, System, against, claim, judge, report
from hnm.svg import bars
from hnm.train import kept_checkpoint, train
from hnm.twostage import interpolate, rerank, store_alpha, tune_alpha

def arm_mine_config(arm: Arm, models: str, negatives: int) -> MineConfig:
    """The mining of `arm`: an arm names what it changes from a plain top-k miner, so the random share is 0 unless
    it says otherwise, whatever `hnm mine`'s defaults are (they are the default recipe's, a quarter random)."""
    return MineConfig(**{"models": models, "num_negatives": negatives, "random_share": 0.0, **arm.mine})


def choose_arms(arms: Tuple[Arm, ...], names: Optional[str] = None, clustering: bool = False) -> Tuple[Arm, ...]:
    """The arms of a run: `arms`, then the clustering arms if asked; with `names` (comma-separated), only the named
    ones in that order, after the first stage alone, which every report keeps. An unknown name is an error."""
    if clustering:
        arms = arms + tuple(a for a in CLUSTERING_ARMS if a not in arms)
    if not names:
        return arms
    known = {a.name: a for a in arms + CLUSTERING_ARMS + RULE_ARMS}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"no arm named {', '.join(map(repr, unknown))}; the arms are {', '.join(known)}")
    return tuple(a for a in arms if a.mine is None) + tuple(known[n] for n in wanted if known[n].mine is not None)


def _subset(qrels: Qrels, n: Optional[int]) -> Qrels:
    return {q: qrels[q] for q in sorted(qrels, key=lambda q: (len(q), q))[:n]} if n else qrels


def cut_corpus(corpus: Dict[str, dict], n: Optional[int], *qrels: Qrels, seed: int = 0) -> Dict[str, dict]:
    """At most n documents, in corpus order: every document judged for the given queries (all of them, even past n),
    then a seeded random sample of the others. n None, or a corpus of n or fewer: the corpus itself."""
    if n is None or len(corpus) <= n:
        return corpus
    judged = {d for qr in qrels for docs in qr.values() for d in docs if d in corpus}
    others = [d for d in corpus if d not in judged]
    picked = np.random.default_rng(seed).choice(len(others), size=max(0, n - len(judged)), replace=False)
    keep = judged | {others[i] for i in picked}
    return {d: doc for d, doc in corpus.items() if d in keep}


def passage_corpus(corpus: Dict[str, dict], tokenizer, max_tokens: int) -> Tuple[Dict[str, dict], Dict[str, str]]:
    """Each document cut into token windows (stride 3/4): ({"doc#i": {"title", "text"}}, {"doc#i": doc})."""
    cfg = ChunkConfig(mode="tokens", max_tokens=max_tokens)
    passages, parent = {}, {}
    for d, doc in corpus.items():
        spans = chunk_spans(doc["text"], tokenizer, cfg)
        if len(spans) <= 1:  # fits one window: the document itself, byte for byte
            spans = [(0, len(doc["text"]))]
        for i, (s, e) in enumerate(spans):
            passages[f"{d}#{i}"] = {"title": doc["title"], "text": doc["text"][s:e]}
            parent[f"{d}#{i}"] = d
    return passages, parent


def rerank_by_passages(model: CrossEncoder, run: Run, queries: Dict[str, str], corpus: Dict[str, dict], top_k: int,
                       precision: str = "float32", quiet: bool = False) -> Run:
    """Re-rank the top_k documents of each query, each scored by its best passage (MaxP)."""
    top = {q: dict(rank_documents(docs, top_k)) for q, docs in run.items()}
    needed = {d: corpus[d] for docs in top.values() for d in docs}
    passages, parent = passage_corpus(needed, model.tokenizer, model.max_length // 2)
    passage_run = {q: {p: docs[parent[p]] for p in passages if parent[p] in docs} for q, docs in top.items()}
    scored = rerank(model, passage_run, queries, passages, top_k=len(passages), precision=precision, quiet=quiet)
    out: Run = {}
    for q, ps in scored.items():
        best = out.setdefault(q, {})
        for p, s in ps.items():
            best[parent[p]] = max(s, best.get(parent[p], -np.inf))
    return out


def _long_queries(qrels: Qrels, long_docs: set) -> Tuple[set, set]:
    """Test queries split by whether every relevant document fits the window, or one goes beyond it."""
    within, beyond = set(), set()
    for q, docs in qrels.items():
        (beyond if any(d in long_docs for d, g in docs.items() if g > 0) else within).add(q)
    return within, beyond


def _long_documents(qrels: Qrels, corpus: Dict[str, dict], tokenizer, window: int) -> set:
    """The judged relevant documents longer than `window` tokens."""
    relevant = {d for docs in qrels.values() for d, g in docs.items() if g > 0}
    return {d for d in relevant if len(tokenizer.tok.encode(document_text(corpus[d]), add_special_tokens=False).ids)
            > window}


def relevant_document_rr(run: Run, qrels: Qrels, long_docs: set) -> Dict[str, float]:
    """Per document rather than per query: the mean reciprocal rank of every judged relevant (query, document) pair,
    for documents within the window and beyond it (1 / rank in the query's ranking; 0 when not retrieved).
    Queries with many relevant documents of both lengths (Cranfield) make the per-query split lopsided; this one
    is not."""
    sums = {"within window": [0.0, 0], "beyond window": [0.0, 0]}
    for q, docs in qrels.items():
        rank = {d: i + 1 for i, (d, _) in enumerate(rank_documents(run.get(q, {})))}
        for d, g in docs.items():
            if g > 0:
                part = sums["beyond window" if d in long_docs else "within window"]
                part[0] += 1.0 / rank[d] if d in rank else 0.0
                part[1] += 1
    return {f"rr {k}": (v[0] / v[1] if v[1] else None) for k, v in sums.items()} | \
        {f"pairs {k}": v[1] for k, v in sums.items()}


class Stages:
    """Runs each stage once: a stage whose output exists is read back, and its recorded wall time kept."""

    def __init__(self, out: Path):
        self.out = out
        self.times_path = out / "stage_times.json"
        self.times = read_json(self.times_path) if self.times_path.exists() else {}

    def timed(self, name: str, done: bool, work) -> None:
        """Run `work` unless `done`; under torchrun every rank runs it, rank 0 writes, and all wait for rank 0."""
        if done:
            return
        t0 = time.monotonic()
        work()
        self.times[name] = round(time.monotonic() - t0, 1)
        procs = current()
        if procs.main:
            with atomic_write(self.times_path) as f:
                json.dump(self.times, f, indent=1)
        procs.barrier()  # what rank 0 wrote is there before any rank asks whether the next stage is done


def _slug(label: str) -> str:
    return label.replace(" / ", "-").replace(" ", "-")


def work_order(arms: Tuple[Arm, ...], seeds: Tuple[int, ...]) -> List[Tuple[Arm, int]]:
    """(arm, seed) of every model, seed by seed: the first seed of every arm comes before any second seed, so a
    run stopped early has one model of each arm. A passages arm comes after all of them: its mining embeds every
    passage of the corpus with each model, the dearest stage of the experiment by far (SciFact on two cores: about
    half an hour), and the paper's claim does not compare it, so it should not hold back the seeds that do."""
    order = [(arm, seed) for i, seed in enumerate(seeds) for arm in arms
             if arm.mine is not None and (arm.seeds is None or i < arm.seeds)]
    return sorted(order, key=lambda work: work[0].passages)  # stable: the order within each part is kept


def run_experiment(data: Path, out: Path, cfg: ExperimentConfig = ExperimentConfig(), quiet: bool = False,
                   prepare: bool = False) -> dict:
    """Run (or resume) the whole experiment on the BEIR folder `data`; write the report; return the results.
    With `prepare`, only the stages that need the ensemble's encoders: the first stages and every arm's mining;
    then {} (the rest can run where only the start model is, from a copy of `out`)."""
    t0 = time.monotonic()
    out = Path(out)
    for sub in ("mined", "models", "runs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    b = cfg.budget
    precision = resolve_precision(b.precision)
    _same_config(out, cfg)
    stages = Stages(out)
    corpus, queries, train_qrels = load_beir(data, cfg.train_split)
    train_qrels = _subset(train_qrels, b.train_queries)
    _, test_queries, test_qrels = load_beir(data, cfg.test_split)
    test_qrels = _subset(test_qrels, b.test_queries)
    test_queries = {q: test_queries[q] for q in test_qrels}
    train_queries = {q: queries[q] for q in train_qrels if q in queries}
    corpus_size = len(corpus)
    corpus = cut_corpus(corpus, b.corpus_docs, train_qrels, test_qrels)

    # 1. the first stage, on the test queries and on the training queries (whose held-out part tunes alpha)
    fcfg = FirstStageConfig(kind=cfg.first_stage, top_k=b.top_k, models=b.models, precision=precision)
    firsts = {}
    for part, qs in (("test", test_queries), ("train", train_queries)):
        path = out / "runs" / f"first-stage.{part}.trec"
        stages.timed(f"first stage {part}", path.exists(),
                     lambda: _write_run(path, retrieve(corpus, qs, fcfg, quiet), "first-stage"))
        firsts[part] = read_trec_run(path)
    check = cfg.check if cfg.check != cfg.first_stage else None  # the same first stage: its pure rows say it
    if check:
        path = out / "runs" / f"{check}.test.trec"
        ccfg = replace(fcfg, kind=check)
        stages.timed(f"{check} test", path.exists(),
                     lambda: _write_run(path, retrieve(corpus, test_queries, ccfg, quiet), check))
        firsts["check"] = read_trec_run(path)

    # 2. per model: mine (once per arm, the mining seed being fixed), train, tune alpha on its tuning queries,
    # re-rank the test queries; the report after each. An arm is mined only when its first model is due, so that
    # the passages arm's long embedding does not hold back the others.
    def mined(arm: Arm) -> Path:
        mine_cfg = arm_mine_config(arm, b.models, b.negatives)
        rows = out / "mined" / f"{arm.name}.jsonl"
        stages.timed(f"mine {arm.name}", rows.exists(),
                     lambda: _mine(arm, mine_cfg, corpus, queries, train_qrels, rows, precision, quiet))
        return rows

    if prepare:
        for arm in cfg.arms:
            if arm.mine is not None:
                mined(arm)
        return {}
    from hnm.chunk import load_tokenizer
    long_docs = _long_documents(test_qrels, corpus, load_tokenizer(b.start), b.max_length - 3)  # once, for every report
    results = None
    for arm, seed in work_order(cfg.arms, b.seeds):
        name = f"{arm.name}-s{seed}"
        folder = out / "models" / name
        reranks = [(f"rerank {s.label} seed {seed}", _run_path(out, s, seed), "test", s.mode) for s in _modes(arm)]
        if check and seed == b.seeds[0]:
            reranks.append((f"rerank {arm.name} on {check} seed {seed}", _check_path(out, arm, seed, check), "check",
                            "truncate"))
        # trained: its summary is there, and so is its checkpoint, unless nothing left to do needs it (a record of
        # finished models copied into a fresh OUT has their summaries, alphas and runs but not their weights)
        finished = (folder / "alpha.json").exists() and all(path.exists() for _, path, _, _ in reranks)
        trained = (folder / "done.json").exists() and (kept_checkpoint(folder).exists() or finished)
        if not trained:  # mined only when a model of the arm is due; what an earlier model made is made again
            rows = mined(arm)
            if current().main:
                for stale in (folder / "alpha.json", *(path for _, path, _, _ in reranks)):
                    stale.unlink(missing_ok=True)
        stages.timed(f"train {name}", trained, lambda: _train(rows, folder, b.start, cfg.train_config(seed), quiet))
        stages.timed(f"tune {name}", (folder / "alpha.json").exists(),
                     lambda: _tune(folder, firsts["train"], queries, corpus, train_qrels, fcfg, cfg, quiet))
        for stage, path, part, mode in reranks:
            stages.timed(stage, path.exists(), lambda: _rerank(folder, firsts[part], test_queries, corpus, b.top_k,
                                                               mode, path, precision, quiet))
        results = _write_results(out, data, cfg, corpus, corpus_size, test_qrels, firsts["test"], long_docs, stages, t0)
    if results is None:  # no trained arm: the first stage alone
        results = _write_results(out, data, cfg, corpus, corpus_size, test_qrels, firsts["test"], long_docs, stages, t0)
    return results


def _same_config(out: Path, cfg: ExperimentConfig) -> None:
    """OUT/config.json records the configuration OUT was made with; resuming with another one would mix models
    trained on two recipes in one table, so it is refused. Precision is recorded as given: under "auto", a model
    trained in float32 on one machine and one in bfloat16 on another follow the same recipe (each one's done.json
    says which it had)."""
    now = json.loads(json.dumps(asdict(cfg)))
    path = out / "config.json"
    if path.exists():
        then = read_json(path)
        if not isinstance(then, dict):
            raise InputError(f"{path}: not an experiment's configuration; give another --out, or remove {out}")
        if then != now:
            changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
            raise InputError(f"{out} holds an experiment made with another configuration (it differs in "
                             f"{', '.join(changed)}; see {path}): give another --out, or remove {out}")
    elif current().main:
        with atomic_write(path) as f:
            json.dump(now, f, indent=1)
    current().barrier()


SHUFFLES = 20  # seeded random orders of the first stage's candidates: the floor a pure re-ranker is read against


def shuffled(run: Run, seed: int) -> Run:
    """The run's candidates of each query in a random order (seeded): what a re-ranker that learned nothing scores."""
    rng = np.random.default_rng(seed)
    return {q: dict(zip(sorted(docs), rng.permutation(len(docs)).astype(float).tolist()))
            for q, docs in sorted(run.items())}


def _modes(arm: Arm) -> Tuple[System, ...]:
    """The arm's re-ranked systems: on each document's start, and with passages also by its best passage."""
    return (System(arm.name),) + ((System(arm.name, "passages"),) if arm.passages else ())


def _run_path(out: Path, system: System, seed: int) -> Path:
    return out / "runs" / f"{_slug(system.label)}-s{seed}.trec"


def _systems(out: Path, cfg: ExperimentConfig, first: Run) -> Dict[System, Dict[int, Run]]:
    """Every finished run: {system: {seed: run}}, each re-ranked arm twice, interpolated and pure, and the first
    stage's top k shuffled (SHUFFLES seeds), the floor for the pure rows."""
    systems: Dict[System, Dict[int, Run]] = {FIRST: {0: first}}
    top = {q: dict(rank_documents(docs, cfg.budget.top_k)) for q, docs in first.items()}
    systems[FLOOR] = {seed: shuffled(top, seed) for seed in range(SHUFFLES)}
    for arm in cfg.arms:
        if arm.mine is None:
            continue
        for system in _modes(arm):
            for seed in cfg.budget.seeds:
                path = _run_path(out, system, seed)
                if not path.exists():
                    continue
                pure = read_trec_run(path)
                alpha = json.loads((out / "models" / f"{arm.name}-s{seed}" / "alpha.json").read_text())["alpha"]
                systems.setdefault(system, {})[seed] = interpolate(pure, first, alpha)
                systems.setdefault(system._replace(pure=True), {})[seed] = pure
    return systems


def _check_path(out: Path, arm: Arm, seed: int, check: str) -> Path:
    return out / "runs" / f"{_slug(arm.name)}-s{seed}.on-{check}.trec"


def _check_runs(out: Path, cfg: ExperimentConfig, first: Run) -> Tuple[Optional[Run], Dict[str, Run]]:
    """(cfg.check's first stage alone, {arm: its first-seed model's pure run of that first stage's top k}); when
    cfg.check is the experiment's own first stage, its runs. (None, {}) without a check."""
    if not cfg.check:
        return None, {}
    seed = cfg.budget.seeds[0]
    own = cfg.check == cfg.first_stage
    alone = first if own else (read_trec_run(p) if (p := out / "runs" / f"{cfg.check}.test.trec").exists() else None)
    runs = {}
    for arm in cfg.arms:
        path = out / "runs" / f"{_slug(arm.name)}-s{seed}.trec" if own else _check_path(out, arm, seed, cfg.check)
        if arm.mine is not None and path.exists():
            runs[arm.name] = read_trec_run(path)
    return alone, runs


def _write_run(path: Path, run: Run, tag: str) -> None:
    if current().main:
        write_trec_run(path, run, tag)


def _write_results(out: Path, data: Path, cfg: ExperimentConfig, corpus, corpus_size: int, test_qrels: Qrels,
                   first: Run, long_docs: set, stages: Stages, t0: float) -> dict:
    """The report, results.json and chart from the runs on disk (computed on every rank, written by rank 0)."""
    b = cfg.budget
    systems = _systems(out, cfg, first)
    within, beyond = _long_queries(test_qrels, long_docs)
    results = judge(systems, test_qrels, cfg.resamples, b.top_k, {"within window": within, "beyond window": beyond})
    results["relevant_documents"] = {s.label: relevant_document_rr(r[min(r)], test_qrels, long_docs)
                                     for s, r in systems.items()}
    results["claim"] = claim(results["seeds_mean"], p_values=results["p_values"])
    results["rule_mining"] = {}  # the pca rule's mining statistics (miner.pca_statistics), where it has mined
    for arm in cfg.arms:
        path = out / "mined" / f"{arm.name}.jsonl.stats.json"
        if arm.mine and arm.mine.get("selection") == "pca" and path.exists():
            mined = json.loads(path.read_text())
            results["rule_mining"][arm.name] = {**mined["pca"], "queries_with_too_few_negatives":
                                                mined["queries_with_too_few_negatives"]}
    alone, checked = _check_runs(out, cfg, first)
    if alone is not None and checked:
        results["check"] = {"first_stage": cfg.check, "seed": b.seeds[0],
                            **against(alone, checked, test_qrels, cfg.resamples)}
    results["alphas"] = {p.parent.name: json.loads(p.read_text())["alpha"]
                         for p in sorted((out / "models").glob("*/alpha.json"))}
    results["training"] = {p.parent.name: {k: json.loads(p.read_text()).get(k) for k in
                                           ("seconds", "pairs_per_s", "steps", "examples", "best", "precision")}
                           for p in sorted((out / "models").glob("*/done.json"))}
    results.update({"data": str(data), "budget": asdict(b), "arms": [asdict(a) for a in cfg.arms],
                    "first_stage": cfg.first_stage, "loss": cfg.loss,
                    "precision": resolve_precision(b.precision),
                    "corpus": {"documents": len(corpus), "of": corpus_size}, "stage_seconds": stages.times,
                    "machine": machine_line(), "wall_seconds_this_sitting": round(time.monotonic() - t0, 1)})
    if not current().main:
        return results
    with atomic_write(out / "results.json") as f:
        json.dump(results, f, indent=1)
    with atomic_write(out / "report.md") as f:
        f.write(report(results))
    m, ci = results["seeds_mean"], results["intervals"]
    shown = [n for n, s in results["systems"].items() if not (s["pure"] or s["shuffled"])]
    with atomic_write(out / "chart.svg") as f:
        f.write(bars({n: m[n]["ndcg@10"] for n in shown}, {n: ci[n]["ndcg@10"][0] for n in shown},
                     {n: ci[n]["ndcg@10"][1] for n in shown}, f"nDCG@10 on {Path(data).name} {cfg.test_split}, "
                     f"re-rankers interpolated with the first stage, 95% bootstrap intervals", "nDCG@10"))
    return results


def _mine(arm: Arm, mine_cfg: MineConfig, corpus, queries, qrels, path: Path, precision: str, quiet: bool) -> None:
    from hnm.embed import EmbedConfig
    from hnm.miner import run
    embed_cfg = EmbedConfig(precision=precision)
    if not arm.passages:
        run(corpus, queries, qrels, mine_cfg, path, embed_cfg, quiet=quiet)
        return
    # mine over passages: each model embeds each document's windows of its own length, a document scoring as its
    # best passage (a document that fits a window is one passage with the document's text, so its cached vector is
    # reused)
    from hnm.chunk import load_tokenizer
    from hnm.embed import Embedder
    from hnm.ensemble import PassageEnsemble, parse_members
    from hnm.miner import positives_of
    members = [m for m in parse_members(mine_cfg.models) if m.name != "bm25"]
    row_of = {d: i for i, d in enumerate(corpus)}
    kept = positives_of(qrels, queries, {d: [i] for d, i in row_of.items()}, mine_cfg.min_grade)[0]
    p_vecs, p_docs, q_vecs = [], [], []
    for m in members:
        tokenizer = load_tokenizer(m.name)
        passages, parent = passage_corpus(corpus, tokenizer, tokenizer.max_length - 2)
        model = Embedder.load(m.name, embed_cfg, quiet=quiet)
        p_vecs.append(model.encode([document_text(p) for p in passages.values()], quiet=quiet))
        p_docs.append(np.array([row_of[parent[p]] for p in passages]))
        q_vecs.append(model.encode([queries[q] for q in kept], kind="query", quiet=quiet))
    run(corpus, queries, qrels, mine_cfg, path, embed_cfg, quiet=quiet,
        ensemble=PassageEnsemble(members, p_vecs, p_docs, q_vecs))


def _train(rows: Path, folder: Path, start: str, tcfg: TrainConfig, quiet: bool) -> None:
    summary = train(rows, folder, start, tcfg, resume=(folder / "last").exists(), quiet=quiet)
    if current().main:
        with atomic_write(folder / "done.json") as f:
            json.dump(summary, f, indent=1, default=str)


def _tune(folder: Path, first_train: Run, queries, corpus, train_qrels: Qrels, fcfg: FirstStageConfig,
          cfg: ExperimentConfig, quiet: bool) -> None:
    """alpha on the model's tuning queries: their first-stage top k re-ranked, the best nDCG@10 of the grid."""
    tuning = [q for q in json.loads((folder / "tuning_queries.json").read_text()) if q in first_train]
    if tuning:
        tuned = tune_alpha(kept_checkpoint(folder), {q: first_train[q] for q in tuning}, queries, corpus,
                           {q: train_qrels[q] for q in tuning}, fcfg, precision=cfg.budget.precision, quiet=quiet)
    else:  # no tuning split: pure re-ranking
        tuned = {"alpha": 1.0, "first_stage": cfg.first_stage, "top_k": fcfg.top_k, "tuning_queries": 0,
                 "metric": "ndcg@10", "curve": {}}
        if current().main:
            store_alpha(kept_checkpoint(folder), 1.0, fcfg, {k: v for k, v in tuned.items() if k != "alpha"})
    if current().main:
        with atomic_write(folder / "alpha.json") as f:
            json.dump(tuned, f, indent=1)


def _rerank(folder: Path, first: Run, queries, corpus, top_k: int, mode: str, path: Path, precision: str,
            quiet: bool) -> None:
    """The model's pure scores of the first stage's top k (interpolation is applied when judging)."""
    model = CrossEncoder.from_checkpoint(kept_checkpoint(folder))
    t0 = time.monotonic()
    if mode == "truncate":
        run = rerank(model, first, queries, corpus, top_k, precision=precision, quiet=quiet)
    else:
        run = rerank_by_passages(model, first, queries, corpus, top_k, precision, quiet)
    if not current().main:
        return
    write_trec_run(path, run, path.stem)
    pairs = sum(map(len, run.values()))
    with atomic_write(path.with_suffix(".speed.json")) as f:
        json.dump({"pairs": pairs, "seconds": round(time.monotonic() - t0, 1),
                   "pairs_per_s": round(pairs / max(time.monotonic() - t0, 1e-9), 2), "precision": precision}, f)


def machine_line() -> str:
    """The CPU's model name where Linux gives it, its cores, the platform and torch's thread count; first, the GPU
    the models ran on, when they ran on one."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = current().device
    gpu = f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}), host " if device.type == "cuda" else ""
    return f"{gpu}{cpu}, {os.cpu_count()} cores, {platform.platform()}, torch threads {torch.get_num_threads()}"
