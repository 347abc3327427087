"""Hard-negative mining: for each query, passages close to it that are not relevant, false negatives kept out.

The paper's method (arXiv 2411.02404, sections 3.2 to 3.4), with the safeguards of the best miners:

1. the ensemble similarity of every query and document (ensemble.py);
2. k-means over the ensemble document vectors (spherical, as they are unit length); a query's candidates are the
   documents of its `n_probe` nearest clusters and of its positives' clusters. `clustering` names the algorithm,
   for the paper's open question on it: `kmeans` (the paper's), `agglomerative` (Ward's criterion or average
   linkage on cosine distance, agglomerative.py, fitted on a sample of `agglomerative_sample` documents for its
   O(n^2) memory), `gmm` (a diagonal Gaussian mixture by EM, gmm.py, each document in its most probable component),
   each fitted on a seeded sample and then every document assigned by the algorithm's own rule, which also ranks
   the clusters for a query; or `none`, the ensemble's exact top over the whole corpus (search.topk over the
   ensemble vectors), to isolate what clustering adds at all;
3. candidates ranked by ensemble similarity, positives and empty documents removed, then a rank window: skip the
   first `skip_top`, look no further than rank `max_rank`;
4. a ceiling from the positives' scores (NV-Retriever's positive-aware rule, Moreira et al. 2024, arXiv
   2407.15831): a candidate is kept only if its score is below `relative_ceiling` x the reference positive's
   score. NV-Retriever has one positive per query, as each (query, positive) example of sentence-transformers'
   miner has; with several (graded judgments such as Cranfield's, about seven a query, some at cosine 0.03) the
   reference is `ceiling_from`: the strongest positive by default, the rule of the row's best example, or the
   median, or the weakest (the strictest). Measured on the bundled Cranfield train_80, 4 negatives, MiniLM: queries
   short of negatives / flagged, dense 119 / 13,641 (weakest), 34 / 7,233 (median), 7 / 1,901 (strongest);
   ensemble 74 / 11,567, 13 / 5,423, 0 / 1,361 (README); an
   absolute `margin` below it and absolute `max_score` are optional ceilings too, `min_score` an optional floor.
   Candidates above a ceiling are likely unlabelled positives (the paper's "additional positives"): they go to a
   review file, never into the negatives;
4'. or, with `selection` "pca", instead of the ceiling, the authors' own follow-up rule (Meghwani, Agarwal et al.,
   "Hard Negative Mining for Domain-Specific Retrieval in Enterprise Systems", ACL 2025 industry track, arXiv
   2505.18366): the ensemble vectors (each member's embedding unit length, as its model prescribes, scaled by
   sqrt(w_m / sum w) and concatenated, ensemble.py: every member weighs in by its weight, not by its dimension or
   norm) reduced by PCA fitted on the documents (pca.py; `pca_variance` of the variance, or `pca_components`), each
   projection scaled to unit length; in cosine distance d = 1 - cos there, a candidate D ranked by d(Q, D) is a
   negative only if d(Q, D) < d(Q, PD) and d(Q, D) < d(PD, D). The paper pairs a query with one positive; here a
   document is a negative of the query only if both conditions hold for every positive, because training pairs
   every positive of a row with every negative (train.py), so any weaker verdict would make training pairs the rule
   forbids (one row per (query, positive) would instead change the row format and weigh a query by its number of
   positives). Candidates kept out go to the review file with the conditions they failed. The ceiling is not
   applied; the statistics count how many of the rule's negatives it would have flagged (miner.py). With clustering
   `none` the candidates are the whole corpus's top in that space, as in the paper; with a clustering, its clusters'
   documents;
5. `top` or `random` sampling of `num_negatives`, of which a share `random_share` is drawn uniformly from the whole
   corpus instead (negatives-only training hurts the easy cases).

Baselines and ablations take the same path with another choice of candidates: `random` (the whole corpus, no
scores), `bm25` (BM25's ranking), `dense` (the first model alone over the whole corpus, no clustering).

Each query draws from its own generator, seeded by (seed, query position), so the output does not depend on how
the queries are chunked or whether the run was interrupted. Queries go in chunks of `chunk_size`; after each chunk
the rows are appended to `OUTPUT.part` and the progress is saved, so a killed run resumes where it stopped and
produces the same file (miner.py). Not here: the job itself, its statistics and chart (miner.py); training.
"""

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from hnm.agglomerative import AgglomerativeConfig, agglomerative
from hnm.config import REFERENCE_POSITIVES, MineConfig
from hnm.ensemble import Ensemble, PassageEnsemble
from hnm.gmm import GMMConfig, gaussian_mixture
from hnm.kmeans import KMeansConfig, kmeans
from hnm.pca import PCA, fit_pca
from hnm.search import best_k, exact_scores, topk

REFERENCES = dict(zip(REFERENCE_POSITIVES, (np.max, np.median, np.min)))  # of the positives' scores
CONDITIONS = ("d(Q,D) < d(Q,PD)", "d(Q,D) < d(PD,D)")  # the pca selection's two, for every positive PD


def reference_score(positive_scores: np.ndarray, cfg: MineConfig) -> float:
    """The positive score the ceiling is relative to: [0.9, 0.5, 0.03] -> strongest 0.9, median 0.5, weakest 0.03
    (nan without scores)."""
    return float(REFERENCES[cfg.ceiling_from](positive_scores)) if len(positive_scores) else float("nan")


def ceiling(positive_score: float, cfg: MineConfig) -> float:
    """The score a negative must stay below, given the reference positive's score (+inf when no rule is set).

    The relative rule reads `ratio x positive` for a positive score and keeps the same distance below a negative
    one: pos - (1 - ratio) |pos|. Example: ratio 0.95, positive 0.8 -> 0.76; with margin 0.1 too -> 0.7.
    """
    c = math.inf
    if cfg.relative_ceiling is not None:
        c = min(c, positive_score - (1.0 - cfg.relative_ceiling) * abs(positive_score))
    if cfg.margin is not None:
        c = min(c, positive_score - cfg.margin)
    if cfg.max_score is not None:
        c = min(c, cfg.max_score)
    return c


@dataclass
class Selection:
    negatives: List[int]  # document rows, in the order chosen
    scores: List[Optional[float]]
    sources: List[str]  # the strategy, or "random" for the mixed-in share
    flagged: List[Tuple[int, float]]  # (document row, score) above a ceiling: likely unlabelled positives
    failed: Optional[List[List[str]]] = None  # the pca selection: the CONDITIONS each flagged candidate failed


def select(ranked: np.ndarray, scores: Optional[np.ndarray], positive_score: float, cfg: MineConfig,
           rng: np.random.Generator, n_hard: int) -> Selection:
    """Choose up to `n_hard` negatives from candidates ranked best first (positives already removed).

    With scores None (the random strategy) there is no window and no ceiling: a uniform draw from `ranked`.
    """
    if scores is None:
        take = rng.choice(len(ranked), size=min(n_hard, len(ranked)), replace=False)
        return Selection([int(ranked[i]) for i in take], [None] * len(take), [cfg.strategy] * len(take), [])
    ids, s = ranked[cfg.skip_top:cfg.max_rank], scores[cfg.skip_top:cfg.max_rank]
    top = ceiling(positive_score, cfg)
    above = s >= top
    chosen = _take(~above, s, cfg, rng, n_hard)
    return Selection([int(ids[i]) for i in chosen], [float(s[i]) for i in chosen], [cfg.strategy] * len(chosen),
                     [(int(ids[i]), float(s[i])) for i in np.flatnonzero(above)])


def _take(ok: np.ndarray, s: np.ndarray, cfg: MineConfig, rng: np.random.Generator, n_hard: int) -> np.ndarray:
    """Window positions of the negatives: among those `ok` and at or above the floor `min_score`, the first
    `n_hard` (sampling top) or `n_hard` drawn at random in window order (sampling random)."""
    if cfg.min_score is not None:
        ok = ok & (s >= cfg.min_score)
    eligible = np.flatnonzero(ok)
    if cfg.sampling == "random" and len(eligible) > n_hard:
        eligible = np.sort(rng.choice(eligible, size=n_hard, replace=False))
    return eligible[:n_hard]


def select_pca(ranked: np.ndarray, scores: np.ndarray, positive_scores: np.ndarray, between: np.ndarray,
               cfg: MineConfig, rng: np.random.Generator, n_hard: int) -> Selection:
    """The pca selection (step 4'): up to `n_hard` negatives among candidates ranked best first, each passing both
    CONDITIONS for every positive; every other candidate of the window is flagged with the conditions it failed.

    Cosines in the PCA space: scores (C,) cos(Q, D), positive_scores (P,) cos(Q, PD), between (P, C) cos(PD, D).
    Example, one positive: cos(Q, D) 0.9, cos(Q, PD) 0.8, cos(PD, D) 0.95 -> d(Q, D) 0.1 < d(Q, PD) 0.2 holds,
    d(Q, D) 0.1 < d(PD, D) 0.05 fails: flagged (a near-copy of the positive); cos(PD, D) 0.5 instead: a negative.
    """
    window = slice(cfg.skip_top, cfg.max_rank)
    ids, s = ranked[window], scores[window]
    d = 1.0 - s  # (C,) d(Q, D)
    nearer_than_positives = np.all(d[None, :] < (1.0 - positive_scores)[:, None], axis=0)  # (C,) for every PD
    nearer_query_than_positive = np.all(d[None, :] < 1.0 - between[:, window], axis=0)  # (C,) for every PD
    passed = np.stack([nearer_than_positives, nearer_query_than_positive])  # (2, C), in CONDITIONS' order
    chosen = _take(passed.all(axis=0), s, cfg, rng, n_hard)
    out = np.flatnonzero(~passed.all(axis=0))
    return Selection([int(ids[i]) for i in chosen], [float(s[i]) for i in chosen], [cfg.strategy] * len(chosen),
                     [(int(ids[i]), float(s[i])) for i in out],
                     [[c for c, p in zip(CONDITIONS, passed[:, i]) if not p] for i in out])


def pca_space(docs: np.ndarray, queries: np.ndarray, cfg: MineConfig) -> Tuple[np.ndarray, np.ndarray, PCA]:
    """The pca selection's space: PCA fitted on the (N, D) ensemble document vectors; the documents (N, K) and the
    (Q, D) queries (Q, K) projected and scaled to unit length, so that an inner product is a cosine."""
    pca = fit_pca(docs, cfg.pca_components or cfg.pca_variance)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return unit(pca.transform(docs)), unit(pca.transform(queries)), pca


def draw_random(n: int, n_docs: int, banned: set, rng: np.random.Generator) -> List[int]:
    """n distinct document rows drawn uniformly from 0..n_docs-1 outside `banned` (fewer if too few remain)."""
    n = min(n, n_docs - len(banned))
    out: List[int] = []
    while len(out) < n:
        for d in rng.integers(0, n_docs, size=2 * (n - len(out)) + 4).tolist():
            if d not in banned and len(out) < n:
                banned.add(d)
                out.append(d)
    return out


# ------------------------------------------------------------------------------------------------- candidates


class Candidates:
    """For a chunk of query rows: each query's candidate documents ranked best first, their scores, positives' scores."""

    def __init__(self, cfg: MineConfig, n_docs: int, excluded: np.ndarray, ensemble: Optional[Ensemble] = None,
                 bm25=None, query_texts: Optional[List[str]] = None):
        self.cfg, self.n_docs, self.excluded = cfg, n_docs, excluded  # excluded: (N,) bool, empty documents
        self.ensemble, self.bm25, self.query_texts = ensemble, bm25, query_texts
        self.clusters: Optional[ClusterView] = None
        if cfg.strategy == "ensemble" and cfg.clustering == "none" and isinstance(ensemble, PassageEnsemble):
            raise ValueError("clustering 'none' ranks by the ensemble vectors' inner product, not by a passage "
                             "ensemble's best passage; mine over passages with a clustering")
        self.pca: Optional[PCA] = None  # the pca selection's, with its unit (N, K) documents and (Q, K) queries
        if cfg.selection == "pca":
            if isinstance(ensemble, PassageEnsemble):
                raise ValueError("selection 'pca' reduces the ensemble vectors, not a passage ensemble's passages")
            self.pca_docs, self.pca_queries, self.pca = pca_space(ensemble.docs, ensemble.queries, cfg)
        if cfg.strategy == "ensemble" and cfg.clustering != "none":
            self.clusters = ClusterView.fit(ensemble.docs, cfg)

    def ranked(self, rows: List[int], positives: List[np.ndarray]):
        """-> per query: (candidate rows best first, their scores or None, the positives' scores in their order)."""
        cfg = self.cfg
        if cfg.strategy == "random":
            keep = np.flatnonzero(~self.excluded)
            return [(np.setdiff1d(keep, p), None, np.empty(0)) for p in positives]
        if cfg.strategy == "bm25":
            analyse = self.bm25.analyser
            full = self.bm25.scores([analyse(self.query_texts[r]) for r in rows])  # (q, N)
            cands = [np.arange(self.n_docs)] * len(rows)
            scores = list(full)
        elif cfg.strategy == "dense":
            return self._exact(self.ensemble.doc_vectors[0], self.ensemble.query_vectors[0][rows], positives)
        elif cfg.clustering == "none":
            if self.pca is not None:
                return self._exact(self.pca_docs, self.pca_queries[rows], positives)
            return self._exact(self.ensemble.docs, self.ensemble.queries[rows], positives)
        else:
            cands = self.clusters.candidates(self.ensemble.queries[rows], positives, cfg.n_probe)
            scores = self.ensemble.score(np.asarray(rows), cands) if self.pca is None else \
                [exact_scores(self.pca_docs[c], self.pca_queries[r]) for r, c in zip(rows, cands)]
        out = []
        for c, s, p in zip(cands, scores, positives):
            pos_mask = np.isin(c, p)
            where = {int(d): i for i, d in enumerate(c[pos_mask].tolist())}
            pos_scores = np.array([s[np.flatnonzero(pos_mask)[where[int(d)]]] for d in p], dtype=np.float64)
            keep = ~pos_mask & ~self.excluded[c]
            c, s = c[keep], s[keep]
            s, c = best_k(s[None], c[None], cfg.max_rank)  # best first; ties by document row: a determined order
            out.append((c[0], s[0].astype(np.float64), pos_scores))
        return out


    def pca_scores(self, row: int, docs: List[int]) -> List[float]:
        """The pca selection's cosines of query `row` with the given documents (those drawn at random)."""
        return [float(x) for x in exact_scores(self.pca_docs[docs], self.pca_queries[row])] if docs else []

    def between(self, positives: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """The pca selection's cosines of each positive with each document: (P,) and (C,) rows -> (P, C)."""
        return np.array([exact_scores(self.pca_docs[docs], self.pca_docs[p]) for p in positives]).reshape(
            len(positives), len(docs))

    def _exact(self, docs: np.ndarray, queries: np.ndarray, positives: List[np.ndarray]):
        """(N, D) documents against (q, D) queries over the whole corpus: exact top-k in bounded memory (search.topk).
        The dense strategy's are the first model's vectors; clustering 'none' uses the ensemble vectors."""
        empties = set(np.flatnonzero(self.excluded).tolist())
        k = min(self.cfg.max_rank, self.n_docs)
        _, ids = topk(queries, docs, k, exclude=[empties | set(p.tolist()) for p in positives])
        out = []
        for q, p, i in zip(queries, positives, ids):
            i = i[i >= 0]  # -1 marks slots that exclusions left empty
            s = exact_scores(docs[i], q)  # the written scores: the same bits on any thread count (search.py)
            order = np.lexsort((i, -s))
            out.append((i[order], s[order], exact_scores(docs[p], q)))
        return out


@dataclass
class ClusterView:
    """The clusters mining searches: each document's cluster, each cluster's documents, and how near a query is to
    each cluster, by the rule that assigned the documents (the same for every document and query).

    kmeans: the largest inner product with the unit centre; agglomerative: the nearest cluster mean (Ward) or the
    largest cosine with the normalised mean (average); gmm: the largest log w_k + log N(x | k).
    """
    labels: np.ndarray  # (N,) cluster of each document
    members: List[np.ndarray]  # document rows of each cluster
    affinity: Callable[[np.ndarray], np.ndarray]  # (q, D) queries -> (q, K), larger nearer

    @classmethod
    def fit(cls, docs: np.ndarray, cfg: MineConfig) -> "ClusterView":
        """Fit `cfg.clustering` on a seeded sample of the (N, D) unit document vectors, then assign all of them."""
        n = docs.shape[0]
        k = cfg.n_clusters or default_clusters(n)
        k = min(k, n)
        rng = np.random.default_rng(cfg.seed)
        if cfg.clustering == "agglomerative":
            sample = _sample(docs, cfg.agglomerative_sample, rng)
            if k > len(sample):
                raise ValueError(f"{k} clusters from a sample of {len(sample)} documents: raise agglomerative_sample "
                                 f"or lower n_clusters")
            tree = agglomerative(sample, AgglomerativeConfig(k=k, linkage=cfg.linkage))
            labels, affinity = tree.predict(docs), tree.affinity
        elif cfg.clustering == "gmm":
            sample = _sample(docs, cfg.gmm_sample, rng)
            mixture = gaussian_mixture(sample, GMMConfig(k=k, max_iter=cfg.gmm_iter, seed=cfg.seed))
            labels = mixture.labels if sample is docs else mixture.predict(docs)
            affinity = mixture.log_prob
        else:
            sample = _sample(docs, cfg.kmeans_sample, rng)
            result = kmeans(sample, KMeansConfig(k=k, spherical=True, seed=cfg.seed, max_iter=cfg.kmeans_iter))
            labels = result.labels if sample is docs else result.predict_blocks(docs)  # a block at a time
            centers = result.centers  # (K, D) unit length

            def affinity(queries: np.ndarray) -> np.ndarray:
                return queries @ centers.T  # (q, K) cosines

        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(k + 1))
        return cls(labels, [order[bounds[j]:bounds[j + 1]] for j in range(k)], affinity)

    def candidates(self, queries: np.ndarray, positives: List[np.ndarray], n_probe: int) -> List[np.ndarray]:
        """Rows of the documents in each query's n_probe nearest clusters and in its positives' clusters."""
        sims = self.affinity(queries)  # (q, K)
        n_probe = min(n_probe, sims.shape[1])
        nearest = np.argpartition(-sims, n_probe - 1, axis=1)[:, :n_probe]
        out = []
        for near, pos in zip(nearest, positives):
            clusters = np.union1d(near, self.labels[pos])
            out.append(np.concatenate([self.members[j] for j in clusters]))
        return out


def _sample(docs: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """All of the (N, D) documents if N <= size, else `size` rows drawn without replacement, in corpus order."""
    n = docs.shape[0]
    return docs if n <= size else docs[np.sort(rng.choice(n, size, replace=False))]


def default_clusters(n_docs: int) -> int:
    """round(sqrt(N)): clusters of about sqrt(N) documents, so candidates grow as sqrt(N) while staying topical."""
    return max(1, round(math.sqrt(n_docs)))
