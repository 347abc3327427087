"""First-stage retrieval: the hybrid's fusions by hand, and a hybrid run against the same sum computed directly
from BM25's and the encoder's scores (a tiny encoder added to a lock by its hashes)."""

import numpy as np
import pytest

from conftest import require_model
from hnm.bm25 import BM25Index
from hnm.data import bundled_cranfield, document_text, load_beir
from hnm.embed import EmbedConfig, Embedder
from hnm.ensemble import zscore as zscore_rows
from hnm.firststage import FirstStageConfig, annotate_rows, fuse_hybrid, retrieve, rrf_rows
from test_experiment import tiny_model


def test_fusions_by_hand():
    z = zscore_rows(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert np.allclose(z[0], [-1.224745, 0.0, 1.224745]) and np.all(z[1] == 0.0)  # a constant row gives 0
    r = rrf_rows(np.array([[0.1, 0.9, 0.5]]), depth=2)
    assert np.allclose(r, [[0.0, 1 / 61, 1 / 62]])  # the third-best is outside the depth: nothing
    bm25, dense = np.array([[3.0, 0.0, 0.0]]), np.array([[0.2, 0.4, 0.9]])
    half = fuse_hybrid(bm25, dense, FirstStageConfig(kind="hybrid", bm25_weight=0.5))
    assert np.allclose(half, 0.5 * zscore_rows(bm25) + 0.5 * zscore_rows(dense))
    only_bm25 = fuse_hybrid(bm25, dense, FirstStageConfig(kind="hybrid", bm25_weight=1.0, fusion="rrf", depth=3))
    assert np.allclose(only_bm25, rrf_rows(bm25, 3))
    with pytest.raises(ValueError, match="fusion: must be one of zscore, rrf"):
        FirstStageConfig(fusion="max")
    with pytest.raises(ValueError, match="bm25_weight: must be at most 1"):
        FirstStageConfig(bm25_weight=1.5)


@pytest.mark.parametrize("fusion", ["zscore", "rrf"])
def test_hybrid_run_is_the_fused_sum(tmp_path, monkeypatch, fusion):
    tokenizer_json = require_model("all-MiniLM-L6-v2") / "tokenizer.json"  # before HNM_HOME moves
    monkeypatch.setenv("HNM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HNM_LOCK", str(tiny_model(tmp_path / "home", tokenizer_json)))
    corpus, queries, _ = load_beir(bundled_cranfield(), "test_20")
    corpus = dict(list(corpus.items())[:60])
    queries = dict(list(queries.items())[:5])
    cfg = FirstStageConfig(kind="hybrid", top_k=7, models="tiny", fusion=fusion, bm25_weight=0.4, depth=20,
                           block=2)  # blocks of 2 queries: the blocking must not show
    run = retrieve(corpus, queries, cfg, quiet=True)

    index = BM25Index.from_corpus(corpus, quiet=True)
    sparse = index.scores([index.analyser(t) for t in queries.values()])  # (Q, N)
    emb = Embedder.load("tiny", EmbedConfig(), quiet=True)
    dense = emb.encode(list(queries.values()), kind="query", quiet=True) @ \
        emb.encode([document_text(d) for d in corpus.values()], quiet=True).T  # (Q, N)
    if fusion == "zscore":
        fused = 0.4 * zscore_rows(sparse) + 0.6 * zscore_rows(dense)
    else:
        fused = 0.4 * rrf_rows(sparse, 20) + 0.6 * rrf_rows(dense, 20)
    ids = list(corpus)
    for row, (qid, got) in zip(fused, run.items()):
        best = np.lexsort((np.arange(len(ids)), -row))[:7]
        assert list(got) == [ids[i] for i in best]
        assert np.allclose(list(got.values()), row[best], atol=1e-5)


def test_annotate_rows_adds_the_first_stages_scores_and_top_k():
    corpus = {"a": {"title": "", "text": "wing flow"}, "b": {"title": "", "text": "wing"},
              "c": {"title": "", "text": "heat pipe"}}
    rows = [{"query_id": "q", "query": "wing flow", "positive_ids": ["b"], "positives": ["wing"],
             "negative_ids": ["c", "a"], "negatives": ["heat pipe", "wing flow"]}]
    got = annotate_rows(corpus, rows, FirstStageConfig(kind="bm25", top_k=2))[0]
    bm25 = dict(zip(corpus, BM25Index.from_corpus(corpus, quiet=True).scores([["wing", "flow"]])[0].tolist()))
    # "a" matches both words, "b" one, "c" none: the top 2 are a then b, with BM25's own scores
    assert got["candidate_ids"] == ["a", "b"] and got["candidates"] == ["wing flow", "wing"]
    assert got["candidate_scores"] == pytest.approx([bm25["a"], bm25["b"]], abs=1e-6)
    assert got["positive_first_stage_scores"] == pytest.approx([bm25["b"]], abs=1e-6)
    assert got["negative_first_stage_scores"] == pytest.approx([0.0, bm25["a"]], abs=1e-6)
    assert {k: got[k] for k in rows[0]} == rows[0]  # the row's own fields unchanged
    with pytest.raises(ValueError, match="'x' is not in the corpus"):
        annotate_rows(corpus, [{**rows[0], "negative_ids": ["x"]}], FirstStageConfig(kind="bm25"))
