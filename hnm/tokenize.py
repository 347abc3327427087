"""Tokenisation with the `tokenizers` library from a model's own `tokenizer.json`.

The upstream files of both starting models have padding and truncation baked in at 128 tokens; both are switched off
here, texts are cut at the model's own maximum (special tokens included), and a batch is padded to its longest text.

    tok = Tokenizer.from_file("tokenizer.json", max_length=256)
    batch = tok(["a short text", "another"])            # input_ids, attention_mask, token_type_ids: (B, T) int64
    pairs = tok.pairs(["a query"], ["its document"])     # [CLS] query [SEP] document [SEP], token types 0 / 1

For a (query, document) pair that does not fit, the document is cut first, and the query only if it alone is too
long. This differs from the `longest_first` rule of Hugging Face tokenisers on purpose: a re-ranker's query is short
and carries the intent, so its tokens are the last to go.

Not here: the vocabulary or the WordPiece algorithm (the `tokenizers` library does that), and prefixes (embed.py).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import torch
from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer

from hnm.errors import InputError


@dataclass
class Batch:
    """Token tensors of one padded batch; every field is (B, T) int64."""
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def parse_tokenizer(text: str, source) -> HFTokenizer:
    """The tokenizers library's tokenizer of a tokenizer.json's text; one it cannot read (cut short, empty, not a
    tokenizer) raises InputError naming `source`."""
    try:
        return HFTokenizer.from_str(text)
    except Exception as e:  # the library raises a bare Exception for every malformed file, nothing narrower
        raise InputError(f"{source}: not a tokenizer the tokenizers library can read ({e})") from None


class Tokenizer:
    def __init__(self, tokenizer: HFTokenizer, max_length: int):
        self.pad_id = self._pad_id(tokenizer)  # read before the baked-in padding, which names it, is switched off
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tok = tokenizer
        self.max_length = max_length
        self.specials_single = tokenizer.num_special_tokens_to_add(is_pair=False)
        self.specials_pair = tokenizer.num_special_tokens_to_add(is_pair=True)

    @classmethod
    def from_file(cls, path: Path, max_length: int) -> "Tokenizer":
        return cls(parse_tokenizer(Path(path).read_text(encoding="utf-8"), path), max_length)

    @staticmethod
    def _pad_id(tokenizer: HFTokenizer) -> int:
        """The id of the padding token: BERT's [PAD] is 0, MPNet's <pad> is 1.

        The file's own padding setting names it; without one, [PAD] then <pad> are looked up. (MPNet's vocabulary
        also holds a "[PAD]", id 4, that the model never saw as padding, so the order matters.)
        """
        if tokenizer.padding is not None:
            return tokenizer.padding["pad_id"]
        for token in ("[PAD]", "<pad>"):
            token_id = tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        raise ValueError("the tokenizer has neither a [PAD] nor a <pad> token")

    def encode(self, texts: Sequence[str]) -> List[Encoding]:
        """Unpadded encodings of single texts, each cut to max_length tokens (special tokens included)."""
        encodings = self.tok.encode_batch(list(texts), add_special_tokens=False)
        budget = self.max_length - self.specials_single
        for e in encodings:
            e.truncate(budget)
        return [self.tok.post_process(e, add_special_tokens=True) for e in encodings]

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> List[Encoding]:
        """Unpadded encodings of (query, document) pairs; the document is cut first, then the query."""
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
        qs = self.tok.encode_batch(list(queries), add_special_tokens=False)
        ds = self.tok.encode_batch(list(documents), add_special_tokens=False)
        budget = self.max_length - self.specials_pair
        out = []
        for q, d in zip(qs, ds):
            q.truncate(min(len(q.ids), budget))
            d.truncate(budget - len(q.ids))
            out.append(self.tok.post_process(q, d, add_special_tokens=True))
        return out

    def pad(self, encodings: Sequence[Encoding]) -> Batch:
        """Stack encodings into (B, T) tensors, T being the longest of them; padding is masked out."""
        T = max(len(e.ids) for e in encodings)
        ids = torch.full((len(encodings), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encodings), T), dtype=torch.long)
        types = torch.zeros((len(encodings), T), dtype=torch.long)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n] = torch.tensor(e.ids)
            mask[i, :n] = 1
            types[i, :n] = torch.tensor(e.type_ids)
        return Batch(ids, mask, types)

    def __call__(self, texts: Sequence[str]) -> Batch:
        return self.pad(self.encode(texts))

    def pairs(self, queries: Sequence[str], documents: Sequence[str]) -> Batch:
        return self.pad(self.encode_pairs(queries, documents))
