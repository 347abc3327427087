"""Pseudo-queries cut from the corpus: each kind by hand, and rows in miner.py's format with BM25's negatives."""

import numpy as np
import pytest

from hnm.pseudo import PseudoConfig, crop_query, ict_pair, pseudo_queries, pseudo_rows, sentences, title_query

CORPUS = {
    "d1": {"title": "wing flow separation", "text": "The wing stalls. Flow separates from its upper surface early."},
    "d2": {"title": "heat transfer in pipes", "text": "Heat moves through pipe walls."},
    "d3": {"title": "wing flutter at speed", "text": "Flutter of a wing at high speed."},
    "d4": {"title": "boundary layer flow", "text": "Flow near a wall forms a layer."},
}


def test_sentences_split_at_end_marks_followed_by_space():
    assert sentences("A b. C d! E") == ["A b.", "C d!", "E"]
    assert sentences("v1.5 is out") == ["v1.5 is out"]  # no space after the point: one sentence


def test_title_query_needs_three_words_and_a_body():
    assert title_query(CORPUS["d1"]) == "wing flow separation"
    assert title_query({"title": "wing flow", "text": "x"}) is None
    assert title_query({"title": "wing flow separation", "text": " "}) is None


def test_ict_takes_a_long_enough_sentence_out_of_its_context():
    text = CORPUS["d1"]["text"]
    # the first sentence has 3 words, below min_words 4: the query can only be the second
    query, context = ict_pair(text, np.random.default_rng(0), keep=0.0, min_words=4)
    assert (query, context) == ("Flow separates from its upper surface early.", "The wing stalls.")
    assert ict_pair(text, np.random.default_rng(0), keep=1.0, min_words=4)[1] == text  # kept whole
    assert ict_pair("One sentence only here.", np.random.default_rng(0), 0.0, 1) is None


def test_crop_is_a_contiguous_span_of_the_drawn_length():
    text = "a b c d e"
    windows = {"a b c", "b c d", "c d e"}
    seen = {crop_query(text, np.random.default_rng(s), (3, 3)) for s in range(20)}
    assert seen == windows  # every window of three words is drawn, nothing else
    assert crop_query("a b", np.random.default_rng(0), (3, 5)) == "a b"  # no longer than the text
    assert crop_query("", np.random.default_rng(0), (3, 5)) is None


def test_pseudo_queries_one_per_document_seeded():
    queries, positives = pseudo_queries(CORPUS, PseudoConfig(kind="title", n_queries=3, seed=1))
    assert len(queries) == 3 and all(q.startswith("pseudo-title-") for q in queries)
    for qid, text in queries.items():
        doc = CORPUS[qid.split("-", 2)[2]]
        assert text == doc["title"] and positives[qid] == doc["text"]
    assert pseudo_queries(CORPUS, PseudoConfig(kind="title", n_queries=3, seed=1)) == (queries, positives)
    mixed, _ = pseudo_queries(CORPUS, PseudoConfig(kind="mixed", n_queries=10, seed=0))
    assert len(mixed) == 4  # every document once; d2, d3 and d4 have one sentence each: title or crop only
    assert not any(q.startswith("pseudo-ict-") for q in mixed if not q.endswith("d1"))


def test_pseudo_rows_are_mined_rows_with_bm25_negatives():
    rows = pseudo_rows(CORPUS, PseudoConfig(kind="title", n_queries=4, num_negatives=2, random_share=0.0),
                       quiet=True)
    by_doc = {r["positive_ids"][0]: r for r in rows}
    assert set(by_doc) == set(CORPUS)
    d1 = by_doc["d1"]
    assert d1["query_id"] == "pseudo-title-d1" and d1["query"] == "wing flow separation"
    assert d1["positives"] == [CORPUS["d1"]["text"]]
    # "wing flow separation": BM25 finds "wing" in d3 and "flow" in d4 only (d2 shares no word), so those two
    assert set(d1["negative_ids"]) == {"d3", "d4"}
    assert d1["negatives"] == [f"{CORPUS[d]['title']} {CORPUS[d]['text']}" for d in d1["negative_ids"]]
    assert d1["source"] == "pseudo bm25"


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="kind"):
        PseudoConfig(kind="generated")
    with pytest.raises(ValueError, match="crop_words"):
        PseudoConfig(crop_words=(5, 2))
