"""Training rows without labels: pseudo-queries cut from the corpus itself, each with its document as the positive and
negatives mined for it, for a first round of in-domain training before a few labelled queries.

    rows = pseudo_rows(corpus, PseudoConfig(n_queries=5000))      # rows in miner.py's format
    write_jsonl("pseudo.jsonl", rows)   # then: hnm train --rows pseudo.jsonl, and train on the labels from its last/

Three kinds of pseudo-query, from the self-supervised retrieval literature, none of which needs a generator:
- `title`: the document's title asks for its body, the text without the title (the body-first-order and
           title-body pairs of Chang et al. 2020, arXiv 2002.03932);
- `ict`:   the inverse cloze task (Lee, Chang & Toutanova 2019, arXiv 1906.00300): one sentence is the query and the
           document without that sentence is the positive (kept whole in `ict_keep` of the pairs, as they do, so
           that word overlap still counts for something);
- `crop`:  a random span of `crop_words` words (Izacard et al. 2021, Contriever, arXiv 2112.09118, crop both sides
           of a pair from one document; a cross-encoder's query is short, so the span is a query's length) and the
           document as the positive.
`mixed` draws the kind of each pair at random among those the document allows (a title needs one of at least 3
words, ICT two sentences). The documents are a seeded sample of the corpus without replacement (all of it, in a
seeded order, when it has fewer than `n_queries` usable documents).

Negatives are mined for the pseudo-queries as for judged ones: miner.run with `strategy` (bm25 by default, cheap
on any corpus; ensemble as the paper mines), `num_negatives` a query of which `random_share` uniformly drawn, the
source document the only positive. For an ICT pair the positive's text is then replaced by the document without
the sentence. Pseudo-query ids are "pseudo-<kind>-<doc id>".

Not here: generated queries (docT5query, InPars: they need a generator model), training itself (train.py).
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from hnm.data import document_text, read_jsonl
from hnm.embed import EmbedConfig
from hnm.negatives import MineConfig

KINDS = ("title", "ict", "crop", "mixed")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class PseudoConfig:
    kind: str = "mixed"  # title, ict, crop, or mixed (each pair's kind drawn among those its document allows)
    n_queries: int = 5000  # pseudo-queries, one a document at most
    crop_words: Tuple[int, int] = (6, 16)  # a crop's length in words, drawn uniformly in [low, high]
    ict_keep: float = 0.1  # share of ICT pairs whose positive keeps the query sentence (Lee et al. 2019: 0.1)
    min_sentence_words: int = 4  # an ICT query sentence has at least this many words
    strategy: str = "bm25"  # how the negatives are mined (miner.py): bm25, ensemble, dense, random
    models: str = MineConfig.models  # the ensemble, for strategy ensemble or dense
    num_negatives: int = 15
    random_share: float = 0.25
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"pseudo-query kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.n_queries < 1 or not 1 <= self.crop_words[0] <= self.crop_words[1]:
            raise ValueError("need n_queries >= 1 and 1 <= crop_words[0] <= crop_words[1]")
        if not 0.0 <= self.ict_keep <= 1.0:
            raise ValueError(f"ict_keep is a share in [0, 1], not {self.ict_keep}")


def sentences(text: str) -> List[str]:
    """Split at ., ! or ? followed by white space. "A b. C d! E" -> ["A b.", "C d!", "E"]."""
    return [s for s in SENTENCE_END.split(text.strip()) if s]


def title_query(doc: dict) -> Optional[str]:
    """The title, when it has at least 3 words and the document has a text besides; else None."""
    title = (doc.get("title") or "").strip()
    return title if len(title.split()) >= 3 and (doc.get("text") or "").strip() else None


def ict_pair(text: str, rng: np.random.Generator, keep: float, min_words: int) -> Optional[Tuple[str, str]]:
    """(a sentence of at least min_words words, the text without it or, with probability `keep`, whole); None for a
    text of fewer than two sentences or without such a sentence."""
    parts = sentences(text)
    usable = [i for i, s in enumerate(parts) if len(s.split()) >= min_words]
    if len(parts) < 2 or not usable:
        return None
    i = usable[int(rng.integers(len(usable)))]
    context = text.strip() if rng.random() < keep else " ".join(parts[:i] + parts[i + 1:])
    return parts[i], context


def crop_query(text: str, rng: np.random.Generator, words: Tuple[int, int]) -> Optional[str]:
    """A random span of n words, n uniform in [words[0], words[1]] (at most the text's length); None for an empty
    text."""
    tokens = text.split()
    if not tokens:
        return None
    n = min(len(tokens), int(rng.integers(words[0], words[1] + 1)))
    start = int(rng.integers(len(tokens) - n + 1))
    return " ".join(tokens[start:start + n])


def _pair(kind: str, doc: dict, rng: np.random.Generator, cfg: PseudoConfig) -> Optional[Tuple[str, str]]:
    """(query, positive text) of one kind for a document, or None where the document does not allow it."""
    text = (doc.get("text") or "").strip()
    if kind == "ict":
        return ict_pair(text, rng, cfg.ict_keep, cfg.min_sentence_words)
    if kind == "title":  # the body alone: with its title in it the positive would repeat the query word for word
        query = title_query(doc)
        return (query, text) if query else None
    query = crop_query(text, rng, cfg.crop_words)
    return (query, document_text(doc)) if query else None


def pseudo_queries(corpus: Dict[str, dict], cfg: PseudoConfig) -> Tuple[Dict[str, str], Dict[str, str]]:
    """({pseudo-query id: query text}, {pseudo-query id: its positive's text}) for up to n_queries documents."""
    rng = np.random.default_rng(cfg.seed)
    doc_ids = list(corpus)
    queries, positives = {}, {}
    for j in rng.permutation(len(doc_ids)):
        if len(queries) == cfg.n_queries:
            break
        kinds = [cfg.kind] if cfg.kind != "mixed" else [KINDS[k] for k in rng.permutation(3)]
        for kind in kinds:  # mixed: the first kind, in a random order, that this document allows
            pair = _pair(kind, corpus[doc_ids[j]], rng, cfg)
            if pair:
                qid = f"pseudo-{kind}-{doc_ids[j]}"
                queries[qid], positives[qid] = pair
                break
    return queries, positives


def pseudo_rows(corpus: Dict[str, dict], cfg: PseudoConfig = PseudoConfig(), embed_cfg: EmbedConfig = EmbedConfig(),
                quiet: bool = False) -> List[dict]:
    """Rows in miner.py's format for the pseudo-queries of `corpus`: each its source document as the one positive
    (the ICT context as its text) and negatives mined by cfg.strategy."""
    from hnm.miner import run as mine
    queries, positives = pseudo_queries(corpus, cfg)
    qrels = {q: {q.split("-", 2)[2]: 1} for q in queries}
    mcfg = MineConfig(strategy=cfg.strategy, models=cfg.models, num_negatives=cfg.num_negatives,
                      random_share=cfg.random_share, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pseudo.jsonl"
        mine(corpus, queries, qrels, mcfg, path, embed_cfg, quiet=quiet)
        rows = [row for _, row in read_jsonl(path)]
    for row in rows:
        row["positives"] = [positives[row["query_id"]]]
        row["source"] = f"pseudo {cfg.strategy}"
    return rows
