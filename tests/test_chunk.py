"""Chunking: hand-worked windows, and seeded random texts whose chunks must cover every token, honour the stride and
the token budget, and map back to the text by their character offsets."""

import random
from bisect import bisect_left

import pytest

from conftest import require_model
from hnm.chunk import ChunkConfig, check_budget, chunk_spans, load_tokenizer, sentence_spans, token_windows
from hnm.errors import InputError
from hnm.tokenize import Tokenizer
from hnm.weights import model_spec

NAME = "all-MiniLM-L6-v2"
WORDS = ["the", "snapshot", "restores", "a", "volume", "in", "eu-west-2", "Café", "naïve", "東京", "straße",
         "antidisestablishmentarianism", "kst_live_4f9", "3.14", "(see", "below)", "“quoted”", "e.g.", "U.S.",
         "x\u200by", "\u00e9\u0301", "😀", "—", "&", "1,000", "API", "keys", "rotate"]
ENDS = [" ", " ", " ", "  ", "\t", ". ", "! ", "? ", ".\n", "\n", ", ", ".\u201d "]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(require_model(NAME) / "tokenizer.json", model_spec(NAME).max_length)


def random_text(rng: random.Random) -> str:
    words = [rng.choice(WORDS) + rng.choice(ENDS) for _ in range(rng.randint(1, 300))]
    return "".join(words).strip()


def token_starts(tok: Tokenizer, text: str):
    offsets = tok.tok.encode(text, add_special_tokens=False).offsets
    return offsets, [s for s, _ in offsets]


def tokens_in(starts, a: int, b: int) -> int:
    return bisect_left(starts, b) - bisect_left(starts, a)


def test_token_windows_worked_example():
    assert token_windows(9, 4, 3) == [(0, 4), (3, 7), (6, 9)]
    assert token_windows(8, 4, 4) == [(0, 4), (4, 8)]
    assert token_windows(3, 4, 3) == [(0, 3)]
    assert token_windows(0, 4, 3) == []


def test_sentence_spans_worked_example():
    text = "One. Two!\nThree  “Four?” Five e.g.3"
    assert [text[a:b] for a, b in sentence_spans(text)] == ["One.", "Two!", "Three  “Four?”", "Five e.g.3"]


def test_chunks_of_a_hand_checked_text(tok):
    text = "One two three. Four five six seven!\nEight nine ten eleven twelve thirteen fourteen. End."
    windows = chunk_spans(text, tok, ChunkConfig("tokens", max_tokens=6, stride=4))
    assert [text[a:b] for a, b in windows] == [
        "One two three. Four five", "Four five six seven!\nEight", "!\nEight nine ten eleven twelve",
        "eleven twelve thirteen fourteen. End", ". End."]
    packed = chunk_spans(text, tok, ChunkConfig("sentences", max_tokens=6, stride=4))
    assert [text[a:b] for a, b in packed] == [  # the 8-token sentence alone is cut into windows
        "One two three.", "Four five six seven!", "Eight nine ten eleven twelve thirteen",
        "twelve thirteen fourteen.", "End."]
    assert chunk_spans(text, tok, ChunkConfig("none")) == [(0, len(text))]


def test_token_windows_cover_every_token_and_honour_the_stride(tok):
    rng = random.Random(2024)
    for _ in range(150):
        text = random_text(rng)
        max_tokens = rng.randint(1, 40)
        stride = rng.randint(1, max_tokens)
        spans = chunk_spans(text, tok, ChunkConfig("tokens", max_tokens, stride))
        offsets, starts = token_starts(tok, text)
        n = len(offsets)
        assert len(spans) == len(token_windows(n, max_tokens, stride)) >= 1
        for i, (a, b) in enumerate(spans):
            assert 0 <= a < b <= len(text) and text[a:b] == text[a:b].strip()
            assert starts.index(a) == i * stride  # each window starts `stride` tokens after the one before
            assert tokens_in(starts, a, b) == min(max_tokens, n - i * stride)
        assert spans[0][0] == offsets[0][0] and spans[-1][1] == offsets[-1][1]  # from the first token to the last
        for (_, end), (start, _) in zip(spans, spans[1:]):  # no token falls between two windows
            assert start <= end or tokens_in(starts, end, start) == 0


def test_sentence_chunks_fit_the_budget_and_pack_greedily(tok):
    rng = random.Random(11)
    for _ in range(150):
        text = random_text(rng)
        config = ChunkConfig("sentences", max_tokens=rng.randint(4, 60))
        spans = chunk_spans(text, tok, config)
        offsets, starts = token_starts(tok, text)
        counts = [tokens_in(starts, a, b) for a, b in spans]
        assert all(0 < c <= config.max_tokens for c in counts)
        assert [a for a, _ in spans] == sorted(a for a, _ in spans)
        covered = [any(a <= s and e <= b for a, b in spans) for s, e in offsets]
        assert all(covered)  # every token is in some chunk
        sentences = sentence_spans(text)
        sizes = [tokens_in(starts, a, b) for a, b in sentences]
        if max(sizes) <= config.max_tokens:  # no sentence needs cutting: chunks are runs of whole sentences
            bounds = {a for a, _ in sentences}, {b for _, b in sentences}
            assert all(a in bounds[0] and b in bounds[1] for a, b in spans)
            for (_, b), count in zip(spans[:-1], counts):  # greedy: the next sentence would not have fitted
                nxt = next(i for i, (a, _) in enumerate(sentences) if a > b)
                assert count + sizes[nxt] > config.max_tokens


def test_config_is_validated():
    assert ChunkConfig(max_tokens=128).stride == 96  # a quarter of each window overlaps by default
    assert ChunkConfig(max_tokens=1).stride == 1
    with pytest.raises(ValueError, match="stride must be between 1 and max_tokens"):
        ChunkConfig(max_tokens=10, stride=11)
    with pytest.raises(ValueError, match="mode: must be one of none, tokens, sentences"):
        ChunkConfig(mode="paragraphs")
    with pytest.raises(ValueError, match="at least 1"):
        ChunkConfig(max_tokens=0)


def test_budget_is_the_models_maximum_less_its_special_tokens(tok):
    check_budget(tok, ChunkConfig(max_tokens=254))
    with pytest.raises(InputError, match="max_tokens 255 is more than the model takes: 256 tokens, 2 of them"):
        check_budget(tok, ChunkConfig(max_tokens=255))
    check_budget(tok, ChunkConfig(mode="none", max_tokens=1000))


def test_load_tokenizer_by_name_or_path():
    path = require_model(NAME) / "tokenizer.json"
    assert load_tokenizer(NAME).max_length == model_spec(NAME).max_length
    assert load_tokenizer(str(path)).tok.encode("Hello world", add_special_tokens=False).tokens == ["hello", "world"]
