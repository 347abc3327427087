"""Two-stage retrieval: the dense first stage, re-ranking a run, interpolation and alpha by hand, paired comparisons
by hand, and the evaluate, rerank and tune verbs end to end on a slice of the bundled Cranfield with a tiny
re-ranker."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, REPO, require_model
from hnm.data import bundled_cranfield, document_text, load_beir
from hnm.embed import EmbedConfig, Embedder
from hnm.encoder import EncoderConfig
from hnm.metrics import rank_documents, read_trec_run
from hnm.errors import HnmError
from hnm.firststage import FirstStageConfig, retrieve
from hnm.twostage import (REPORTED, UNTUNED_ALPHA, alpha_for, choose_alpha, choose_alpha_kfold, compare, interpolate,
                          read_collection, rerank, stage_key, store_alpha, stored_alpha)
from hnm.reranker import CrossEncoder

INTEROP = json.loads((FIXTURES / "reranker_interop.json").read_text())


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A BEIR folder: 8 test queries of the bundled Cranfield, their judged documents and 60 others (seeded)."""
    corpus, queries, qrels = load_beir(bundled_cranfield(), "test_20")
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
    docs = emb.encode([document_text(d) for d in corpus.values()], quiet=True)
    cos = emb.encode(list(queries.values()), kind="query", quiet=True) @ docs.T  # (Q, N)
    ids = list(corpus)
    for row, (qid, got) in zip(cos, run.items()):
        best = np.argsort(-row, kind="stable")[:5]
        assert list(got) == [ids[i] for i in best]
        assert np.allclose(list(got.values()), row[best], atol=1e-5)
    with pytest.raises(HnmError, match="bm25 cannot join"):
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
        expected = model.score([queries[qid]] * 4, [document_text(corpus[d]) for d in top])
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
                   "--resamples", "500", "--first-stage", "bm25", "--quiet")
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
                   "--split", "test", "--first-stage", "bm25", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "re-ranked 24 pairs of 8 queries" in done.stdout and "ndcg@10" in done.stdout
    assert all(len(docs) == 3 for docs in read_trec_run(out).values())
    done = run_cli("rerank", "--data", small, "--run", tmp_path / "none.trec", "--reranker", tiny, "--output", out)
    assert done.returncode == 2 and "none.trec: no such file" in done.stderr


def test_interpolation_and_alpha_by_hand(tmp_path):
    first = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"d": 1.0, "e": 0.0}}
    model = {"q1": {"a": 0.0, "b": 1.0, "c": 2.0}, "q2": {"d": 0.0, "e": 5.0}}  # the reverse of the first stage
    assert interpolate(model, first, 1.0) is model  # pure re-ranking
    half = interpolate(model, first, 0.5)
    assert all(abs(v) < 1e-12 for docs in half.values() for v in docs.values())  # z-scores cancel exactly
    z = 1.224744871391589  # sqrt(3/2): the z-score of 3 in (1, 2, 3)
    assert interpolate(model, first, 0.25)["q1"]["a"] == pytest.approx(0.25 * -z + 0.75 * z)
    assert interpolate(model, first, 0.0)["q2"] == {"d": 1.0, "e": -1.0}  # the first stage, standardised
    qrels = {"q1": {"c": 1}, "q2": {"e": 1}}  # the re-ranker is right: the largest alpha that ranks them first wins
    alpha, curve = choose_alpha(model, first, qrels, grid=(0.0, 0.25, 0.5, 0.75, 1.0))
    assert curve[1.0] == 1.0 and curve[0.0] < 1.0 and alpha == 1.0
    alpha, _ = choose_alpha(model, first, {"q1": {"a": 1}, "q2": {"d": 1}}, grid=(0.0, 0.5, 1.0))
    assert alpha == 0.0  # the first stage is right
    with pytest.raises(ValueError, match="alpha"):
        interpolate(model, first, 1.5)

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"hidden_size": 8, "hnm": {"head": "pooler", "max_length": 16}}))
    hybrid, bm25 = FirstStageConfig(kind="hybrid"), FirstStageConfig(kind="bm25")
    assert stored_alpha(ckpt, hybrid) is None
    store_alpha(ckpt, 0.35, hybrid, {"top_k": 20})
    store_alpha(ckpt, 0.8, bm25, {"top_k": 20})
    assert stored_alpha(ckpt, hybrid) == 0.35 and stored_alpha(ckpt, bm25) == 0.8  # one alpha per first stage
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["hidden_size"] == 8 and saved["hnm"]["interpolation"][stage_key(hybrid)]["first_stage"] == "hybrid"
    # other settings of the same kind of first stage are another first stage: never another's alpha
    other = FirstStageConfig(kind="hybrid", bm25_weight=0.3)
    assert stored_alpha(ckpt, other) is None
    alpha, why = alpha_for(ckpt, other)
    assert alpha == UNTUNED_ALPHA and "not tuned for hybrid zscore bm25_weight=0.3" in why and "0.35" not in why
    assert alpha_for(ckpt, hybrid) == (0.35, f"tuned for {stage_key(hybrid)}")
    assert alpha_for(ckpt, other, given=1.0) == (1.0, "given")
    # the format of hnm 0.1, one alpha naming its kind of first stage, still reads, for that kind only
    saved["hnm"]["interpolation"] = {"alpha": 0.6, "first_stage": "bm25", "top_k": 20}
    (ckpt / "config.json").write_text(json.dumps(saved))
    assert stored_alpha(ckpt, bm25) == 0.6 and stored_alpha(ckpt, hybrid) is None


def test_tune_verb_stores_alpha_and_rerank_uses_it(small, tiny, tmp_path):
    import shutil
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny, ckpt)
    queries = tmp_path / "tuning.json"
    queries.write_text(json.dumps(["nope", *list(json.loads(line)["_id"] for line in
                                                  (small / "queries.jsonl").read_text().splitlines())[:6]]))
    done = run_cli("tune", "--data", small, "--split", "test", "--reranker", ckpt, "--queries", queries, "--top-k",
                   "5", "--first-stage", "bm25", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "on 6 tuning queries, first stage bm25 top 5" in done.stdout  # an unjudged id is left out
    alpha = stored_alpha(ckpt, FirstStageConfig(kind="bm25"))
    assert alpha is not None and f"alpha {alpha:g} " in done.stdout
    bm25_run = tmp_path / "bm25.trec"
    done = run_cli("bm25", "--data", small, "--split", "test", "--top-k", "5", "--output", bm25_run)
    assert done.returncode == 0, done.stderr
    done = run_cli("rerank", "--data", small, "--run", bm25_run, "--reranker", ckpt, "--output", tmp_path / "r.trec",
                   "--first-stage", "bm25", "--quiet")
    assert done.returncode == 0 and f"alpha {alpha:g} ->" in done.stdout
    # the run said to come from the hybrid, for which the checkpoint was not tuned: equal weights, said
    done = run_cli("rerank", "--data", small, "--run", bm25_run, "--reranker", ckpt, "--output", tmp_path / "r.trec",
                   "--quiet")
    assert done.returncode == 0 and f"alpha {UNTUNED_ALPHA:g} ->" in done.stdout and "not tuned for hybrid" in done.stderr
    done = run_cli("rerank", "--data", small, "--run", bm25_run, "--reranker", ckpt, "--output", tmp_path / "r.trec",
                   "--alpha", "1", "--quiet")
    assert done.returncode == 0 and "alpha 1 ->" in done.stdout
    done = run_cli("tune", "--data", small, "--split", "test", "--reranker", tiny, "--quiet")
    assert done.returncode == 2 and "tuning_queries.json: no tuning queries" in done.stderr


def test_kfold_alpha_falls_back_to_the_first_stage_when_tuning_does_not_carry_over():
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 1}}
    # q1: the re-ranker right, the first stage wrong; q2 the reverse (a tie puts d2 first: doc id descending)
    reranked = {"q1": {"d1": 1.0, "d2": 0.0}, "q2": {"d1": 0.0, "d2": 1.0}}
    first = {"q1": {"d1": 0.0, "d2": 1.0}, "q2": {"d1": 1.0, "d2": 0.0}}
    assert choose_alpha(reranked, first, qrels)[0] == 1.0  # alone, each side wins one query: the tie goes up
    alpha, about = choose_alpha_kfold(reranked, first, qrels, folds=5)
    wrong, right = 1 / math.log2(3), 1.0  # nDCG@10 with the relevant document second, first
    assert about["folds"] == 2 and sorted(about["fold_alphas"]) == [0.45, 1.0]
    assert about["out_of_fold"] == pytest.approx(wrong) and about["first_stage"] == pytest.approx((wrong + right) / 2)
    assert alpha == 0.0
    # both queries agree with the re-ranker: every fold picks 1, out of fold it wins, and alpha 1 stays
    agreeing = {"q1": reranked["q1"], "q2": {"d1": 1.0, "d2": 0.0}}
    against = {"q1": first["q1"], "q2": {"d1": 0.0, "d2": 1.0}}
    alpha, about = choose_alpha_kfold(agreeing, against, qrels)
    assert alpha == 1.0 and about["fold_alphas"] == [1.0, 1.0] and about["out_of_fold"] == 1.0
