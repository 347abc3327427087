"""Tokenisation: ids equal the reference tokenizer's (fixture), truncation at the model's maximum, padding."""

import json

import pytest

from conftest import FIXTURES, require_model
from hnm.tokenize import Tokenizer
from hnm.weights import model_spec

REF = json.loads((FIXTURES / "encoder_reference.json").read_text())
MODELS = list(REF["models"])


@pytest.fixture(scope="module", params=MODELS)
def tok(request):
    name = request.param
    return name, Tokenizer.from_file(require_model(name) / "tokenizer.json", model_spec(name).max_length)


def test_single_ids_equal_reference(tok):
    name, t = tok
    assert [e.ids for e in t.encode(REF["texts"])] == REF["models"][name]["input_ids"]


def test_pair_ids_equal_reference_when_query_fits(tok):
    name, t = tok
    ref = REF["models"][name]
    encs = t.encode_pairs(REF["pairs"]["queries"], REF["pairs"]["documents"])
    assert [e.ids for e in encs] == ref["pair_input_ids"]
    if ref["pair_token_type_ids"] is not None:  # BERT has token types; MPNet's reference tokenizer returns none
        assert [e.type_ids for e in encs] == ref["pair_token_type_ids"]


def test_truncation_at_model_maximum_and_baked_in_128_is_off(tok):
    name, t = tok
    long = "word " * 1000
    assert len(t.encode([long])[0].ids) == model_spec(name).max_length  # not the 128 of tokenizer.json
    assert len(t.encode(["word " * 150])[0].ids) == 152  # under the maximum: untouched, [CLS] + 150 + [SEP]


def test_pair_cuts_document_first_then_query(tok):
    name, t = tok
    L = t.max_length
    q, d = "short query", "document " * 1000
    enc = t.encode_pairs([q], [d])[0]
    assert len(enc.ids) == L
    q_alone = t.encode_pairs([q], [""])[0]
    assert enc.ids[:len(q_alone.ids) - 1 - (t.specials_pair - 2)] == q_alone.ids[:len(q_alone.ids) - 1 - (t.specials_pair - 2)]
    # a query longer than the window is cut too, and the document keeps no tokens
    enc = t.encode_pairs(["query " * 1000], ["document"])[0]
    assert len(enc.ids) == L
    assert t.tok.token_to_id("document") not in enc.ids


def test_padding_to_longest_with_mask(tok):
    name, t = tok
    batch = t(["a", "a much longer text than the first one"])
    lengths = batch.attention_mask.sum(1).tolist()
    assert batch.input_ids.shape == (2, max(lengths))
    assert lengths[0] < lengths[1]
    assert (batch.input_ids[0, lengths[0]:] == t.pad_id).all()
    assert t.pad_id == (0 if name == "all-MiniLM-L6-v2" else 1)


def test_pairs_need_equal_lengths(tok):
    _, t = tok
    with pytest.raises(ValueError, match="2 queries but 1 documents"):
        t.pairs(["a", "b"], ["c"])
