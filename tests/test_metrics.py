"""Tests for hnm.metrics: hand-worked values, trec_eval agreement through a stored fixture, TREC files, statistics."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hnm.errors import InputError
from hnm.metrics import (evaluate, paired_bootstrap, per_query, randomisation_test, rank_documents, read_trec_run,
                         write_trec_run)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "metrics_fixture.json"

# One query, three retrieved documents ranked a, b, c with grades 0, 2, 1; "z" (grade 3) is judged but not retrieved.
RUN = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
QRELS = {"q": {"a": 0, "b": 2, "c": 1, "z": 3}}


def test_hand_worked_three_document_ranking():
    got = evaluate(RUN, QRELS, ks=(1, 2, 3, 5))
    # relevant (grade >= 1): b at rank 2, c at rank 3, z never retrieved -> 3 relevant in all
    assert got["mrr@1"] == 0.0 and got["mrr@2"] == 0.5 and got["mrr@3"] == 0.5
    assert got["p@1"] == 0.0 and got["p@2"] == 0.5 and got["p@3"] == pytest.approx(2 / 3)
    assert got["p@5"] == pytest.approx(2 / 5)  # ranks 4 and 5 are empty and count as non-relevant, as in trec_eval
    assert got["r@2"] == pytest.approx(1 / 3) and got["r@3"] == pytest.approx(2 / 3)
    assert got["map@3"] == pytest.approx((1 / 2 + 2 / 3) / 3)  # divided by all 3 relevant, not by those retrieved
    assert got["hit@1"] == 0.0 and got["hit@2"] == 1.0
    # DCG@3 = 0/log2(2) + 2/log2(3) + 1/log2(4); ideal order z, b, c: 3/log2(2) + 2/log2(3) + 1/log2(4)
    dcg = 2 / 1.5849625007211562 + 1 / 2
    ideal = 3 + 2 / 1.5849625007211562 + 1 / 2
    assert got["ndcg@3"] == pytest.approx(dcg / ideal, abs=1e-12)
    assert got["ndcg@3"] == pytest.approx(0.3700, abs=1e-4)
    # ideal DCG@1 is the best judged grade alone: 3
    assert got["ndcg@1"] == 0.0
    assert got["ndcg@2"] == pytest.approx((2 / 1.5849625007211562) / (3 + 2 / 1.5849625007211562), abs=1e-12)
    assert got["queries"] == 1


def test_ndcg_uses_linear_gains_not_exponential():
    # one relevant document of grade 3 at rank 2, a grade-1 document at rank 1; exponential gains (2^g - 1) would
    # give (1 + 7/log2(3)) / (7 + 1/log2(3)) = 0.7745..., linear gains (trec_eval) (1 + 3/log2(3)) / (3 + 1/log2(3))
    got = evaluate({"q": {"low": 2.0, "high": 1.0}}, {"q": {"low": 1, "high": 3}}, ks=(2,), metrics=("ndcg",))
    assert got["ndcg@2"] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)), abs=1e-12)


def _fixture():
    if not FIXTURE.is_file():
        raise FileNotFoundError(f"{FIXTURE} is missing; run python tests/fixtures/make_metrics_fixture.py")
    return json.loads(FIXTURE.read_text())


def test_per_query_and_mean_equal_pytrec_eval():
    fx = _fixture()
    expected = fx["expected"]
    # "zero" scores judged queries without relevant documents as 0, as pytrec_eval does: every query and mean agrees
    got = per_query(fx["run"], fx["qrels"], fx["ks"], without_relevant="zero")
    assert set(got) == set(expected)
    for name, values in expected.items():
        assert set(got[name]) == set(values), name
        for qid, value in values.items():
            # 1e-9: both sum the same terms in the same rank order; only log2 implementations could differ
            assert got[name][qid] == pytest.approx(value, abs=1e-9), (name, qid)
    means = evaluate(fx["run"], fx["qrels"], fx["ks"], without_relevant="zero")
    for name, values in expected.items():
        assert means[name] == pytest.approx(sum(values.values()) / len(values), abs=1e-9), name
    assert means["queries"] == len(expected["ndcg@10"])


def test_queries_without_relevant_are_left_out_and_counted():
    fx = _fixture()
    expected = fx["expected"]
    relevant = {qid for qid, docs in fx["qrels"].items() if any(g > 0 for g in docs.values())}
    got = per_query(fx["run"], fx["qrels"], fx["ks"])
    assert set(got["ndcg@10"]) == relevant & set(fx["run"])
    for name, values in got.items():
        for qid, value in values.items():
            assert value == pytest.approx(expected[name][qid], abs=1e-9), (name, qid)
    means = evaluate(fx["run"], fx["qrels"], fx["ks"])
    without = len(expected["ndcg@10"]) - len(got["ndcg@10"])
    assert without > 0 and means["queries_without_relevant"] == without
    assert means["queries"] == len(got["ndcg@10"])
    assert means["queries_not_in_run"] == 1 and means["queries_not_in_qrels"] == 2  # q29 and q_unjudged
    assert means["p@10"] == pytest.approx(np.mean([expected["p@10"][q] for q in got["p@10"]]), abs=1e-12)


def test_tie_rule_is_score_then_document_id_descending():
    assert [d for d, _ in rank_documents({"a": 1.0, "b": 1.0, "c": 2.0})] == ["c", "b", "a"]
    assert [d for d, _ in rank_documents({"d10": 0.5, "d9": 0.5, "d100": 0.5})] == ["d9", "d100", "d10"]  # strcmp
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 2.0}, depth=2) == [("c", 2.0), ("b", 1.0)]
    # the tie decides the metric: the relevant "a" sits below the tied "b"
    got = evaluate({"q": {"a": 1.0, "b": 1.0}}, {"q": {"a": 1}}, ks=(1,), metrics=("mrr", "hit"))
    assert got["mrr@1"] == 0.0 and got["hit@1"] == 0.0


def test_trec_run_round_trip(tmp_path):
    run = {"q2": {"d9": 0.5, "d10": 0.5, "x": -1.25, "y": float(np.float32(0.1))},
           "q1": {"a": 1e-5, "b": 123456.789}}
    path = tmp_path / "run.trec"
    write_trec_run(path, run, tag="bm25")
    lines = path.read_text().splitlines()
    assert lines[:4] == ["q2 Q0 d9 1 0.5 bm25", "q2 Q0 d10 2 0.5 bm25",
                         f"q2 Q0 y 3 {float(np.float32(0.1))!r} bm25", "q2 Q0 x 4 -1.25 bm25"]
    assert read_trec_run(path) == run
    assert list(read_trec_run(path)) == ["q2", "q1"]


def test_write_rejects_ids_with_whitespace_and_keeps_old_file(tmp_path):
    path = tmp_path / "run.trec"
    write_trec_run(path, {"q": {"d": 1.0}}, tag="t")
    before = path.read_text()
    with pytest.raises(ValueError, match="no whitespace"):
        write_trec_run(path, {"q": {"d": 1.0}, "q2": {"two words": 1.0}}, tag="t")
    assert path.read_text() == before  # atomic: the failed write left the old file whole
    with pytest.raises(ValueError, match="tag"):
        write_trec_run(path, {"q": {"d": 1.0}}, tag="my run")


@pytest.mark.parametrize("bad, message", [
    ("q1 Q0 d3 3 0.2", "expected 6"),
    ("q1 Q0 d3 third 0.2 t", "'rank'"),
    ("q1 Q0 d3 3 high t", "'score'"),
    ("q1 Q0 d3 3 nan t", "NaN"),
    ("q1 Q0 d1 3 0.2 t", "appears twice"),
])
def test_malformed_trec_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 d1 1 0.9 t\n\nq1 Q0 d2 2 0.5 t\n" + bad + "\n")
    with pytest.raises(InputError, match=message) as err:
        read_trec_run(path)
    assert f"{path}:4:" in str(err.value)


def test_bad_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="cut-off"):
        evaluate(RUN, QRELS, ks=(0,))
    with pytest.raises(ValueError, match="choose from"):
        evaluate(RUN, QRELS, metrics=("ndcg", "bleu"))
    with pytest.raises(ValueError, match="same query ids"):
        evaluate({"other": {"a": 1.0}}, QRELS)
    with pytest.raises(ValueError, match="NaN"):
        evaluate({"q": {"a": float("nan")}}, QRELS)
    with pytest.raises(ValueError, match="without_relevant"):
        evaluate(RUN, QRELS, without_relevant="drop")


def test_bootstrap_contains_true_difference_and_is_seeded():
    rng = np.random.default_rng(7)
    b = rng.uniform(0.2, 0.8, size=300)
    noise = rng.normal(0.0, 0.1, size=300)
    a = b + 0.05 + (noise - noise.mean())  # the sample's mean difference is exactly the true 0.05
    ci = paired_bootstrap(a, b, n=5000, seed=3)
    assert ci["mean_difference"] == pytest.approx(0.05, abs=1e-12)
    assert ci["low"] < 0.05 < ci["high"]
    # the interval is about +-1.96 standard errors wide (0.1 / sqrt(300) = 0.00577)
    assert ci["high"] - ci["low"] == pytest.approx(2 * 1.96 * 0.1 / math.sqrt(300), rel=0.15)
    assert paired_bootstrap(a, b, n=5000, seed=3) == ci
    assert paired_bootstrap(a, b, n=5000, seed=4) != ci
    assert paired_bootstrap(b + 0.25, b, n=200)["low"] == pytest.approx(0.25)  # a constant difference has no spread
    with pytest.raises(ValueError, match="same query order"):
        paired_bootstrap(a, b[:-1])


def test_bootstrap_95_percent_interval_covers_about_95_percent():
    # 200 synthetic experiments with true mean difference 0.05: the 95% interval should cover it about 190 times;
    # 178..199 is the binomial(200, 0.95) central range at about 99.9%, widened a little for the percentile
    # bootstrap's known slight under-coverage at 100 queries
    rng = np.random.default_rng(13)
    covered = 0
    for trial in range(200):
        b = rng.uniform(0.0, 1.0, size=100)
        a = b + 0.05 + rng.normal(0.0, 0.2, size=100)
        ci = paired_bootstrap(a, b, n=1000, seed=trial)
        covered += ci["low"] <= 0.05 <= ci["high"]
    assert 178 <= covered <= 199


def test_randomisation_test():
    rng = np.random.default_rng(11)
    b = rng.uniform(0.0, 1.0, size=100)
    assert randomisation_test(b + 0.2 + rng.normal(0, 0.1, 100), b, n=2000) == pytest.approx(1 / 2001)
    assert randomisation_test(b, b.copy(), n=2000) == 1.0
    same_system = randomisation_test(rng.uniform(0.0, 1.0, size=100), b, n=2000, seed=5)
    assert same_system > 0.05
    assert randomisation_test(b + 0.01, b[::-1], seed=2) == randomisation_test(b + 0.01, b[::-1], seed=2)


def test_randomisation_test_matches_exact_enumeration():
    # with 10 queries all 2^10 sign assignments can be listed: the sampled p must approach the exact one
    d = np.array([0.3, -0.1, 0.25, 0.05, 0.2, -0.15, 0.4, 0.0, 0.1, -0.05])
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=d.size)))
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    sampled = randomisation_test(d, np.zeros_like(d), n=20000, seed=1)
    assert sampled == pytest.approx(exact, abs=0.01)  # Monte Carlo standard error here is about 0.002
