"""Dense top-k: equal to a brute-force stable argsort for every chunking, exclusions, ties, and input errors."""

import numpy as np
import pytest

from hnm.search import _above, best_k, exact_scores, topk

CHUNKS = [1, 2, 7, 64, 1000]


def brute_force(queries, corpus, k, exclude=None):
    """The plain form: the whole (Q, N) matrix, excluded ids at -inf, a stable sort (ties: lower id first)."""
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(corpus, dtype=np.float32).T
    for i, ids in enumerate(exclude or []):
        scores[i, list(ids)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def integer_data(seed, n_queries=23, n_docs=150, dim=6):
    # Small integers: every dot product is exact in float32 whatever the summation order of the BLAS kernel, and
    # equal scores are common, so chunking and tie order are both checked exactly.
    rng = np.random.default_rng(seed)
    return (rng.integers(-2, 3, (n_queries, dim)).astype(np.float32),
            rng.integers(-2, 3, (n_docs, dim)).astype(np.float32))


def test_docstring_examples():
    scores, ids = topk([[1, 0]], [[0, 1], [2, 0], [1, 0]], 2)
    assert scores.tolist() == [[2, 1]] and ids.tolist() == [[1, 2]]
    scores, ids = topk([[1, 0]], [[0, 1], [2, 0], [1, 0]], 2, exclude=[{1}])
    assert scores.tolist() == [[1, 0]] and ids.tolist() == [[2, 0]]
    s, i = best_k(np.array([[3, 5, 5, 1]], dtype=np.float32), np.array([[0, 1, 2, 3]]), 2)
    assert s.tolist() == [[5, 5]] and i.tolist() == [[1, 2]]
    s, i = _above(np.array([[1, 9, 8], [2, 0, 1]], dtype=np.float32), np.array([[5], [7]], dtype=np.float32), 10)
    assert s.tolist() == [[9, 8], [-np.inf, -np.inf]] and i.tolist() == [[11, 12], [-1, -1]]


@pytest.mark.parametrize("query_chunk", CHUNKS)
@pytest.mark.parametrize("doc_chunk", CHUNKS)
def test_equals_brute_force_for_any_chunking(query_chunk, doc_chunk):
    queries, corpus = integer_data(query_chunk * 1000 + doc_chunk)
    for k in (1, 5, 40, 150):
        scores, ids = topk(queries, corpus, k, query_chunk=query_chunk, doc_chunk=doc_chunk)
        ref_scores, ref_ids = brute_force(queries, corpus, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores)
        assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (len(queries), k)


def test_real_valued_embeddings():
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((70, 32)).astype(np.float32)
    corpus = rng.standard_normal((3000, 32)).astype(np.float32)
    scores, ids = topk(queries, corpus, 25, query_chunk=16, doc_chunk=256)
    ref_scores, ref_ids = brute_force(queries, corpus, 25)
    # Block and full products may round differently (last bit of float32); with random data no two of the top
    # scores of a row are that close, so the ids must agree exactly.
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ids, ref_ids)


@pytest.mark.parametrize("doc_chunk", [1, 9, 50, 1000])
def test_exclusions_are_never_returned(doc_chunk):
    queries, corpus = integer_data(5)
    rng = np.random.default_rng(2)
    exclude = [set(rng.choice(len(corpus), size=int(rng.integers(0, 30)), replace=False).tolist())
               for _ in queries]
    scores, ids = topk(queries, corpus, 20, exclude=exclude, query_chunk=4, doc_chunk=doc_chunk)
    for row, ex in zip(ids, exclude):
        assert not ex & set(row.tolist())
    ref_scores, ref_ids = brute_force(queries, corpus, 20, exclude)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


def test_short_lists_are_padded():
    # Query 0 excludes 4 of 5 documents, so only 1 of its k=3 slots is a document.
    corpus = np.eye(5, dtype=np.float32)
    scores, ids = topk(np.ones((2, 5), dtype=np.float32), corpus, 3, exclude=[{0, 1, 2, 4}, set()], doc_chunk=2)
    assert ids.tolist() == [[3, -1, -1], [0, 1, 2]]
    assert scores.tolist() == [[1, -np.inf, -np.inf], [1, 1, 1]]


@pytest.mark.parametrize("doc_chunk", [1, 4, 7, 100])
def test_ties_go_to_the_lower_id(doc_chunk):
    # All 30 documents score the same for every query: the answer is always ids 0..k-1, whatever the chunks.
    corpus = np.ones((30, 4), dtype=np.float32)
    queries = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    _, ids = topk(queries, corpus, 10, query_chunk=2, doc_chunk=doc_chunk)
    assert (ids == np.arange(10)).all()
    # Two tie groups across chunk borders: 2.0 for ids 20..29, 1.0 for ids 0..19.
    corpus[20:] = 2
    _, ids = topk(np.ones((1, 4), dtype=np.float32), corpus, 13, doc_chunk=doc_chunk)
    assert ids.tolist() == [list(range(20, 30)) + [0, 1, 2]]


def test_bad_input_raises():
    queries, corpus = integer_data(0, n_docs=10)
    with pytest.raises(ValueError, match="between 1 and the corpus size"):
        topk(queries, corpus, 11)  # k larger than the corpus raises (no silent clipping)
    with pytest.raises(ValueError, match="between 1 and the corpus size"):
        topk(queries, corpus, 0)
    with pytest.raises(ValueError, match="dimensions"):
        topk(queries, corpus[:, :3], 2)
    with pytest.raises(ValueError, match="one set per query"):
        topk(queries, corpus, 2, exclude=[set()])
    with pytest.raises(ValueError, match="outside 0..9"):
        topk(queries, corpus, 2, exclude=[{10}] + [set()] * (len(queries) - 1))
    with pytest.raises(ValueError, match="NaN"):
        topk(np.full((1, 6), np.nan), corpus, 2)
    with pytest.raises(ValueError, match="2-D"):
        topk(queries[0], corpus, 2)


def test_exact_scores_are_the_inner_products_without_blas():
    assert exact_scores(np.array([[1, 2], [3, 4]], dtype=np.float32), np.array([1, 1])).tolist() == [3.0, 7.0]
    rng = np.random.default_rng(0)
    rows, query = rng.standard_normal((300, 64)).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    got = exact_scores(rows, query)
    assert got.dtype == np.float64 and np.allclose(got, rows.astype(np.float64) @ query, atol=1e-5)
    assert exact_scores(rows[::-1], query).tolist() == got[::-1].tolist()  # a row's score is its own, in any order
