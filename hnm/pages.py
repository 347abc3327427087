"""Pages and their chunks: judgments name pages, corpus rows may be chunks, and a page scores as its best chunk.

`hnm ingest` cuts long pages into chunks; each chunk is a corpus row that carries its page as "parent_id"
(`site/setup.html#0`, `site/setup.html#1`, ... of the page `site/setup.html`). A user judges pages, not chunks. So:

- `page_of(corpus)` maps every row to its page: its "parent_id", or the row itself when it has none. A corpus
  without parent ids is its own set of pages, and everything below is then the identity.
- `page_qrels` moves a judgment that names a chunk onto its page (the highest grade wins), so that every run and
  metric is per page.
- Retrieval and re-ranking work on rows; a page scores as its best row (MaxP: Dai and Callan, "Deeper Text
  Understanding for IR with Contextual Neural Language Modeling", SIGIR 2019). `best_chunks` cuts a row-level run
  down to its top `top_k` pages, with each page's `per_page` best rows; `to_pages` collapses a row-level run into a
  page-level one by the maximum.

    page_of({"a#0": {"parent_id": "a"}, "a#1": {"parent_id": "a"}, "b": {}}) -> {"a#0": "a", "a#1": "a", "b": "b"}
    to_pages({"q": {"a#0": 0.2, "a#1": 0.9, "b": 0.5}}, that)               -> {"q": {"a": 0.9, "b": 0.5}}

Mining maps a page's judgment onto its chunks (miner.py); which of them become positives is MineConfig's
`chunk_positives`. Not here: cutting chunks (chunk.py, ingest.py).
"""

from typing import Dict, List

from hnm.data import Qrels
from hnm.metrics import Run, rank_documents


def page_of(corpus: Dict[str, dict]) -> Dict[str, str]:
    """{row id: page id}: a row's "parent_id", or the row's own id."""
    return {d: doc.get("parent_id") or d for d, doc in corpus.items()}


def chunked(pages: Dict[str, str]) -> bool:
    """Whether any row is a chunk of a page other than itself."""
    return any(row != page for row, page in pages.items())


def rows_of(pages: Dict[str, str]) -> Dict[str, List[str]]:
    """{page id: its row ids, in corpus order}."""
    out: Dict[str, List[str]] = {}
    for row, page in pages.items():
        out.setdefault(page, []).append(row)
    return out


def page_qrels(qrels: Qrels, pages: Dict[str, str]) -> Qrels:
    """Judgments per page: a judgment of a chunk counts for its page (the highest grade of the page's judgments).
    A judgment of an id that is neither a row nor a page is kept as it is (it counts against recall)."""
    out: Qrels = {}
    for qid, judged in qrels.items():
        docs = out.setdefault(qid, {})
        for d, grade in judged.items():
            page = pages.get(d, d)
            docs[page] = max(grade, docs.get(page, grade))
    return out


def to_pages(run: Run, pages: Dict[str, str]) -> Run:
    """Collapse a run over rows into one over pages: a page's score is the maximum of its rows' (MaxP)."""
    out: Run = {}
    for qid, docs in run.items():
        best = out.setdefault(qid, {})
        for row, score in docs.items():
            page = pages.get(row, row)
            if page not in best or score > best[page]:
                best[page] = score
    return out


def best_chunks(run: Run, pages: Dict[str, str], top_k: int, per_page: int) -> Run:
    """The rows of each query's `top_k` best pages, at most `per_page` rows a page, best first by the run's scores.

    run {"q": {"a#0": 3, "a#1": 2, "a#2": 1, "b": 0}}, top_k 1, per_page 2 -> {"q": {"a#0": 3, "a#1": 2}}.
    """
    out: Run = {}
    for qid, docs in run.items():
        kept: Dict[str, int] = {}  # page -> rows taken
        rows = out.setdefault(qid, {})
        for row, score in rank_documents(docs):
            page = pages.get(row, row)
            if page not in kept:
                if len(kept) == top_k:
                    continue
                kept[page] = 0
            if kept[page] < per_page:
                kept[page] += 1
                rows[row] = score
    return out
