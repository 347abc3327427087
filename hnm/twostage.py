"""Two-stage retrieval and its evaluation: a first stage (firststage.py) retrieves the top k documents of each
query, a cross-encoder re-ranks them, the two scores are interpolated, and the systems are measured and compared.

    run = retrieve(corpus, queries, FirstStageConfig(kind="hybrid", top_k=100))
    reranked = rerank(CrossEncoder.from_checkpoint("runs/r1/best"), run, queries, corpus, top_k=100)
    final = interpolate(reranked, run, alpha=0.6)
    report = compare({"hybrid": run, "reranked": final}, qrels)

Interpolation, as the two-stage literature does (e.g. Nogueira & Cho 2019 and most TREC re-ranking runs): the final
score of a candidate is alpha x z(re-ranker) + (1 - alpha) x z(first stage), each score standardised over the
query's re-ranked candidates, so that neither scale decides. alpha 1 is pure re-ranking, alpha 0 the first stage.
`choose_alpha` picks alpha on a tuning split (held-out training queries, never the test split) by nDCG@10 over a
grid (`choose_alpha_kfold`, on a split of a few dozen queries, keeps that choice only where it carries over
from some of them to the others); `store_alpha` writes it into the checkpoint's config.json (key hnm.interpolation,
one alpha per first stage and its settings: `stage_key`), where `rerank`, `evaluate`, `search` and `experiment` read
it back; a first stage the checkpoint was not tuned for gets equal weights (`alpha_for`), never another first
stage's alpha.

On a chunked corpus (pages.py) the rows of each page are re-ranked and a page scores as its best row (MaxP);
runs, judgments and metrics are per page (`rerank_pages`).

Metrics are those of metrics.py (trec_eval's definitions): MRR@10, P@1, P@10, nDCG@10, R@100. Two systems are
compared per query on nDCG@10 and MRR@10 with the paired percentile bootstrap (95% interval of the mean
difference) and the two-sided paired randomisation test, both seeded. Re-ranking replaces the first stage's scores
of the top k by the cross-encoder's logits; documents past k are dropped from the re-ranked run.

Not here: first-stage retrieval (firststage.py), training (train.py), the model (reranker.py).
"""

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from hnm.config import EvalConfig
from hnm.data import Qrels, atomic_write, beir_file, document_text, read_corpus, read_queries
from hnm.distributed import current
from hnm.config import FirstStageConfig, parse_members
from hnm.ensemble import zscore
from hnm.metrics import Run, evaluate, paired_bootstrap, per_query, randomisation_test, rank_documents
from hnm.pages import page_of, page_qrels, to_pages
from hnm.progress import Progress
from hnm.reranker import CrossEncoder

REPORTED = ("mrr@10", "p@1", "p@10", "ndcg@10", "r@100")  # the table's columns
COMPARED = ("ndcg@10", "mrr@10")  # the metrics the paired tests look at
ALPHA_GRID = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 21))  # steps of 0.05


def read_collection(folder: Path) -> Tuple[Dict[str, dict], Dict[str, str]]:
    """(corpus, every query) of a BEIR folder, whatever the judgments."""
    return read_corpus(beir_file(folder, "corpus.jsonl")), read_queries(beir_file(folder, "queries.jsonl"))


def rerank(model: CrossEncoder, run: Run, queries: Dict[str, str], corpus: Dict[str, dict], top_k: int,
           batch_size: int = 64, precision: str = "float32", quiet: bool = False,
           queries_per_pass: int = 16) -> Run:
    """Score each query's top_k documents of `run` (trec_eval's order) with the cross-encoder: a new run of them.

    A query of the run without a text, or a document missing from the corpus, is an error naming it. Under
    torchrun the passes of `queries_per_pass` queries are shared among the ranks (distributed.py), and every rank
    returns the whole run, in the order one process makes it.
    """
    missing_q = [q for q in run if q not in queries]
    if missing_q:
        raise ValueError(f"{len(missing_q)} queries of the run have no text, e.g. {missing_q[0]!r}")
    qids = list(run)
    passes: List[List[Tuple[str, str]]] = []  # (query, document) pairs of each pass
    for start in range(0, len(qids), queries_per_pass):
        passes.append([])
        for qid in qids[start:start + queries_per_pass]:
            for doc, _ in rank_documents(run[qid], top_k):
                if doc not in corpus:
                    raise ValueError(f"document {doc!r} of query {qid!r} is not in the corpus")
                passes[-1].append((qid, doc))

    def score(i: int) -> bytes:
        keys = passes[i]
        scores = model.score([queries[q] for q, _ in keys], [document_text(corpus[d]) for _, d in keys],
                             batch_size, precision)
        return json.dumps(scores.tolist()).encode()

    out: Run = {}
    procs = current()
    with Progress(len(qids), desc="rerank", quiet=quiet or not procs.main, unit=" queries") as bar:
        for i, blob in procs.in_order(len(passes), score):
            for (qid, doc), s in zip(passes[i], json.loads(blob)):
                out.setdefault(qid, {})[doc] = s
            bar.update(len(qids[i * queries_per_pass:(i + 1) * queries_per_pass]))
    return out


def _standardised(scores: Dict[str, float]) -> Dict[str, float]:
    """{doc: score} -> {doc: (score - mean) / sd} over the given documents (all 0 when they score alike)."""
    return dict(zip(scores, zscore(np.array(list(scores.values()), dtype=np.float64)).tolist()))


def interpolate(reranked: Run, first: Run, alpha: float) -> Run:
    """alpha x z(re-ranker) + (1 - alpha) x z(first stage) for each query's re-ranked documents; alpha 1 returns
    `reranked` itself. Example: re-ranker {a: 2, b: 0}, first stage {a: 0, b: 1}, alpha 0.5 -> {a: 0, b: 0}."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is a weight in [0, 1], not {alpha}")
    if alpha == 1.0:
        return reranked
    out: Run = {}
    for q, docs in reranked.items():
        z_model = _standardised(docs)
        z_first = _standardised({d: first[q][d] for d in docs})
        out[q] = {d: alpha * z_model[d] + (1.0 - alpha) * z_first[d] for d in docs}
    return out


def choose_alpha(reranked: Run, first: Run, qrels: Qrels, grid: Sequence[float] = ALPHA_GRID,
                 metric: str = "ndcg@10") -> Tuple[float, Dict[float, float]]:
    """The alpha of `grid` with the best mean `metric` on these (tuning) queries, and the metric at every alpha.
    A tie goes to the larger alpha (more of the re-ranker)."""
    k = int(metric.split("@")[1])
    curve = {a: evaluate(interpolate(reranked, first, a), qrels, ks=(k,), metrics=(metric.split("@")[0],))[metric]
             for a in grid}
    best = max(curve, key=lambda a: (round(curve[a], 12), a))
    return best, curve


def choose_alpha_kfold(reranked: Run, first: Run, qrels: Qrels, folds: int = 5, seed: int = 0,
                       grid: Sequence[float] = ALPHA_GRID, metric: str = "ndcg@10") -> Tuple[float, dict]:
    """choose_alpha for a small tuning split, with a k-fold check that the choice carries over to unseen queries.

    The queries are dealt into `folds` seeded folds (leave-one-out when there are fewer queries); each fold is
    scored at the alpha chosen on the others, so the mean of those out-of-fold values estimates what tuning alpha
    on this many queries gives on new ones. When that estimate does not beat the first stage alone (alpha 0) on the
    same queries, alpha 0 is returned: on so few queries the best alpha on the split is noise. Otherwise the alpha
    choose_alpha picks on all of them. -> (alpha, {"folds", "fold_queries", "fold_alphas", "out_of_fold",
    "first_stage", "curve"}), fold_queries[f] the query ids scored at fold_alphas[f].

    Two queries, each with its relevant document d1 and d2: the re-ranker right on q1 and wrong on q2, the first
    stage the reverse. On both, choose_alpha ties alpha 0 .. 0.45 with 0.55 .. 1 and takes 1; left out in turn,
    each query gets the alpha its neighbour prefers, the wrong one for it: out of fold nDCG@10 0.631 against the
    first stage's 0.815 -> alpha 0.
    """
    name, k = metric.split("@")
    qids = sorted(q for q in reranked if q in qrels)
    folds = max(2, min(folds, len(qids)))
    order = [qids[i] for i in np.random.default_rng(seed).permutation(len(qids))]
    out_of_fold, fold_alphas, fold_queries = {}, [], []
    for f in range(folds):
        held = set(order[f::folds])
        fold_queries.append(sorted(held))
        rest = {q: reranked[q] for q in qids if q not in held}
        alpha_f, _ = choose_alpha(rest, first, {q: qrels[q] for q in rest}, grid, metric)
        fold_alphas.append(alpha_f)
        scored = per_query(interpolate({q: reranked[q] for q in held}, first, alpha_f), qrels, ks=(int(k),),
                           metrics=(name,))[metric]
        out_of_fold.update(scored)
    alone = per_query({q: first[q] for q in qids}, qrels, ks=(int(k),), metrics=(name,))[metric]
    alpha, curve = choose_alpha({q: reranked[q] for q in qids}, first, {q: qrels[q] for q in qids}, grid, metric)
    oof = float(np.mean([out_of_fold.get(q, 0.0) for q in qids]))
    base = float(np.mean([alone.get(q, 0.0) for q in qids]))
    return (alpha if oof > base else 0.0), {"folds": folds, "fold_queries": fold_queries, "fold_alphas": fold_alphas,
                                            "out_of_fold": oof, "first_stage": base, "curve": curve}


UNTUNED_ALPHA = 0.5  # a checkpoint with no alpha for the first stage at hand: equal weights, never another's alpha


def stage_key(cfg: FirstStageConfig) -> str:
    """The first stage's settings an alpha is tuned for (not top_k), as a readable key: "bm25", or
    "hybrid zscore bm25_weight=0.5 models=all-MiniLM-L6-v2:1,all-mpnet-base-v2:1 precision=float32"."""
    parts = [cfg.kind]
    if cfg.kind == "hybrid":
        parts += [cfg.fusion, f"bm25_weight={cfg.bm25_weight:g}"]
    if cfg.kind != "bm25":
        members = parse_members(cfg.models)[:1 if cfg.kind == "dense" else None]
        parts += ["models=" + ",".join(f"{m.name}:{m.weight:g}" for m in members), f"precision={cfg.precision}"]
    return " ".join(parts)


def store_alpha(folder: Path, alpha: float, stage: FirstStageConfig, about: dict) -> None:
    """Write alpha (and what it was tuned on: k, queries, the curve) into the checkpoint's config.json, under
    hnm.interpolation[stage_key(stage)], atomically; the alphas of other first stages stay."""
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    tuned = config["hnm"].get("interpolation") or {}
    if "alpha" in tuned:  # the format of hnm 0.1: one alpha, for the first stage it names
        tuned = {tuned.get("first_stage", "bm25"): tuned}
    tuned[stage_key(stage)] = {"alpha": alpha, "first_stage": stage.kind, **about}
    config["hnm"]["interpolation"] = tuned
    with atomic_write(path) as f:
        json.dump(config, f, indent=2)


def stored_alphas(folder: Path) -> Dict[str, float]:
    """{stage key: alpha} of every first stage the checkpoint was tuned for (hnm 0.1's one alpha: under its kind)."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    tuned = config.get("hnm", {}).get("interpolation") or {}
    if "alpha" in tuned:
        return {tuned.get("first_stage", "bm25"): float(tuned["alpha"])}
    return {key: float(entry["alpha"]) for key, entry in tuned.items()}


def stored_alpha(folder: Path, stage: FirstStageConfig) -> Optional[float]:
    """The alpha tuned for this first stage with these settings, or None. An alpha stored by hnm 0.1, which named
    only the kind of first stage, counts for that kind."""
    alphas = stored_alphas(folder)
    found = alphas.get(stage_key(stage))
    return alphas.get(stage.kind) if found is None else found


def alpha_for(folder: Path, stage: FirstStageConfig, given: Optional[float] = None) -> Tuple[float, str]:
    """The alpha to use and why: `given`, else the one tuned for this first stage, else UNTUNED_ALPHA with a note
    naming the first stages it was tuned for (an alpha tuned for another first stage is never reused)."""
    if given is not None:
        return given, "given"
    found = stored_alpha(folder, stage)
    if found is not None:
        return found, f"tuned for {stage_key(stage)}"
    others = stored_alphas(folder)
    return UNTUNED_ALPHA, (f"not tuned for {stage_key(stage)} (tuned for: {'; '.join(others) or 'none'}); "
                           f"equal weights {UNTUNED_ALPHA:g} instead: run hnm tune with this first stage")


def rerank_pages(model: CrossEncoder, rows_run: Run, queries: Dict[str, str], corpus: Dict[str, dict],
                 batch_size: int = 64, precision: str = "float32", quiet: bool = False) -> Tuple[Run, Run]:
    """A first stage's run over rows (FirstStage.run) re-ranked -> (first stage per page, re-ranker alone per page):
    every row of the run scored, a page scoring as its best row (MaxP, pages.py); on a corpus without chunks the
    pages are the rows."""
    depth = max((len(docs) for docs in rows_run.values()), default=1)
    pure = rerank(model, rows_run, queries, corpus, depth, batch_size, precision, quiet)
    pages = page_of(corpus)
    return to_pages(rows_run, pages), to_pages(pure, pages)


def tune_alpha(checkpoint: Path, rows_run: Run, queries: Dict[str, str], corpus: Dict[str, dict], qrels: Qrels,
               stage: FirstStageConfig, batch_size: int = 64, precision: str = "float32", quiet: bool = False,
               folds: int = 1) -> dict:
    """Re-rank the tuning queries' first-stage run with the checkpoint, choose alpha on their judgments (per page)
    and store it in the checkpoint for this first stage; -> {"alpha", "first_stage", "stage", "top_k",
    "tuning_queries", "metric", "curve"}. With folds > 1, by choose_alpha_kfold: also "out_of_fold" and
    "first_stage_alone" (the mean nDCG@10 of the interpolation out of fold, and of the first stage, on the tuning
    queries) and "fold_alphas"; alpha 0 when the first does not beat the second. A single tuning query is tuned
    without folds."""
    first, pure = rerank_pages(CrossEncoder.from_checkpoint(checkpoint), rows_run, queries, corpus, batch_size,
                               precision, quiet)
    tuned = alpha_of(pure, first, page_qrels(qrels, page_of(corpus)), stage, folds)
    procs = current()
    if procs.main:  # one writer under torchrun; every rank has computed the same alpha
        store_alpha(checkpoint, tuned["alpha"], stage, {k: v for k, v in tuned.items()
                                                        if k not in ("alpha", "first_stage", "stage")})
    procs.barrier()
    return tuned


def alpha_of(pure: Run, first: Run, judged: Qrels, stage: FirstStageConfig, folds: int = 1) -> dict:
    """The choice of tune_alpha on runs already re-ranked (per page): choose_alpha_kfold with folds > 1 and more
    than one judged query, else choose_alpha; -> tune_alpha's dict."""
    if folds > 1 and sum(q in judged for q in pure) > 1:  # one query cannot be held out from itself
        alpha, info = choose_alpha_kfold(pure, first, judged, folds=folds)
        curve, kfold = info["curve"], {"folds": info["folds"], "fold_alphas": info["fold_alphas"],
                                       "out_of_fold": round(info["out_of_fold"], 5),
                                       "first_stage_alone": round(info["first_stage"], 5)}
    else:
        (alpha, curve), kfold = choose_alpha(pure, first, judged), {}
    about = {"top_k": stage.top_k, "tuning_queries": len(first), "metric": "ndcg@10",
             "curve": {str(a): round(v, 5) for a, v in curve.items()}, **kfold}
    return {"alpha": alpha, "first_stage": stage.kind, "stage": stage_key(stage), **about}


def metrics_of(run: Run, qrels: Qrels) -> Dict[str, float]:
    """MRR@10, P@1, P@10, nDCG@10, R@100 and the query counts of metrics.evaluate."""
    result = evaluate(run, qrels, ks=(1, 10, 100), metrics=("mrr", "p", "r", "ndcg"))
    return {k: v for k, v in result.items() if k in REPORTED or "@" not in k}


def compare(systems: Dict[str, Run], qrels: Qrels, resamples: int = 10000, seed: int = 0) -> dict:
    """Metrics of every system, and paired tests of every pair (later minus earlier) over the queries they share.

    -> {"metrics": {name: {...}}, "comparisons": [{"a", "b", "metric", "mean_difference", "low", "high", "p"}]}
    """
    names = list(systems)
    report = {"metrics": {n: metrics_of(systems[n], qrels) for n in names}, "comparisons": []}
    values = {n: per_query(systems[n], qrels, ks=(10,), metrics=("mrr", "ndcg")) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for metric in COMPARED:
                shared = sorted(set(values[a][metric]) & set(values[b][metric]))
                if not shared:
                    continue
                later = np.array([values[b][metric][q] for q in shared])  # (Q,)
                earlier = np.array([values[a][metric][q] for q in shared])  # (Q,)
                ci = paired_bootstrap(later, earlier, n=resamples, seed=seed)  # of mean(later - earlier)
                p = randomisation_test(later, earlier, n=resamples, seed=seed)
                report["comparisons"].append({"a": a, "b": b, "metric": metric, "queries": len(shared),
                                              "mean_difference": ci["mean_difference"], "low": ci["low"],
                                              "high": ci["high"], "p": p})
    return report


def table(report: dict) -> str:
    """The report as text: one row per system, then one line per comparison."""
    lines = [f"{'system':<40}" + "".join(f"{m:>9}" for m in REPORTED) + f"{'queries':>9}"]
    for name, m in report["metrics"].items():
        lines.append(f"{name:<40}" + "".join(f"{m[k]:9.4f}" for k in REPORTED) + f"{m['queries']:9d}")
    for c in report["comparisons"]:
        sig = "  *" if c["p"] < 0.05 else ""
        lines.append(f"{c['b']} - {c['a']}, {c['metric']}: {c['mean_difference']:+.4f} "
                     f"[{c['low']:+.4f}, {c['high']:+.4f}] 95% bootstrap, randomisation p = {c['p']:.4f}{sig}")
    return "\n".join(lines)
