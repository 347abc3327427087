"""hnm.bm25: hand-worked scores, equality with bm25s (stored fixture), save/load, the `bm25` verb.
SciFact quality with the defaults is in tests/shared/, outside the default run."""

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hnm.__main__ import main
from hnm.bm25 import VARIANTS, Analyser, BM25Config, BM25Index
from hnm.errors import InputError
from hnm.metrics import read_trec_run

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# N = 3 documents, lengths 3, 2, 4, so Lavg = 3; k1 = 1.5, b = 0.75, delta = 0.5 (BM25Config's defaults)
TINY = [["a", "b", "a"], ["b", "c"], ["c", "c", "c", "d"]]
TINY_IDS = ["d0", "d1", "d2"]
# k1 (1 - b + b L/Lavg) for each document: 1.5 (0.25 + 0.75 * [1, 2/3, 4/3]) = 1.5, 1.125, 1.875
# query ["a", "c"]: "a" is in d0 only (df 1, tf 2), "c" in d1 (tf 1) and d2 (tf 3), df 2
HAND_WORKED = {
    # idf log(1 + (N - df + 0.5) / (df + 0.5)): a log(1 + 2.5/1.5) = log(8/3), c log(1 + 1.5/2.5) = log(1.6)
    # tf / (tf + norm): d0 2 / 3.5 = 4/7, d1 1 / 2.125 = 8/17, d2 3 / 4.875 = 8/13
    "lucene": [math.log(8 / 3) * 4 / 7, math.log(1.6) * 8 / 17, math.log(1.6) * 8 / 13],
    # idf log((N - df + 0.5) / (df + 0.5)): a log(2.5/1.5) = log(5/3); c log(1.5/2.5) < 0, floored at 0
    "robertson": [math.log(5 / 3) * 4 / 7, 0.0, 0.0],
    # idf log(N / df): a log 3, c log 1.5; tf weight (k1 + 1) = 2.5 times Lucene's: 10/7, 20/17, 20/13
    "atire": [math.log(3) * 10 / 7, math.log(1.5) * 20 / 17, math.log(1.5) * 20 / 13],
}
# query ["a"] alone, where delta shows: d1 and d2 lack "a" and still get idf * tf_weight(0)
HAND_WORKED_DELTA = {
    # idf log((N + 1) / df) = log 4; d0: 2.5 * 2 / (2 + 1.5) + 0.5 = 10/7 + 1/2; absent: 0 + 0.5
    "bm25+": [math.log(4) * (10 / 7 + 0.5), math.log(4) * 0.5, math.log(4) * 0.5],
    # idf log((N + 1) / (df + 0.5)) = log(8/3); d0: c = 2 / (0.25 + 0.75) = 2, 2.5 (2 + 0.5) / (1.5 + 2 + 0.5) = 25/16;
    # absent: c = 0, 2.5 * 0.5 / 2 = 5/8
    "bm25l": [math.log(8 / 3) * 25 / 16, math.log(8 / 3) * 5 / 8, math.log(8 / 3) * 5 / 8],
}


def test_analyser_lowercases_splits_drops_stop_words_and_stems():
    analyse = Analyser()
    assert analyse("The Running of the dogs") == ["run", "dog"]
    # Unicode words stay whole; one-character words ("T") go; digits and underscores are word characters
    assert analyse("Naïve T-cells: α1-antitrypsin and IL_6 in 2020.") == [
        "naïv", "cell", "α1", "antitrypsin", "il_6", "2020"]
    assert Analyser(stopwords=False, stem=False)("The Running of the dogs") == ["the", "running", "of", "the", "dogs"]


@pytest.mark.parametrize("variant", sorted(HAND_WORKED))
def test_hand_worked_scores(variant):
    index = BM25Index.build(TINY, TINY_IDS, BM25Config(variant=variant))
    # float32 storage of each (term, document) weight: about 6e-8 relative, so 1e-6 is ample
    np.testing.assert_allclose(index.scores([["a", "c"]])[0], HAND_WORKED[variant], rtol=1e-6)


@pytest.mark.parametrize("variant", sorted(HAND_WORKED_DELTA))
def test_hand_worked_scores_with_delta(variant):
    index = BM25Index.build(TINY, TINY_IDS, BM25Config(variant=variant))
    np.testing.assert_allclose(index.scores([["a"]])[0], HAND_WORKED_DELTA[variant], rtol=1e-6)
    top_index, top_score = index.search([["a"]], k=3)
    # the constant weight(0) is added to the top k too; d1 and d2 tie and keep document order
    assert top_index.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(top_score[0], HAND_WORKED_DELTA[variant], rtol=1e-6)


def test_scores_equal_bm25s_for_every_variant():
    with gzip.open(FIXTURES / "bm25s_scifact.json.gz", "rt", encoding="utf-8") as f:
        fixture = json.load(f)
    assert {s["variant"] for s in fixture["settings"]} == set(VARIANTS)
    for setting in fixture["settings"]:
        config = BM25Config(variant=setting["variant"], k1=setting["k1"], b=setting["b"], delta=setting["delta"])
        index = BM25Index.build(fixture["documents"], fixture["doc_ids"], config)
        ours = index.scores(fixture["queries"])
        theirs = np.array(setting["scores"])
        # bm25s sums float32 weights in float32, we sum the same float32 weights in float64: the scores differ by
        # float32 rounding (about 2e-7 relative here); documents without a query term are exactly 0 on both sides
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=0, err_msg=str(config))
        # search returns the best of those scores, best first
        top_index, top_score = index.search(fixture["queries"], k=10)
        np.testing.assert_array_equal(top_score, -np.sort(-ours, axis=1)[:, :10])
        np.testing.assert_array_equal(np.take_along_axis(ours, top_index, axis=1), top_score)


def test_repeated_query_terms_count_again_and_unknown_terms_add_nothing():
    index = BM25Index.build(TINY, TINY_IDS)
    once, twice, unknown = index.scores([["a"], ["a", "a", "zz"], ["zz"]])
    np.testing.assert_allclose(twice, 2 * once)
    assert not unknown.any()


def test_search_caps_k_and_breaks_ties_by_document_order():
    index = BM25Index.build([["x", "y"], ["z", "w"], ["x", "y"]], ["p", "q", "r"])
    top_index, top_score = index.search([["x"], []], k=10)
    assert top_index.tolist() == [[0, 2, 1], [0, 1, 2]]
    assert top_score[0, 0] == top_score[0, 1] > 0 == top_score[0, 2]
    assert not top_score[1].any()
    with pytest.raises(ValueError, match="at least 1"):
        index.search([["x"]], k=0)


def test_bad_configuration_and_input_raise():
    with pytest.raises(ValueError, match="variant: must be one of robertson, lucene"):
        BM25Config(variant="okapi")
    with pytest.raises(ValueError, match="b: must be at most 1, not 1.5"):
        BM25Config(b=1.5)
    with pytest.raises(ValueError, match="nothing to index"):
        BM25Index.build([[], []], ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        BM25Index.build([["x"], ["y"]], ["a", "a"])


def test_save_load_round_trip(tmp_path):
    index = BM25Index.build(TINY, TINY_IDS, BM25Config(variant="bm25l", k1=1.2, b=0.5, delta=0.7, stem=False))
    index.save(tmp_path / "idx")
    loaded = BM25Index.load(tmp_path / "idx")
    assert loaded.config == index.config and loaded.terms == index.terms and loaded.doc_ids == index.doc_ids
    for name in ("indptr", "doc_index", "score", "absent"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))
        assert getattr(loaded, name).dtype == getattr(index, name).dtype
    queries = [["a", "c"], ["b"], ["d", "a", "a"]]
    np.testing.assert_array_equal(loaded.scores(queries), index.scores(queries))
    assert loaded.run({"q": "a c"}, k=2) == index.run({"q": "a c"}, k=2)

    meta = json.loads((tmp_path / "idx" / "bm25.json").read_text())
    (tmp_path / "idx" / "bm25.json").write_text(json.dumps({**meta, "terms": meta["terms"][:-1]}))
    with pytest.raises(InputError, match="does not fit"):
        BM25Index.load(tmp_path / "idx")
    with pytest.raises(FileNotFoundError, match="bm25.json"):
        BM25Index.load(tmp_path / "nothing")


def test_cli_help_lists_the_flags_with_bm25configs_defaults():
    out = subprocess.run([sys.executable, "-m", "hnm", "bm25", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout
    defaults = BM25Config()
    for flag in ("--data", "--split", "--variant", "--k1", "--b", "--delta", "--top-k", "--output", "--quiet"):
        assert flag in out
    for text in (f"default {defaults.variant}", f"default {defaults.k1}", f"default {defaults.b}",
                 f"default {defaults.delta}"):
        assert text in " ".join(out.split()), text
    assert "{" + ",".join(VARIANTS) + "}" in out


def _tiny_beir(folder: Path) -> Path:
    folder.mkdir()
    docs = [("d1", "Solar power", "Photovoltaic cells turn sunlight into electricity."),
            ("d2", "Wind power", "Turbines turn the wind into electricity."),
            ("d3", "Cooking", "Bread needs flour, water, salt and yeast."),
            ("d4", "Gardening", "Tomatoes need sunlight and water.")]
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    (folder / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "wind turbines"}) + "\n" + json.dumps({"_id": "q2", "text": "bread yeast"})
        + "\n" + json.dumps({"_id": "q3", "text": "unjudged query"}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\t1\n")
    return folder


def test_cli_writes_a_trec_run_and_prints_metrics(tmp_path, monkeypatch, capsys):
    data = _tiny_beir(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    assert main(["bm25", "--data", str(data), "--top-k", "3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "ndcg@10    1.0000" in printed and "mrr@10     1.0000" in printed

    path = tmp_path / "bm25.tiny.test.trec"  # the default name
    lines = [line.split() for line in path.read_text().splitlines()]
    assert [(q, rank) for q, _, _, rank, _, _ in lines] == [("q1", "1"), ("q1", "2"), ("q1", "3"),
                                                             ("q2", "1"), ("q2", "2"), ("q2", "3")]
    assert all(f[1] == "Q0" and f[5] == "hnm-bm25-lucene" for f in lines)
    run = read_trec_run(path)
    assert max(run["q1"], key=run["q1"].get) == "d2" and max(run["q2"], key=run["q2"].get) == "d3"

    assert main(["bm25", "--data", str(data), "--variant", "bm25+", "--output", str(tmp_path / "r.trec"),
                 "--quiet"]) == 0
    assert {f.split()[5] for f in (tmp_path / "r.trec").read_text().splitlines()} == {"hnm-bm25-bm25+"}
    assert main(["bm25", "--data", str(data), "--b", "2", "--quiet"]) == 2
    assert "hnm bm25: error: --b: must be at most 1, not 2\n" == capsys.readouterr().err
