"""Exact inner-product top-k of queries against a corpus of embeddings, in memory-bounded blocks.

The plain form is `np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]`: it holds the whole (Q, N)
score matrix and sorts every row. Here the queries go in chunks of `query_chunk` rows and the corpus in chunks of
`doc_chunk` rows, so memory is one (query_chunk, doc_chunk) block whatever Q and N are. The first block of a row
keeps its k best with `np.argpartition` (linear time) into a running (query_chunk, k) list; later blocks only pass
on the entries that beat the list's k-th score (a comparison, about 10x cheaper than argpartition), which are
merged in. Excluded ids (a query's positives, say) get a score of -inf before selection.

Order (deterministic): score descending, ties by the lower corpus id, exactly as the stable argsort above. Where
the exclusions leave a query fewer than k documents, its last slots hold id -1 and score -inf. `k` larger than the
corpus raises ValueError. Scores are float32 dot products; for unit-length embeddings they are cosines.

`exact_scores` is the other way to score: the candidates of one query through NumPy's own einsum loop rather
than BLAS. BLAS splits a product's sums among its threads, so a float32 score can differ in its last bit between a
run on two threads and one on one (measured: 4 of 180 mined rows of the bundled Cranfield printed a score one digit
apart); the scores that mining writes out come from `exact_scores`, the same bits whatever the thread count or the
number of processes, at the speed of BLAS's matrix-vector product (both are bound by reading the rows: 10,000
gathered rows of 1,152 floats, einsum 118 ms, BLAS 152 ms on this busy 2-core CPU).

Not here: approximate search (IVF, HNSW, quantisation), other similarities, GPU.

Letters: Q queries, N corpus rows, D dimensions, q and n the rows of one query and corpus chunk, m the columns of a
candidate list.
"""

from typing import List, Optional, Set, Tuple

import numpy as np


def best_k(scores: np.ndarray, ids: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The min(k, m) best of every row of (q, m) scores with their (q, m) ids, sorted: score descending, then id.
    hnm's one top-k of a score matrix: the blocks here, the hybrid first stage's rows, a query's mining candidates.

    Example: scores [[3, 5, 5, 1]], ids [[0, 1, 2, 3]], k=2 -> scores [[5, 5]], ids [[1, 2]].
    """
    q, m = scores.shape
    if m > k:
        part = np.argpartition(scores, m - k, axis=1)[:, m - k:]  # (q, k) the k largest, unordered
        top = np.take_along_axis(scores, part, axis=1)  # (q, k)
        kth = top.min(axis=1, keepdims=True)  # (q, 1) the k-th largest score
        # argpartition keeps an arbitrary subset of the scores tied with the k-th; where the row holds more of them
        # than were kept, sort the whole row so that the lowest ids win (rare with real-valued scores).
        straddle = np.flatnonzero((scores == kth).sum(axis=1) != (top == kth).sum(axis=1))
        for r in straddle:
            part[r] = np.lexsort((ids[r], -scores[r]))[:k]
        scores, ids = np.take_along_axis(scores, part, axis=1), np.take_along_axis(ids, part, axis=1)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]  # (q, k): the last key sorts first, so score, then id
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _above(block: np.ndarray, kth: np.ndarray, first_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """The entries of a (q, n) block that beat each row's (q, 1) running k-th best score, packed left into (q, w)
    scores and ids (w: the most any row has), padded with -inf and -1.

    Example: block [[1, 9, 8], [2, 0, 1]], kth [[5], [7]], first_id 10 -> scores [[9, 8], [-inf, -inf]],
    ids [[11, 12], [-1, -1]]. A tie with the k-th best loses: the running list holds lower ids.
    """
    q, n = block.shape
    hits = np.flatnonzero(block > kth)  # flat positions, row by row; far fewer than q * n once the list is full
    rows, cols = np.divmod(hits, n)
    counts = np.bincount(rows, minlength=q)  # (q,)
    slots = np.arange(len(hits)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its row
    width = int(counts.max(initial=0))
    scores = np.full((q, width), -np.inf, dtype=np.float32)
    ids = np.full((q, width), -1, dtype=np.int64)
    scores[rows, slots] = block.ravel()[hits]
    ids[rows, slots] = cols + first_id
    return scores, ids


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Check a non-empty (rows, D) matrix of finite numbers; return it as C-ordered float32."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be a non-empty 2-D array of numbers, got shape {x.shape}, dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _exclusion_pairs(exclude: List[Set[int]], n_queries: int, n_docs: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-query sets of corpus ids -> (P,) query rows and (P,) corpus ids, sorted by query row."""
    if len(exclude) != n_queries:
        raise ValueError(f"exclude has {len(exclude)} sets for {n_queries} queries; give one set per query")
    docs = [np.fromiter(ids, dtype=np.int64, count=len(ids)) for ids in exclude]
    rows = np.repeat(np.arange(n_queries), [len(d) for d in docs])
    docs = np.concatenate(docs) if docs else np.empty(0, dtype=np.int64)
    bad = (docs < 0) | (docs >= n_docs)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"exclude[{rows[i]}] holds corpus id {docs[i]}, outside 0..{n_docs - 1}")
    return rows, docs


def exact_scores(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(C, D) rows, (D,) query -> (C,) inner products (float32 sums, returned as float64), by NumPy's einsum loop
    (no BLAS, one thread): the same bits on any number of threads. [[1, 2], [3, 4]], [1, 1] -> [3, 7]."""
    return np.einsum("cd,d->c", rows, np.asarray(query, dtype=rows.dtype)).astype(np.float64)


def topk(queries: np.ndarray, corpus: np.ndarray, k: int, exclude: Optional[List[Set[int]]] = None,
         query_chunk: int = 1024, doc_chunk: int = 16384) -> Tuple[np.ndarray, np.ndarray]:
    """The k corpus rows of largest inner product with each query.

    (Q, D) queries, (N, D) corpus -> (Q, k) float32 scores, (Q, k) int64 corpus row ids, best first; ties go to
    the lower id. `exclude[i]` holds corpus ids never returned for query i. Memory: one (query_chunk, doc_chunk)
    float32 block (64 MB with the defaults) plus the (Q, k) result.

    Example: queries [[1, 0]], corpus [[0, 1], [2, 0], [1, 0]], k=2 -> scores [[2, 1]], ids [[1, 2]];
    with exclude=[{1}] -> scores [[1, 0]], ids [[2, 0]].
    """
    queries, corpus = _as_matrix(queries, "queries"), _as_matrix(corpus, "corpus")
    (n_queries, dim), n_docs = queries.shape, corpus.shape[0]
    if corpus.shape[1] != dim:
        raise ValueError(f"queries have {dim} dimensions but the corpus has {corpus.shape[1]}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n_docs:
        raise ValueError(f"k must be an integer between 1 and the corpus size ({n_docs}), got {k!r}")
    if query_chunk < 1 or doc_chunk < 1:
        raise ValueError(f"query_chunk and doc_chunk must be >= 1, got {query_chunk} and {doc_chunk}")
    ex_rows, ex_docs = (_exclusion_pairs(exclude, n_queries, n_docs) if exclude is not None
                        else (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)))
    scores = np.empty((n_queries, k), dtype=np.float32)
    ids = np.empty((n_queries, k), dtype=np.int64)
    for qs in range(0, n_queries, query_chunk):
        qe = min(qs + query_chunk, n_queries)
        lo, hi = np.searchsorted(ex_rows, [qs, qe])  # this chunk's exclusions
        q_rows, q_docs = ex_rows[lo:hi] - qs, ex_docs[lo:hi]
        best_s = np.empty((qe - qs, 0), dtype=np.float32)  # (q, <=k) running best, sorted
        best_i = np.empty((qe - qs, 0), dtype=np.int64)
        for ds in range(0, n_docs, doc_chunk):
            de = min(ds + doc_chunk, n_docs)
            block = queries[qs:qe] @ corpus[ds:de].T  # (q, n)
            here = (q_docs >= ds) & (q_docs < de)
            block[q_rows[here], q_docs[here] - ds] = -np.inf
            if best_s.shape[1] < k:  # no k-th best yet to prune with: select from the whole block
                cand_s, cand_i = best_k(block, np.broadcast_to(np.arange(ds, de), block.shape), k)
            else:  # only entries above the running k-th best can enter; finding them is ~10x cheaper
                cand_s, cand_i = _above(block, best_s[:, k - 1:], ds)
            best_s, best_i = best_k(np.concatenate([best_s, cand_s], axis=1),
                                     np.concatenate([best_i, cand_i], axis=1), k)
        scores[qs:qe], ids[qs:qe] = best_s, best_i
    ids[scores == -np.inf] = -1  # excluded documents that filled a short list
    return scores, ids
