"""Two-stage retrieval and its evaluation: a first stage (BM25, one dense model, or the ensemble) retrieves the top k
documents of each query, a cross-encoder re-ranks them, and the systems are measured and compared.

    run = first_stage(corpus, queries, EvalConfig(first_stage="bm25", top_k=100))
    reranked = rerank(CrossEncoder.from_checkpoint("runs/r1/best"), run, queries, corpus, top_k=100)
    report = compare({"bm25": run, "reranked": reranked}, qrels)

Metrics are those of metrics.py (trec_eval's definitions): MRR@10, P@1, P@10, nDCG@10, R@100. Two systems are
compared per query on nDCG@10 and MRR@10 with the paired percentile bootstrap (95% interval of the mean
difference) and the two-sided paired randomisation test, both seeded.

The dense first stage embeds with the first model of `models`; the ensemble with all of them, searching the
concatenated ensemble vectors whose inner product is the weighted mean cosine (ensemble.py): exact top-k, no
clusters. Re-ranking replaces the first stage's scores of the top k by the cross-encoder's logits; documents past
k are dropped from the re-ranked run.

Not here: training (train.py), the model (reranker.py), BM25 and embedding themselves (bm25.py, embed.py).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from hnm.data import Qrels, beir_file, document_text, read_corpus, read_queries
from hnm.metrics import Run, evaluate, paired_bootstrap, per_query, randomisation_test, rank_documents
from hnm.progress import Progress
from hnm.reranker import CrossEncoder

FIRST_STAGES = ("bm25", "dense", "ensemble")
REPORTED = ("mrr@10", "p@1", "p@10", "ndcg@10", "r@100")  # the table's columns
COMPARED = ("ndcg@10", "mrr@10")  # the metrics the paired tests look at


@dataclass(frozen=True)
class EvalConfig:
    first_stage: str = "bm25"  # bm25, dense (the first of `models`) or ensemble (all of them)
    top_k: int = 100  # documents retrieved per query, all of them re-ranked
    models: str = "all-MiniLM-L6-v2,all-mpnet-base-v2"  # NAME[:WEIGHT],... of weights.lock, for dense and ensemble
    batch_size: int = 64  # pairs per cross-encoder forward pass
    precision: str = "float32"  # of the cross-encoder: float32 or bfloat16
    resamples: int = 10000  # of the bootstrap and the randomisation test
    seed: int = 0  # of the bootstrap and the randomisation test

    def __post_init__(self):
        if self.first_stage not in FIRST_STAGES:
            raise ValueError(f"first stage {self.first_stage!r} is not one of {', '.join(FIRST_STAGES)}")
        if self.top_k < 1 or self.batch_size < 1 or self.resamples < 1:
            raise ValueError("top_k, batch_size and resamples must be at least 1")


def read_collection(folder: Path) -> Tuple[Dict[str, dict], Dict[str, str]]:
    """(corpus, every query) of a BEIR folder, whatever the judgments."""
    return read_corpus(beir_file(folder, "corpus.jsonl")), read_queries(beir_file(folder, "queries.jsonl"))


def first_stage(corpus: Dict[str, dict], queries: Dict[str, str], cfg: EvalConfig, quiet: bool = False) -> Run:
    """The top_k documents of each query by BM25, one dense model, or the ensemble's weighted mean cosine."""
    if cfg.first_stage == "bm25":
        from hnm.bm25 import BM25Index
        return BM25Index.from_corpus(corpus, quiet=quiet).run(queries, cfg.top_k)
    from hnm.ensemble import Ensemble, parse_members
    from hnm.search import topk
    members = parse_members(cfg.models)
    if cfg.first_stage == "dense":
        members = members[:1]
    if any(m.name == "bm25" for m in members):
        raise ValueError("bm25 cannot join a first stage that searches vectors; use --first-stage bm25")
    doc_ids = list(corpus)
    ensemble = Ensemble.embed(members, [document_text(corpus[d]) for d in doc_ids], list(queries.values()),
                              quiet=quiet)
    scores, rows = topk(ensemble.queries, ensemble.docs, min(cfg.top_k, len(doc_ids)))  # (Q, k) each
    return {qid: {doc_ids[r]: float(s) for r, s in zip(row_ids, row_scores)}
            for qid, row_ids, row_scores in zip(queries, rows.tolist(), scores.tolist())}


def rerank(model: CrossEncoder, run: Run, queries: Dict[str, str], corpus: Dict[str, dict], top_k: int,
           batch_size: int = 64, precision: str = "float32", quiet: bool = False,
           queries_per_pass: int = 16) -> Run:
    """Score each query's top_k documents of `run` (trec_eval's order) with the cross-encoder: a new run of them.

    A query of the run without a text, or a document missing from the corpus, is an error naming it.
    """
    missing_q = [q for q in run if q not in queries]
    if missing_q:
        raise ValueError(f"{len(missing_q)} queries of the run have no text, e.g. {missing_q[0]!r}")
    out: Run = {}
    qids = list(run)
    with Progress(len(qids), desc="rerank", quiet=quiet, unit=" queries") as bar:
        for start in range(0, len(qids), queries_per_pass):
            block = qids[start:start + queries_per_pass]
            keys: List[Tuple[str, str]] = []
            for qid in block:
                for doc, _ in rank_documents(run[qid], top_k):
                    if doc not in corpus:
                        raise ValueError(f"document {doc!r} of query {qid!r} is not in the corpus")
                    keys.append((qid, doc))
            scores = model.score([queries[q] for q, _ in keys], [document_text(corpus[d]) for _, d in keys],
                                 batch_size, precision)
            for (qid, doc), s in zip(keys, scores.tolist()):
                out.setdefault(qid, {})[doc] = s
            bar.update(len(block))
    return out


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
