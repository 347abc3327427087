"""The experiment of the paper (arXiv 2411.02404, section 4), on any BEIR-layout folder: one re-ranker, trained from
the same start, seed, step budget and loss on negatives mined by each strategy, judged on the same test queries.

Arms (a list in the configuration, so an ablation is one more line):
  (a) first-stage     the first stage alone, no re-ranker
  (b) random          random negatives                          (c) bm25   BM25's top non-positives
  (d) dense           one model's nearest non-positives          (e) ensemble   the paper: ensemble + k-means
  (f) ensemble+       (e) with the positive-aware ceiling and a quarter of random negatives
and, for the paper's open question on long documents, (f) mined over passages (a document scores as its best
passage) and every trained arm judged twice more on (f)'s model: documents truncated at the window, or cut into
passages and scored by the best one; reported for the test queries whose relevant documents fit the window and
those with one beyond it.

Every stage writes its result under OUT and is skipped when the result is there (mining and training also resume
from their own checkpoints), so a long experiment can be split across sittings. Nothing is tuned on the test split:
the only choice made on data, the kept checkpoint, uses a held-out tenth of the training queries (train.py).
Outputs: OUT/report.md, OUT/results.json, OUT/chart.svg.

Not here: the mining, training and ranking themselves (minerun.py, train.py, rerank.py).
"""

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from hnm.chunk import ChunkConfig, chunk_spans
from hnm.data import Qrels, atomic_write, document_text, load_beir
from hnm.metrics import (Run, evaluate, paired_bootstrap, per_query, randomisation_test, rank_documents, read_trec_run,
                         write_trec_run)
from hnm.mining import MineConfig
from hnm.rerank import EvalConfig, first_stage, rerank
from hnm.reranker import CrossEncoder
from hnm.svg import bars
from hnm.train import TrainConfig, train

BASELINES = ("random", "bm25", "dense")  # every arm is tested against these: the two, and one model alone


@dataclass(frozen=True)
class Arm:
    name: str
    mine: Optional[dict]  # MineConfig fields; None: no re-ranker (the first stage alone)
    passages: bool = False  # mine over passages (the long-document arm)


# (b) to (e) differ only in where candidates come from: no ceiling, no random share; (f) adds both to (e)
ARMS = (Arm("first-stage", None),
        Arm("random", {"strategy": "random", "relative_ceiling": None}),
        Arm("bm25", {"strategy": "bm25", "relative_ceiling": None}),
        Arm("dense", {"strategy": "dense", "relative_ceiling": None}),
        Arm("ensemble", {"strategy": "ensemble", "relative_ceiling": None}),
        Arm("ensemble+", {"strategy": "ensemble", "relative_ceiling": 0.95, "random_share": 0.25}),
        Arm("ensemble+ passages", {"strategy": "ensemble", "relative_ceiling": 0.95, "random_share": 0.25}, True))


@dataclass(frozen=True)
class Budget:
    """How much of everything: `small` is a smoke run (minutes), `full` the README's tables on a 2-core CPU (about an
    hour for SciFact once the embeddings are cached). A bigger setting is a `budget` entry in a --config file."""
    name: str
    models: str  # the ensemble (and, first of them, the dense arm's model)
    start: str  # the re-ranker's start encoder
    steps: int  # optimiser steps per arm
    batch_size: int  # triplets per step
    max_length: int  # tokens per (query, document) pair
    top_k: int  # first-stage documents re-ranked per test query
    test_queries: Optional[int]  # at most this many test queries (the first ones by id); None: all
    train_queries: Optional[int]  # at most this many training queries; None: all
    seeds: Tuple[int, ...] = (0,)
    lr: float = 1e-4  # peak learning rate: the new scoring head starts from nothing and the step budgets are short
    corpus_docs: Optional[int] = None  # at most this many documents (every judged one kept, see cut_corpus); None: all


# `full` is sized for this project's 2-core CPU: every training query mined, every test query judged, the first
# stage's top 20 re-ranked at 128 tokens (SciFact's median document is about 270 tokens, so most are truncated, which
# is what the long-document comparison measures), 150 steps of 8 triplets, one seed
BUDGETS = {
    # `small` also cuts the corpus: embedding all of SciFact's 5,183 documents and their passages took 9 of the 21
    # minutes of a cold small run on SciFact; with the cut it takes 14
    "small": Budget("small", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2", steps=40, batch_size=8, max_length=128,
                    top_k=20, test_queries=40, train_queries=200, corpus_docs=1500),
    "full": Budget("full", "all-MiniLM-L6-v2,all-mpnet-base-v2", "all-MiniLM-L6-v2", steps=150, batch_size=8,
                   max_length=128, top_k=20, test_queries=None, train_queries=None),
}


@dataclass(frozen=True)
class ExperimentConfig:
    train_split: str = "train"
    test_split: str = "test"
    first_stage: str = "bm25"
    budget: Budget = BUDGETS["small"]
    arms: Tuple[Arm, ...] = ARMS
    num_negatives: int = 4  # mined per query; training uses them one triplet at a time
    loss: str = "triplet"
    resamples: int = 2000  # bootstrap and randomisation test

    @classmethod
    def load(cls, path: Path, **overrides) -> "ExperimentConfig":
        """A JSON file {"arms": [{"name", "mine", "passages"}...], "budget": {...} or "small", ...} over the defaults."""
        raw = json.loads(Path(path).read_text())
        if "arms" in raw:
            raw["arms"] = tuple(Arm(**a) for a in raw["arms"])
        if isinstance(raw.get("budget"), str):
            raw["budget"] = BUDGETS[raw["budget"]]
        elif isinstance(raw.get("budget"), dict):
            raw["budget"] = Budget(**{**raw["budget"], "seeds": tuple(raw["budget"].get("seeds", (0,)))})
        return replace(cls(**raw), **overrides)


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
                       quiet: bool) -> Run:
    """Re-rank the top_k documents of each query, each scored by its best passage (MaxP)."""
    top = {q: dict(rank_documents(docs, top_k)) for q, docs in run.items()}
    needed = {d: corpus[d] for docs in top.values() for d in docs}
    passages, parent = passage_corpus(needed, model.tokenizer, model.max_length // 2)
    passage_run = {q: {p: docs[parent[p]] for p in passages if parent[p] in docs} for q, docs in top.items()}
    scored = rerank(model, passage_run, queries, passages, top_k=len(passages), quiet=quiet)
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
        self.times = json.loads(self.times_path.read_text()) if self.times_path.exists() else {}

    def timed(self, name: str, done: bool, work) -> None:
        if done:
            return
        t0 = time.monotonic()
        work()
        self.times[name] = round(time.monotonic() - t0, 1)
        with atomic_write(self.times_path) as f:
            json.dump(self.times, f, indent=1)


def run_experiment(data: Path, out: Path, cfg: ExperimentConfig = ExperimentConfig(), quiet: bool = False) -> dict:
    """Run (or resume) the whole experiment on the BEIR folder `data`; write the report; return the results."""
    t0 = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    b = cfg.budget
    stages = Stages(out)
    corpus, queries, train_qrels = load_beir(data, cfg.train_split)
    train_qrels = _subset(train_qrels, b.train_queries)
    _, test_queries, test_qrels = load_beir(data, cfg.test_split)
    test_qrels = _subset(test_qrels, b.test_queries)
    test_queries = {q: test_queries[q] for q in test_qrels}
    corpus_size = len(corpus)
    corpus = cut_corpus(corpus, b.corpus_docs, train_qrels, test_qrels)

    # 1. mining, one file per arm
    for arm in cfg.arms:
        if arm.mine is None:
            continue
        mine_cfg = MineConfig(**{"models": b.models, "num_negatives": cfg.num_negatives, **arm.mine})
        path = out / "mined" / f"{arm.name}.jsonl"
        path.parent.mkdir(exist_ok=True)
        stages.timed(f"mine {arm.name}", path.exists(),
                     lambda: _mine(arm, mine_cfg, corpus, queries, train_qrels, path, b, quiet))

    # 2. training, one model per arm and seed
    tcfg = TrainConfig(loss=cfg.loss, batch_size=b.batch_size, max_steps=b.steps, max_length=b.max_length, lr=b.lr,
                       eval_every=0, save_every=max(1, b.steps // 4))
    for arm in cfg.arms:
        for seed in b.seeds if arm.mine is not None else ():
            folder = out / "models" / f"{arm.name}-s{seed}"
            stages.timed(f"train {arm.name} seed {seed}", (folder / "done.json").exists(),
                         lambda: _train(out / "mined" / f"{arm.name}.jsonl", folder, b.start, replace(tcfg, seed=seed),
                                        quiet))

    # 3. the first stage on the test queries, then each model re-ranks its top k
    first_path = out / "runs" / "first-stage.trec"
    first_path.parent.mkdir(exist_ok=True)
    ecfg = EvalConfig(first_stage=cfg.first_stage, top_k=b.top_k, models=b.models)
    stages.timed("first stage", first_path.exists(),
                 lambda: write_trec_run(first_path, first_stage(corpus, test_queries, ecfg, quiet), "first-stage"))
    first = read_trec_run(first_path)
    runs: Dict[str, Dict[int, Run]] = {"first-stage": {0: first}}
    for arm in cfg.arms:
        for seed in b.seeds if arm.mine is not None else ():
            for mode in ("truncate", "passages") if arm.passages or arm.name == "ensemble+" else ("truncate",):
                label = arm.name if mode == "truncate" else f"{arm.name} / MaxP"
                path = out / "runs" / f"{label.replace(' / ', '-').replace(' ', '-')}-s{seed}.trec"
                stages.timed(f"rerank {label} seed {seed}", path.exists(),
                             lambda: _rerank(out / "models" / f"{arm.name}-s{seed}", first, test_queries, corpus,
                                             b.top_k, mode, path, quiet))
                runs.setdefault(label, {})[seed] = read_trec_run(path)

    from hnm.chunk import load_tokenizer
    long_docs = _long_documents(test_qrels, corpus, load_tokenizer(b.start), b.max_length - 3)
    within, beyond = _long_queries(test_qrels, long_docs)
    results = _judge(runs, test_qrels, cfg, b, {"within window": within, "beyond window": beyond})
    results["relevant_documents"] = {n: relevant_document_rr(r[min(r)], test_qrels, long_docs) for n, r in runs.items()}
    results["claim"] = claim(results["seeds_mean"])
    results.update({"data": str(data), "budget": asdict(b), "arms": [asdict(a) for a in cfg.arms],
                    "first_stage": cfg.first_stage, "loss": cfg.loss,
                    "corpus": {"documents": len(corpus), "of": corpus_size}, "stage_seconds": stages.times,
                    "machine": _machine(),
                    "wall_seconds_this_sitting": round(time.monotonic() - t0, 1)})
    with atomic_write(out / "results.json") as f:
        json.dump(results, f, indent=1)
    with atomic_write(out / "report.md") as f:
        f.write(report(results))
    m = results["seeds_mean"]
    ci = results["intervals"]
    with atomic_write(out / "chart.svg") as f:
        f.write(bars({n: m[n]["mrr@10"] for n in m}, {n: ci[n]["mrr@10"][0] for n in ci},
                     {n: ci[n]["mrr@10"][1] for n in ci}, f"MRR@10 on {Path(data).name} {cfg.test_split}, "
                     f"95% bootstrap intervals", "MRR@10"))
    return results


def _mine(arm: Arm, mine_cfg: MineConfig, corpus, queries, qrels, path: Path, b: Budget, quiet: bool) -> None:
    from hnm.minerun import run
    if not arm.passages:
        run(corpus, queries, qrels, mine_cfg, path, quiet=quiet)
        return
    # mine over passages: each model embeds each document's windows of its own length, a document scoring as its
    # best passage (a document that fits a window is one passage with the document's text, so its cached vector is
    # reused)
    from hnm.chunk import load_tokenizer
    from hnm.embed import Embedder
    from hnm.ensemble import PassageEnsemble, parse_members
    from hnm.minerun import positives_of
    members = [m for m in parse_members(mine_cfg.models) if m.name != "bm25"]
    row_of = {d: i for i, d in enumerate(corpus)}
    kept, _, _ = positives_of(qrels, queries, row_of, mine_cfg.min_grade)
    p_vecs, p_docs, q_vecs = [], [], []
    for m in members:
        tokenizer = load_tokenizer(m.name)
        passages, parent = passage_corpus(corpus, tokenizer, tokenizer.max_length - 2)
        model = Embedder.load(m.name, quiet=quiet)
        p_vecs.append(model.encode([document_text(p) for p in passages.values()], quiet=quiet))
        p_docs.append(np.array([row_of[parent[p]] for p in passages]))
        q_vecs.append(model.encode([queries[q] for q in kept], kind="query", quiet=quiet))
    run(corpus, queries, qrels, mine_cfg, path, quiet=quiet, ensemble=PassageEnsemble(members, p_vecs, p_docs, q_vecs))


def _train(rows: Path, folder: Path, start: str, tcfg: TrainConfig, quiet: bool) -> None:
    summary = train(rows, folder, start, tcfg, resume=(folder / "last").exists(), quiet=quiet)
    with atomic_write(folder / "done.json") as f:
        json.dump(summary, f, indent=1, default=str)


def _rerank(folder: Path, first: Run, queries, corpus, top_k: int, mode: str, path: Path, quiet: bool) -> None:
    model = CrossEncoder.from_checkpoint(folder / ("best" if (folder / "best").exists() else "last"))
    fn = rerank if mode == "truncate" else rerank_by_passages
    write_trec_run(path, fn(model, first, queries, corpus, top_k, quiet=quiet), path.stem)


def _machine() -> str:
    """The CPU's model name where Linux gives it, its cores, the platform and torch's thread count."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.platform()}, torch threads {torch.get_num_threads()}"


def claim(mean: Dict[str, dict], metric: str = "mrr@10") -> Optional[dict]:
    """The paper's claim on `metric`: ensemble > bm25 > random, and ensemble+ the best re-ranked arm; None when the
    configuration lacks one of these arms."""
    needed = ("random", "bm25", "ensemble", "ensemble+")
    if not all(n in mean for n in needed):
        return None
    v = {n: mean[n][metric] for n in needed}
    trained = {n: m[metric] for n, m in mean.items() if n != "first-stage"}
    best = max(trained, key=trained.get)
    return {"metric": metric, "ensemble > bm25": v["ensemble"] > v["bm25"], "bm25 > random": v["bm25"] > v["random"],
            "ensemble+ best": best == "ensemble+", "best arm": best,
            "holds": v["ensemble"] > v["bm25"] > v["random"] and best == "ensemble+"}


def _judge(runs: Dict[str, Dict[int, Run]], qrels: Qrels, cfg: ExperimentConfig, b: Budget,
           split: Dict[str, set]) -> dict:
    """Metrics per arm and seed with their mean and spread over seeds; for the seed-0 runs, 95% bootstrap intervals
    of MRR@10 and nDCG@10, randomisation p-values against the baselines, and the long-document split."""
    keys = ("mrr@10", "p@1", "p@5", "p@10", "ndcg@10", f"r@{b.top_k}")
    table = {n: {s: {k: v for k, v in evaluate(r, qrels, ks=(1, 5, 10, b.top_k),
                                                   metrics=("mrr", "p", "r", "ndcg")).items() if k in keys}
                 for s, r in by_seed.items()} for n, by_seed in runs.items()}
    mean = {n: {k: float(np.mean([t[s][k] for s in t])) for k in keys} for n, t in table.items()}
    spread = {n: {k: float(np.std([t[s][k] for s in t])) for k in keys} for n, t in table.items()}
    values = {n: per_query(r[min(r)], qrels, ks=(10,), metrics=("mrr", "ndcg")) for n, r in runs.items()}
    intervals, pvalues, long_docs = {}, {}, {}
    for n, v in values.items():
        qs = sorted(v["mrr@10"])
        intervals[n] = {}
        for metric in ("mrr@10", "ndcg@10"):
            a = np.array([v[metric][q] for q in qs])
            ci = paired_bootstrap(a, np.zeros_like(a), n=cfg.resamples, seed=0)  # the mean's own interval
            intervals[n][metric] = (ci["low"], ci["high"])
            for base in BASELINES:
                if base in values and base != n:
                    c = np.array([values[base][metric][q] for q in qs])
                    pvalues.setdefault(n, {})[f"{metric} vs {base}"] = randomisation_test(a, c, n=cfg.resamples,
                                                                                           seed=0)
            for part, members in split.items():
                sub = [v[metric][q] for q in qs if q in members]
                long_docs.setdefault(n, {})[f"{metric} {part}"] = float(np.mean(sub)) if sub else None
    return {"per_seed": table, "seeds_mean": mean, "seeds_std": spread, "intervals": intervals, "p_values": pvalues,
            "long_documents": long_docs, "split_sizes": {k: len(v) for k, v in split.items()}, "queries": len(qrels)}


def headline(r: dict) -> str:
    """The table the README quotes: MRR@10 and nDCG@10 with their 95% intervals, and the p-values of each arm's
    MRR@10 against the random, BM25 and single-model arms (seed 0 models)."""
    lines = ["| arm | MRR@10 | 95% CI | nDCG@10 | 95% CI | p vs random | p vs BM25 | p vs dense |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, m in r["seeds_mean"].items():
        ci, ps = r["intervals"][n], r["p_values"].get(n, {})
        p = [("–" if k not in ps else f"{ps[k]:.3f}" if ps[k] >= 0.001 else "< 0.001")
             for k in ("mrr@10 vs random", "mrr@10 vs bm25", "mrr@10 vs dense")]
        lines.append(f"| {n} | {m['mrr@10']:.4f} | {ci['mrr@10'][0]:.3f}–{ci['mrr@10'][1]:.3f} | {m['ndcg@10']:.4f} | "
                     f"{ci['ndcg@10'][0]:.3f}–{ci['ndcg@10'][1]:.3f} | {p[0]} | {p[1]} | {p[2]} |")
    return "\n".join(lines)


def _corpus_note(r: dict) -> str:
    c = r.get("corpus")
    if not c or c["documents"] == c["of"]:
        return ""
    return (f"; corpus cut to {c['documents']:,} of {c['of']:,} documents (every judged document of the chosen "
            f"queries and a seeded sample of the rest)")


def report(r: dict) -> str:
    """results.json as Markdown: the settings, the table, the p-values, the long-document split, the timings."""
    b = r["budget"]
    keys = list(next(iter(r["seeds_mean"].values())))
    lines = [f"# Experiment on {r['data']}", "",
             f"Budget `{b['name']}`: ensemble {b['models']}; re-ranker from {b['start']}, {b['steps']} steps of "
             f"{b['batch_size']} triplets, max length {b['max_length']}, loss {r['loss']}; first stage "
             f"{r['first_stage']}, top {b['top_k']} re-ranked; {r['queries']} test queries; seeds {', '.join(map(str, b['seeds']))}"
             + _corpus_note(r) + ".",
             f"Machine: {r['machine']}.", "", headline(r), "", "Every metric:", "",
             "| arm | " + " | ".join(keys) + " | MRR@10 95% CI | nDCG@10 95% CI |",
             "| --- | " + " | ".join("---" for _ in keys) + " | --- | --- |"]
    for n, m in r["seeds_mean"].items():
        sd = r["seeds_std"][n]
        cells = [f"{m[k]:.4f}" + (f" ± {sd[k]:.4f}" if len(r["per_seed"][n]) > 1 else "") for k in keys]
        ci = r["intervals"][n]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {ci['mrr@10'][0]:.3f}–{ci['mrr@10'][1]:.3f} | "
                     f"{ci['ndcg@10'][0]:.3f}–{ci['ndcg@10'][1]:.3f} |")
    lines += ["", "Paired randomisation tests (two-sided, seed 0 models):", ""]
    for n, ps in r["p_values"].items():
        lines.append(f"- {n}: " + "; ".join(f"{k} p = {v:.4f}" for k, v in ps.items()))
    sizes = r["split_sizes"]
    lines += ["", f"Long documents: test queries whose relevant documents all fit the re-ranker's window "
              f"({sizes['within window']}) and those with one beyond it ({sizes['beyond window']}); "
              "'/ MaxP' rows score each document by its best passage instead of its truncated start.", "",
              "| arm | MRR@10 within | MRR@10 beyond | nDCG@10 within | nDCG@10 beyond |", "| --- | --- | --- | --- | --- |"]
    for n, ld in r["long_documents"].items():
        cells = [ld[f"{m} {p}"] for m in ("mrr@10", "ndcg@10") for p in ("within window", "beyond window")]
        lines.append(f"| {n} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    rd = r.get("relevant_documents")
    if rd:
        first = next(iter(rd.values()))
        lines += ["", f"The same per document: the mean reciprocal rank of each judged relevant (query, document) pair, "
                  f"{first['pairs within window']} pairs whose document fits the window and "
                  f"{first['pairs beyond window']} beyond it (0 when the first stage missed the document).", "",
                  "| arm | RR within | RR beyond |", "| --- | --- | --- |"]
        for n, v in rd.items():
            cells = [v[f"rr {p}"] for p in ("within window", "beyond window")]
            lines.append(f"| {n} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    c = r.get("claim")
    if c:
        m = r["seeds_mean"]
        lines += ["", f"The paper's claim on {c['metric'].upper()}: ensemble > BM25 > random negatives, and ensemble+ "
                  f"the best arm. Here: ensemble {m['ensemble'][c['metric']]:.4f}, BM25 {m['bm25'][c['metric']]:.4f}, "
                  f"random {m['random'][c['metric']]:.4f}; best re-ranked arm: {c['best arm']}. "
                  + ("The data show the claim." if c["holds"] else "The data do not show the claim.")]
    lines += ["", "Wall time of each stage (seconds, when it ran):", ""]
    lines += [f"- {k}: {v}" for k, v in r["stage_seconds"].items()]
    lines += [f"- all stages: {sum(r['stage_seconds'].values()):.1f} s"]
    return "\n".join(lines) + "\n"
