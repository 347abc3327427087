"""Chunking a document into passages by the model's own tokenizer, each passage a span of the document's text.

Two ways, chosen by `ChunkConfig.mode`:

- "tokens": windows of `max_tokens` tokens whose starts are `stride` tokens apart (the overlap is max_tokens - stride),
  the last window ending at the last token. With max_tokens=4, stride=3 the tokens t0..t8 become
  [t0 t1 t2 t3] [t3 t4 t5 t6] [t6 t7 t8]. A window may start or end inside a word.
- "sentences": the text is cut into sentences (after . ! ? followed by white space, and at every line break, which
  the cleaner puts between blocks), and consecutive sentences are packed greedily while their tokens fit in
  `max_tokens`; a sentence longer than that on its own is cut into token windows as above.

Every chunk is a (start, end) pair of character offsets into the document, taken from the tokenizer's offsets, so
`text[start:end]` is the chunk, word for word, and a hit can be traced back to its page. Tokens are counted without
special tokens; `check_budget` refuses a `max_tokens` the model cannot take ([CLS] and [SEP] included).

Not here: semantic chunking by embedding similarity, and headings carried into the chunks below them.
"""

import re
from pathlib import Path
from typing import List, Sequence, Tuple

from hnm.config import ChunkConfig
from hnm.errors import InputError
from hnm.tokenize import Tokenizer

Span = Tuple[int, int]  # (start, end) character offsets, end exclusive

_SENTENCE_END = re.compile(r"""[.!?]+["'\u201d\u2019)\]]*\s+|\n""")


def load_tokenizer(model: str) -> Tokenizer:
    """A model name from weights.lock (its tokenizer.json, fetched if need be), or a path to a tokenizer.json.

    A bare tokenizer.json carries no model maximum, so its budget is not checked.
    """
    path = Path(model)
    if path.is_file():
        return Tokenizer.from_file(path, max_length=1 << 30)
    from hnm import weights
    spec = weights.model_spec(model)
    return Tokenizer.from_file(weights.fetch(model, quiet=True) / "tokenizer.json", spec.max_length)


def check_budget(tokenizer: Tokenizer, config: ChunkConfig) -> None:
    """Raise InputError when chunks of config.max_tokens would be cut by the model's own maximum length."""
    budget = tokenizer.max_length - tokenizer.specials_single
    if config.mode != "none" and config.max_tokens > budget:
        raise InputError(f"max_tokens {config.max_tokens} is more than the model takes: {tokenizer.max_length} "
                         f"tokens, {tokenizer.specials_single} of them special, leave {budget}")


def token_windows(n: int, max_tokens: int, stride: int) -> List[Tuple[int, int]]:
    """Token index ranges [first, last) of the windows over n tokens.

    n=9, max_tokens=4, stride=3 -> [(0, 4), (3, 7), (6, 9)]; n=0 -> [].
    """
    windows = []
    start = 0
    while start < n:
        end = min(start + max_tokens, n)
        windows.append((start, end))
        if end == n:
            break
        start += stride
    return windows


def sentence_spans(text: str) -> List[Span]:
    """Sentences as character spans, without the white space between them.

    'One. Two!\\nThree' -> [(0, 4), (5, 9), (10, 15)].
    """
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    trimmed = []
    for a, b in spans:
        piece = text[a:b]
        a, b = a + len(piece) - len(piece.lstrip()), b - (len(piece) - len(piece.rstrip()))
        if a < b:
            trimmed.append((a, b))
    return trimmed


def _windows_to_spans(offsets: Sequence[Span], windows: Sequence[Tuple[int, int]], base: int = 0) -> List[Span]:
    """Token ranges (relative to offsets[base]) -> character spans from the first token's start to the last's end."""
    return [(offsets[base + i][0], offsets[base + j - 1][1]) for i, j in windows]


def _pack_sentences(text: str, offsets: Sequence[Span], config: ChunkConfig) -> List[Span]:
    """Greedy packing of whole sentences up to max_tokens; an over-long sentence becomes token windows."""
    chunks: List[Span] = []
    group: List[Span] = []  # the sentences of the chunk being built
    used = 0  # their tokens
    t = 0  # index of the first token not yet given to a sentence
    for a, b in sentence_spans(text):
        first = t
        while t < len(offsets) and offsets[t][0] < b:  # tokens that start inside this sentence belong to it
            t += 1
        count = t - first
        if group and used + count > config.max_tokens:
            chunks.append((group[0][0], group[-1][1]))
            group, used = [], 0
        if count > config.max_tokens:
            chunks += _windows_to_spans(offsets, token_windows(count, config.max_tokens, config.stride), first)
            continue
        group.append((a, b))
        used += count
    if group:
        chunks.append((group[0][0], group[-1][1]))
    return chunks


def chunk_spans(text: str, tokenizer: Tokenizer, config: ChunkConfig) -> List[Span]:
    """The chunks of `text` as character spans, in order; mode "none" gives the whole text."""
    if config.mode == "none":
        return [(0, len(text))] if text else []
    offsets = tokenizer.tok.encode(text, add_special_tokens=False).offsets
    if config.mode == "tokens":
        return _windows_to_spans(offsets, token_windows(len(offsets), config.max_tokens, config.stride))
    return _pack_sentences(text, offsets, config)
