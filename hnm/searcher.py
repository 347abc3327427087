"""Searching one's own documents: a question in, pages out, with an optional re-ranker.

    searcher = Searcher.from_folder("kestrel", reranker="kestrel/fit")   # or a checkpoint folder
    for hit in searcher.search(["How do I schedule automatic snapshots of a volume?"])[0]:
        print(hit.rank, hit.doc_id, hit.title, hit.snippet)

A `Searcher` is built once over a corpus and answers any number of queries: the first stage's index (BM25's,
saved and loaded again by later processes, and each model's document vectors through the embedding cache) is
made in its constructor (firststage.FirstStage). Each query then takes the first stage's `candidates` best pages,
re-ranks them with the cross-encoder when there is one, and interpolates the two scores with the alpha the
checkpoint was tuned with for that first stage (twostage.alpha_for). On a chunked corpus a page scores as its best
chunk (pages.py), and a hit names the page, its title, and the chunk that scored it, whose text is the snippet.

Not here: the command line's loop over standard input and its output formats (`hnm search`, __main__.py).
"""

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from hnm.data import beir_file, read_corpus
from hnm.errors import InputError
from hnm.firststage import FirstStage, FirstStageConfig
from hnm.metrics import Run, rank_documents
from hnm.pages import chunked, page_of, to_pages

SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Hit:
    query: str
    rank: int  # 1 for the best
    doc_id: str  # the page
    score: float  # the interpolated score with a re-ranker, else the first stage's
    title: str
    snippet: str  # the start of the text of the chunk that scored the page
    chunk_id: Optional[str] = None  # that chunk's row id, on a chunked corpus

    def as_dict(self) -> dict:
        row = asdict(self)
        if row["chunk_id"] is None:
            del row["chunk_id"]
        return row


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """White space collapsed and cut at a word boundary: snippet("a  b\\nc", 3) -> "a b…"."""
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def read_search_corpus(data: Path) -> Dict[str, dict]:
    """The corpus of a data folder, or an error that says what is missing."""
    path = beir_file(Path(data), "corpus.jsonl")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; a data folder holds corpus.jsonl (hnm ingest writes one)")
    corpus = read_corpus(path)
    if not corpus:
        raise InputError(f"{path}: no documents in it; nothing to search")
    return corpus


class Searcher:
    """A corpus made searchable once (the module docstring); `search` answers queries."""

    def __init__(self, corpus: Dict[str, dict], stage: FirstStageConfig = FirstStageConfig(top_k=20),
                 reranker: Optional[Path] = None, alpha: Optional[float] = None, batch_size: int = 64,
                 precision: str = "float32", quiet: bool = False):
        self.corpus, self.pages, self.stage = corpus, page_of(corpus), stage
        self.chunked = chunked(self.pages)
        self.first = FirstStage(corpus, stage, quiet)
        self.model, self.alpha, self.alpha_note = None, 0.0, "no re-ranker"
        if reranker is not None:
            from hnm.fit import fitted_checkpoint
            from hnm.reranker import CrossEncoder
            from hnm.twostage import alpha_for
            reranker = fitted_checkpoint(Path(reranker))
            self.model = CrossEncoder.from_checkpoint(reranker)
            self.alpha, self.alpha_note = alpha_for(reranker, stage, alpha)
        self.batch_size, self.precision = batch_size, precision

    @classmethod
    def from_folder(cls, data: Path, **kwargs) -> "Searcher":
        """A Searcher over the corpus.jsonl of a data folder; keyword arguments as the constructor's."""
        return cls(read_search_corpus(data), **kwargs)

    def scores(self, queries: Dict[str, str]) -> Tuple[Run, Run]:
        """{qid: text} -> ({qid: {page: final score}}, {qid: {row: score}}) over each query's first-stage candidates;
        the row scores are the re-ranker's when there is one, else the first stage's."""
        rows = self.first.run(queries, quiet=True, cached=False)
        if self.model is None:
            return to_pages(rows, self.pages), rows
        from hnm.twostage import interpolate, rerank
        depth = max((len(docs) for docs in rows.values()), default=1)
        pure = rerank(self.model, rows, queries, self.corpus, depth, self.batch_size, self.precision, True)
        return interpolate(to_pages(pure, self.pages), to_pages(rows, self.pages), self.alpha), pure

    def search(self, queries: Sequence[str], top_k: int = 10) -> List[List[Hit]]:
        """Each query's `top_k` best pages, best first."""
        texts = {str(i): q for i, q in enumerate(queries)}
        final, row_scores = self.scores(texts)
        out = []
        for qid, query in texts.items():
            best_row: Dict[str, str] = {}  # page -> its best-scoring row
            for row, _ in rank_documents(row_scores.get(qid, {})):
                best_row.setdefault(self.pages[row], row)
            hits = []
            for rank, (page, score) in enumerate(rank_documents(final.get(qid, {}), top_k), start=1):
                row = best_row[page]
                hits.append(Hit(query, rank, page, float(score), self.corpus[row]["title"],
                                snippet(self.corpus[row]["text"]), row if self.chunked else None))
            out.append(hits)
        return out
