"""Two-stage retrieval: the first stages, re-ranking a run, paired comparisons by hand, and the evaluate and rerank
verbs end to end on a slice of SciFact with a tiny re-ranker."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, REPO, require_data, require_model
from hnm.data import load_beir
from hnm.embed import EmbedConfig, Embedder
from hnm.encoder import EncoderConfig
from hnm.metrics import rank_documents, read_trec_run
from hnm.firststage import FirstStageConfig, retrieve
from hnm.twostage import REPORTED, compare, read_collection, rerank
from hnm.reranker import CrossEncoder

INTEROP = json.loads((FIXTURES / "reranker_interop.json").read_text())


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A BEIR folder: 8 SciFact test queries, their relevant documents and 60 others (seeded)."""
    corpus, queries, qrels = load_beir(require_data("scifact"), "test")
    qids = list(qrels)[:8]
    relevant = sorted({d for q in qids for d in qrels[q]})
    others = np.random.default_rng(0).choice(sorted(set(corpus) - set(relevant)), 60, replace=False).tolist()
    out = tmp_path_factory.mktemp("small")
    (out / "qrels").mkdir()
    (out / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, **corpus[d]}) + "\n" for d in relevant + others))
    (out / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in qids))
    (out / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q in qids for d, g in qrels[q].items()))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random re-ranker checkpoint (the fixture's 2-layer BERT)."""
    folder = tmp_path_factory.mktemp("tiny")
    cfg = EncoderConfig(**INTEROP["models"]["bert"]["config"])
    tokenizer = require_model("all-MiniLM-L6-v2") / "tokenizer.json"
    CrossEncoder.random(cfg, tokenizer, max_length=64, seed=0, std=0.2).save(folder)
    return folder


def test_dense_first_stage_ranks_by_cosine(small):
    corpus, queries, _ = load_beir(small, "test")
    corpus = dict(list(corpus.items())[:20])  # a MiniLM forward pass per text: keep it short
    queries = dict(list(queries.items())[:4])
    run = retrieve(corpus, queries, FirstStageConfig(kind="dense", top_k=5, models="all-MiniLM-L6-v2"),
                      quiet=True)
    emb = Embedder.load("all-MiniLM-L6-v2", EmbedConfig(cache=False), quiet=True)
    docs = emb.encode([f"{d['title']} {d['text']}" for d in corpus.values()], quiet=True)
    cos = emb.encode(list(queries.values()), kind="query", quiet=True) @ docs.T  # (Q, N)
    ids = list(corpus)
    for row, (qid, got) in zip(cos, run.items()):
        best = np.argsort(-row, kind="stable")[:5]
        assert list(got) == [ids[i] for i in best]
        assert np.allclose(list(got.values()), row[best], atol=1e-5)
    with pytest.raises(ValueError, match="bm25 cannot join"):
        retrieve(corpus, queries, FirstStageConfig(kind="ensemble", models="all-MiniLM-L6-v2,bm25"))


def test_rerank_scores_the_top_k_with_the_cross_encoder(small, tiny):
    corpus, queries = read_collection(small)
    run = retrieve(corpus, queries, FirstStageConfig(top_k=10), quiet=True)
    model = CrossEncoder.from_checkpoint(tiny)
    new = rerank(model, run, queries, corpus, top_k=4, batch_size=5, quiet=True)
    assert list(new) == list(run)
    for qid, docs in new.items():
        top = [d for d, _ in rank_documents(run[qid], 4)]
        assert sorted(docs) == sorted(top)
        expected = model.score([queries[qid]] * 4, [f"{corpus[d]['title']} {corpus[d]['text']}" for d in top])
        assert np.allclose([docs[d] for d in top], expected, atol=1e-5)  # other batches pad differently
    with pytest.raises(ValueError, match="no text"):
        rerank(model, {"nope": {}}, queries, corpus, 4)
    with pytest.raises(ValueError, match="not in the corpus"):
        rerank(model, {next(iter(queries)): {"missing-doc": 1.0}}, queries, corpus, 4)


def test_compare_by_hand():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    a = {"q1": {"d1": 2.0, "x": 1.0}, "q2": {"x": 2.0, "d2": 1.0}}  # reciprocal ranks 1 and 1/2
    b = {"q1": {"d1": 2.0, "x": 1.0}, "q2": {"d2": 2.0, "x": 1.0}}  # 1 and 1
    report = compare({"a": a, "b": b, "b again": b}, qrels, resamples=200)
    assert report["metrics"]["a"]["mrr@10"] == 0.75 and report["metrics"]["b"]["mrr@10"] == 1.0
    assert set(REPORTED) <= set(report["metrics"]["a"])
    mrr = {(c["a"], c["b"]): c for c in report["comparisons"] if c["metric"] == "mrr@10"}
    assert mrr[("a", "b")]["mean_difference"] == 0.25  # later minus earlier
    assert mrr[("a", "b")]["low"] == 0.0 and mrr[("a", "b")]["high"] == 0.5  # resampled means of {0, 0.5}
    assert mrr[("b", "b again")]["mean_difference"] == 0.0 and mrr[("b", "b again")]["p"] == 1.0
    assert len(report["comparisons"]) == 6  # three pairs, two metrics


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hnm", *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_evaluate_and_rerank_verbs(small, tiny, tmp_path):
    done = run_cli("evaluate", "--data", small, "--top-k", "10", "--reranker", tiny, "--output-dir", tmp_path,
                   "--resamples", "500", "--quiet")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[1].split()
    assert header == ["system", *REPORTED, "queries"]
    assert f"bm25+rerank:{tiny} - bm25, ndcg@10:" in done.stdout and "randomisation p =" in done.stdout
    report = json.loads((tmp_path / "evaluate.json").read_text())
    assert {c["metric"] for c in report["comparisons"]} == {"ndcg@10", "mrr@10"}
    bm25_run = Path(report["metrics"]["bm25"]["run"])
    assert bm25_run.is_file() and Path(report["metrics"][f"bm25+rerank:{tiny}"]["run"]).is_file()
    assert all(len(docs) == 10 for docs in read_trec_run(bm25_run).values())

    out = tmp_path / "reranked.trec"
    done = run_cli("rerank", "--data", small, "--run", bm25_run, "--reranker", tiny, "--output", out, "--top-k", "3",
                   "--split", "test", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "re-ranked 24 pairs of 8 queries" in done.stdout and "ndcg@10" in done.stdout
    assert all(len(docs) == 3 for docs in read_trec_run(out).values())
    done = run_cli("rerank", "--data", small, "--run", tmp_path / "none.trec", "--reranker", tiny, "--output", out)
    assert done.returncode == 2 and "none.trec: no such file" in done.stderr
