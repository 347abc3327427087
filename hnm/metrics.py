"""Ranking metrics as trec_eval computes them, TREC run files, and paired significance tests.

Metrics (cut at rank k; a document is relevant when its grade is >= 1, trec_eval's default `-l 1`):

    mrr@k   reciprocal rank of the first relevant document in the top k    trec_eval recip_rank on the run cut at k
    p@k     relevant documents in the top k, divided by k                  trec_eval P.k
    r@k     relevant documents in the top k, divided by all relevant       trec_eval recall.k
    map@k   sum of precision at each relevant rank <= k, over all relevant trec_eval map_cut.k
    ndcg@k  DCG@k / ideal DCG@k, gain = grade, discount log2(rank + 1)     trec_eval ndcg_cut.k (Jarvelin & Kekalainen
            (linear gains, not 2^grade - 1); the ideal ranking sorts all   2002, as trec_eval implements it)
            judged grades > 0 descending
    hit@k   1 if any relevant document is in the top k, else 0            (success@k)

Which queries count. trec_eval (without -c) and pytrec_eval evaluate the queries that are in both the run and the
judgments: queries only in the run and relevant queries the run lacks are ignored, and so are they here, and counted.
A judged query with no relevant document (every grade <= 0) is a choice: `without_relevant="skip"` (the default)
leaves it out of the mean and counts it; `without_relevant="zero"` scores it 0 on every metric, which is what
trec_eval and pytrec_eval do, so their means are reproduced exactly.

Ties. trec_eval ignores the rank column and re-sorts each query's documents by score descending, then by document id
descending (byte order, C's strcmp; for UTF-8 ids this is Python's str order); pytrec_eval does the same.
`rank_documents` applies that rule everywhere here: {"a": 1.0, "b": 1.0, "c": 2.0} ranks c, b, a.

Significance: a paired percentile bootstrap of the mean difference (Efron & Tibshirani 1993; Sakai 2006 for IR) and a
two-sided paired randomisation (sign-flip) test (Fisher 1935; Smucker, Allan & Carterette 2007), both over
per-query metric arrays, both seeded.

Not here: trec_eval's other measures (bpref, R-prec, infAP, ...), relevance levels other than 1, -J (judged only) and
-M (depth cap), multiple-comparison correction.
"""

import heapq
import math
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from hnm.data import Qrels, atomic_write
from hnm.errors import InputError

Run = Dict[str, Dict[str, float]]  # query id -> {document id: score}; higher scores rank first

RELEVANCE_LEVEL = 1  # trec_eval's default -l: grades >= 1 are relevant for the binary metrics


def rank_documents(scores: Dict[str, float], depth: Optional[int] = None) -> List[Tuple[str, float]]:
    """(doc id, score) best first by trec_eval's rule: score descending, then doc id descending; the top `depth`.

    {"a": 1.0, "b": 1.0, "c": 2.0} -> [("c", 2.0), ("b", 1.0), ("a", 1.0)]
    """
    for doc, score in scores.items():
        if score != score:  # NaN has no place in an order, and would silently scramble the sort
            raise ValueError(f"document {doc!r} has score NaN; give every retrieved document a number")
    if depth is None or depth >= len(scores):
        return sorted(scores.items(), key=_score_then_id, reverse=True)
    # heapq.nlargest is sorted(...)[:depth] in O(n log depth); doc ids are unique, so the keys never tie
    return heapq.nlargest(depth, scores.items(), key=_score_then_id)


def _score_then_id(item: Tuple[str, float]) -> Tuple[float, str]:
    # sorted in reverse, this key gives score descending and, among equal scores, doc id descending
    return item[1], item[0]


# ------------------------------------------------------------------------------ metrics of one ranked list
# Each takes `ranked`, the grades of the retrieved documents in rank order (0 for unjudged), `judged`, every grade
# judged for the query, and the cut-off k.


def _num_relevant(grades: Iterable[int]) -> int:
    return sum(1 for g in grades if g >= RELEVANCE_LEVEL)


def reciprocal_rank(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """1 / rank of the first relevant document within the top k, else 0. [0, 2, 1] @3 -> 0.5"""
    for i, grade in enumerate(ranked[:k], start=1):
        if grade >= RELEVANCE_LEVEL:
            return 1.0 / i
    return 0.0


def precision(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """Relevant in the top k over k; ranks past the end of a short list count as non-relevant. [0, 2, 1] @4 -> 0.5"""
    return _num_relevant(ranked[:k]) / k


def recall(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """Relevant in the top k over all relevant judged. [0, 2, 1] @2, judged [2, 1, 1] -> 1/3"""
    return _num_relevant(ranked[:k]) / _num_relevant(judged)


def average_precision(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """trec_eval map_cut: precision at each relevant rank <= k, summed, over ALL relevant (not min(k, R)).

    [1, 0, 1] @3, judged [1, 1, 1] -> (1/1 + 2/3) / 3
    """
    hits, total = 0, 0.0
    for i, grade in enumerate(ranked[:k], start=1):
        if grade >= RELEVANCE_LEVEL:
            hits += 1
            total += hits / i
    return total / _num_relevant(judged)


def hit(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """1 if any of the top k is relevant, else 0."""
    return float(any(grade >= RELEVANCE_LEVEL for grade in ranked[:k]))


def _dcg(gains: Iterable[int]) -> float:
    # summed in rank order, as trec_eval does, so the last bits agree too
    return sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1) if g > 0)


def ndcg(ranked: Sequence[int], judged: Sequence[int], k: int) -> float:
    """trec_eval ndcg_cut: linear gain = grade, discount log2(rank + 1), ideal = judged grades > 0 sorted, cut at k.

    [0, 2, 1] @3, judged [2, 1] -> (2/log2(3) + 1/log2(4)) / (2/log2(2) + 1/log2(3)) = 0.6697...
    """
    ideal = _dcg(sorted((g for g in judged if g > 0), reverse=True)[:k])
    return _dcg(ranked[:k]) / ideal


METRICS: Dict[str, Callable[[Sequence[int], Sequence[int], int], float]] = {
    "mrr": reciprocal_rank, "p": precision, "r": recall, "ndcg": ndcg, "map": average_precision, "hit": hit}
WITHOUT_RELEVANT = ("skip", "zero")


# ------------------------------------------------------------------------------ evaluation over queries


def _query_sets(run: Run, qrels: Qrels, without_relevant: str) -> Tuple[List[str], Dict[str, int]]:
    """The query ids to evaluate, in run order, and the counts of those left out, by reason."""
    if without_relevant not in WITHOUT_RELEVANT:
        raise ValueError(f"without_relevant={without_relevant!r}; choose one of {', '.join(WITHOUT_RELEVANT)}")
    has_relevant = {qid for qid, docs in qrels.items() if _num_relevant(docs.values())}
    judged_in_run = [qid for qid in run if qid in qrels]
    evaluated = [qid for qid in judged_in_run if without_relevant == "zero" or qid in has_relevant]
    counts = {
        "queries": len(evaluated),
        # judged queries in the run with no grade >= 1: left out ("skip") or scored 0 ("zero")
        "queries_without_relevant": sum(1 for qid in judged_in_run if qid not in has_relevant),
        # trec_eval without -c ignores these; with -c they would score 0
        "queries_not_in_run": sum(1 for qid in has_relevant if qid not in run),
        "queries_not_in_qrels": sum(1 for qid in run if qid not in qrels),
    }
    return evaluated, counts


def _check_request(ks: Sequence[int], metrics: Sequence[str]) -> None:
    bad_k = [k for k in ks if not isinstance(k, int) or isinstance(k, bool) or k < 1]
    if not ks or bad_k:
        raise ValueError(f"ks={tuple(ks)!r}: give one or more positive integer cut-offs, e.g. ks=(10, 100)")
    unknown = [m for m in metrics if m not in METRICS]
    if not metrics or unknown:
        raise ValueError(f"metrics={tuple(metrics)!r}: choose from {', '.join(METRICS)}")


def per_query(run: Run, qrels: Qrels, ks: Sequence[int] = (10,),
              metrics: Sequence[str] = tuple(METRICS), without_relevant: str = "skip") -> Dict[str, Dict[str, float]]:
    """Metric values per query: {"ndcg@10": {qid: value}, ...}, over the queries `evaluate` counts as "queries".

    run: {qid: {doc id: score}}, any order and length; qrels: {qid: {doc id: grade}}.
    """
    _check_request(ks, metrics)
    evaluated, _ = _query_sets(run, qrels, without_relevant)
    out: Dict[str, Dict[str, float]] = {f"{m}@{k}": {} for m in metrics for k in ks}
    depth = max(ks)
    for qid in evaluated:
        judged = qrels[qid]
        judged_grades = list(judged.values())
        if not _num_relevant(judged_grades):  # only reached with without_relevant="zero", as trec_eval scores it
            for name in out:
                out[name][qid] = 0.0
            continue
        ranked = [judged.get(doc, 0) for doc, _ in rank_documents(run[qid], depth)]
        for m in metrics:
            for k in ks:
                out[f"{m}@{k}"][qid] = METRICS[m](ranked, judged_grades, k)
    return out


def evaluate(run: Run, qrels: Qrels, ks: Sequence[int] = (10,),
             metrics: Sequence[str] = tuple(METRICS), without_relevant: str = "skip") -> Dict[str, float]:
    """Mean of each metric over the evaluated queries, plus the query counts.

    -> {"mrr@10": ..., "p@10": ..., "r@10": ..., "ndcg@10": ..., "map@10": ..., "hit@10": ...,
        "queries": evaluated, "queries_without_relevant": ..., "queries_not_in_run": ..., "queries_not_in_qrels": ...}
    """
    values = per_query(run, qrels, ks, metrics, without_relevant)
    _, counts = _query_sets(run, qrels, without_relevant)
    if counts["queries"] == 0:
        raise ValueError(f"no query is in both the run ({len(run)} queries) and the judgments ({len(qrels)}) with a "
                         f"relevant document; check that both use the same query ids")
    # math.fsum: the mean does not depend on the order of the queries
    result: Dict[str, float] = {name: math.fsum(v.values()) / counts["queries"] for name, v in values.items()}
    result.update(counts)
    return result


# ------------------------------------------------------------------------------ TREC run files

_TOKEN = re.compile(r"\S+")  # qids, doc ids and tags are whitespace-separated fields, so they cannot hold any


def write_trec_run(path, run: Run, tag: str) -> None:
    """Write `qid Q0 docid rank score tag` lines, atomically; each query's documents in `rank_documents` order.

    Queries keep the run's order; scores are written with repr, so reading them back gives the same floats.
    """
    if not _TOKEN.fullmatch(tag):
        raise ValueError(f"run tag {tag!r} must be non-empty with no whitespace")
    with atomic_write(path) as f:
        for qid, scores in run.items():
            if not _TOKEN.fullmatch(qid):
                raise ValueError(f"query id {qid!r} must be non-empty with no whitespace to fit a TREC run line")
            for rank, (doc, score) in enumerate(rank_documents(scores), start=1):
                if not _TOKEN.fullmatch(doc):
                    raise ValueError(f"document id {doc!r} (query {qid!r}) must be non-empty with no whitespace")
                f.write(f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n")


def read_trec_run(path) -> Run:
    """Read a TREC run file into {qid: {doc id: score}}; the rank column is checked but, as in trec_eval, not used.

    A malformed line raises InputError naming the file, the line and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    run: Run = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark; CRLF line ends split away below
            try:
                fields = raw.decode("utf-8").split()
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not fields:
                continue
            if len(fields) != 6:
                raise InputError(f"{path}:{lineno}: expected 6 whitespace-separated fields "
                                 f"(qid Q0 docid rank score tag), got {len(fields)}")
            qid, _, doc, rank, score, _ = fields
            try:
                int(rank)
            except ValueError:
                raise InputError(f"{path}:{lineno}: field 'rank' is {rank!r}, not an integer") from None
            try:
                value = float(score)
            except ValueError:
                raise InputError(f"{path}:{lineno}: field 'score' is {score!r}, not a number") from None
            if value != value:
                raise InputError(f"{path}:{lineno}: field 'score' is NaN")
            docs = run.setdefault(qid, {})
            if doc in docs:
                raise InputError(f"{path}:{lineno}: document {doc!r} appears twice for query {qid!r}")
            docs[doc] = value
    return run


# ------------------------------------------------------------------------------ paired significance tests

_CHUNK = 1 << 22  # resampled values held at once (32 MiB of float64), whatever the number of queries


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b as float64, after checking both are same-length 1-D finite arrays (one value per query, same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"expected two 1-D arrays of per-query values in the same query order, "
                         f"got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-query values must be finite numbers")
    return a - b


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: the number of resamples must be a positive integer")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 10000, seed: int = 0,
                     alpha: float = 0.05) -> Dict[str, float]:
    """Percentile bootstrap CI of mean(a - b): resample the queries with replacement n times (paired: a query's two
    values move together) and take the alpha/2 and 1 - alpha/2 quantiles of the resampled means.

    a, b: (Q,) per-query metric values of two systems, same query order.
    -> {"mean_difference", "low", "high", "alpha", "n", "queries"}
    """
    d = _differences(a, b)
    _check_n(n)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} must lie strictly between 0 and 1, e.g. 0.05 for a 95% interval")
    rng = np.random.default_rng(seed)
    means = np.empty(n)  # (n,)
    rows = max(1, _CHUNK // d.size)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))  # (rows, Q) query indices, with replacement
        means[start:stop] = d[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean_difference": float(d.mean()), "low": float(low), "high": float(high),
            "alpha": alpha, "n": n, "queries": d.size}


def randomisation_test(a: np.ndarray, b: np.ndarray, n: int = 10000, seed: int = 0) -> float:
    """Two-sided paired randomisation test of mean(a - b) = 0; returns the p-value.

    Under the null hypothesis each query's two values are exchangeable, so the sign of each difference is a coin
    flip. p = (1 + #{flips with |mean(s * d)| >= |mean(d)|}) / (n + 1): the observed assignment counts as one of the
    n + 1 (Phipson & Smyth 2010), so p is never 0. Identical runs give p = 1.
    a, b: (Q,) per-query metric values of two systems, same query order.
    """
    d = _differences(a, b)
    _check_n(n)
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    # the same sum in another order can differ in its last bits; a flip as extreme as the observed one must count
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    extreme = 0
    rows = max(1, _CHUNK // d.size)
    for start in range(0, n, rows):
        signs = rng.integers(0, 2, size=(min(rows, n - start), d.size)) * 2.0 - 1.0  # (rows, Q) of +-1
        extreme += int(np.count_nonzero(np.abs(signs @ d) / d.size >= observed - tolerance))
    return (1 + extreme) / (n + 1)
