"""The device feed: pairs from stored token ids equal the tokenizer's own (both models), the prefetching thread
keeps order and passes errors on, bucketing regroups without losing an example, and re-ranking through the feed
gives the scores of the plain loop bit for bit."""

import json
import threading

import numpy as np
import pytest
import torch

from conftest import FIXTURES, require_model
from hnm.encoder import EncoderConfig
from hnm.feed import Prefetch, TokenStore, bucket_order, pair_template, sorted_batches
from hnm.reranker import CrossEncoder
from hnm.tokenize import Tokenizer

QUERIES = ["what is a cell?", "", "word " * 80, "Ünïcödé and émojis 🙂", "short"]
DOCS = ["a cell is the unit of life. " * 20, "nothing", "", "another document about cells", "x" * 500]


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
@pytest.mark.parametrize("max_length", [8, 64, 512])
def test_pairs_from_stored_ids_equal_the_tokenizers(model, max_length):
    tok = Tokenizer.from_file(require_model(model) / "tokenizer.json", max_length)
    store = TokenStore(tok, QUERIES + DOCS)
    queries, docs = QUERIES * 5, [d for d in DOCS for _ in range(5)]  # every query with every document
    a, b = tok.pairs(queries, docs), store.pairs(queries, docs)
    for x, y in ((a.input_ids, b.input_ids), (a.attention_mask, b.attention_mask),
                 (a.token_type_ids, b.token_type_ids)):
        assert torch.equal(x, y)
    assert np.array_equal(store.pair_lengths(queries, docs), a.attention_mask.sum(1).numpy())


def test_pair_template_by_hand():
    tok = Tokenizer.from_file(require_model("all-MiniLM-L6-v2") / "tokenizer.json", 128)
    assert pair_template(tok) == (([101], [0]), ([102], [0]), ([102], [1]), (0, 1))  # [CLS] q [SEP] d [SEP]


def test_prefetch_keeps_order_and_raises_at_the_failing_key():
    assert [x for x, _ in Prefetch(lambda k: k * k, range(7), depth=2)] == [0, 1, 4, 9, 16, 25, 36]

    def make(k):
        if k == 3:
            raise ValueError("bad key 3")
        return k
    feed = Prefetch(make, range(10))
    got = [next(feed)[0] for _ in range(3)]
    with pytest.raises(ValueError, match="bad key 3"):
        next(feed)
    assert got == [0, 1, 2]
    early = Prefetch(lambda k: k, range(1000), depth=1)
    next(early)
    early.close()  # a consumer that leaves early does not leave the thread hanging
    assert not any(t.name == "hnm-feed" and t.is_alive() for t in threading.enumerate())


def test_bucket_order_regroups_by_length():
    lengths = np.array([5, 1, 7, 2, 8, 3, 6, 4])
    out = bucket_order(np.arange(8), lengths, group=2, window=4, rng=np.random.default_rng(0))
    assert sorted(out.tolist()) == list(range(8))
    groups = {tuple(out[i:i + 2].tolist()) for i in range(0, 8, 2)}
    assert groups == {(4, 2), (6, 0), (7, 5), (3, 1)}  # longest first, two by two
    assert [b.tolist() for b in sorted_batches(np.array([3, 9, 5]), 2)] == [[1, 2], [0]]


def test_rerank_feed_scores_equal_the_text_feed():
    golden = json.loads((FIXTURES / "train_golden.json").read_text())
    cfg = EncoderConfig(**golden["encoder"])
    model = CrossEncoder.random(cfg, require_model("all-MiniLM-L6-v2") / "tokenizer.json", max_length=48, std=0.2)
    queries, docs = QUERIES * 5, [d for d in DOCS for _ in range(5)]
    timings = {}
    tokens = model.score(queries, docs, batch_size=4, feed="tokens", timings=timings)
    assert np.array_equal(tokens, model.score(queries, docs, batch_size=4, feed="text"))
    assert len(set(tokens.tolist())) > 10  # the pairs score differently: equality is not a coincidence
    assert 0 < timings["host_seconds"] <= timings["seconds"]
