"""First-stage retrieval: the top k documents of each query by BM25, one dense model, the ensemble, or a hybrid of
BM25 and the ensemble. Its runs are what a re-ranker re-orders (twostage.py).

    run = retrieve(corpus, queries, FirstStageConfig(kind="hybrid", top_k=100))   # {qid: {doc id: score}}

- `bm25`      BM25 (bm25.py, its defaults: Lucene's variant with the Porter analyser);
- `dense`     the first model of `models`, exact top-k over its cosines (search.py);
- `ensemble`  every model of `models`: exact top-k over the ensemble vectors, whose inner product is the weighted
              mean cosine (ensemble.py); no clusters;
- `hybrid`    BM25 fused with the ensemble's mean cosine, as the hybrid retrieval of Pyserini and Elasticsearch does
              (Ma et al. 2021, "A Replication Study of Dense Passage Retriever", arXiv 2104.05740, fuse sparse and
              dense scores linearly). Two fusions:
              `zscore`: each system's scores standardised over the whole corpus for the query, then
                        w x z(BM25) + (1 - w) x z(dense), w = `bm25_weight`;
              `rrf`:    reciprocal-rank fusion w / (60 + rank_bm25) + (1 - w) / (60 + rank_dense) over the union of
                        both systems' top `depth` documents (a document outside one list gets nothing from it;
                        Cormack, Clarke and Buettcher, SIGIR 2009).
              Standardising over the corpus rather than over a short candidate list keeps a query whose candidates
              all score alike from having its small differences blown up. Measured on SciFact test (nDCG@10,
              hnm's parts, bf16 vectors): BM25 0.687, the two-model ensemble 0.668, zscore 0.737, rrf 0.716.

The scores of a hybrid run are the fused ones; twostage.py interpolates a re-ranker with whatever the run holds.
Queries go in blocks of `block` so that the (block, N) score matrices stay small on a large corpus; under torchrun
the blocks are shared among the ranks and every rank gets the whole run, in query order (distributed.py).

`annotate_rows` adds the first stage's view to mined rows (miner.py), for the few-label levers of train.py: its
score of every positive and negative (a teacher to distil from) and its top k with their texts (the list the
held-out check re-ranks).

Not here: BM25 and embedding themselves (bm25.py, embed.py, ensemble.py), re-ranking (twostage.py).
Letters: Q queries of a block, N documents, k the depth kept.
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List

import numpy as np

from hnm.config import FirstStageConfig, parse_members
from hnm.data import document_text
from hnm.distributed import current
from hnm.errors import HnmError
from hnm.embed import EmbedConfig
from hnm.ensemble import RRF_K, fuse_zscore
from hnm.metrics import Run
from hnm.pages import best_chunks, chunked, page_of
from hnm.progress import Progress
from hnm.search import best_k, topk


def _columns(scores: np.ndarray) -> np.ndarray:
    """(Q, N) -> (Q, N) read-only view of each entry's column index, the ids best_k breaks ties by."""
    return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)


def rrf_rows(scores: np.ndarray, depth: int) -> np.ndarray:
    """(Q, N) -> 1 / (RRF_K + rank) for each row's top `depth` documents (rank 1 the best), 0 for the others.
    [[0.1, 0.9, 0.5]], depth 2 -> [[0, 1/61, 1/62]]."""
    depth = min(depth, scores.shape[1])
    _, top = best_k(scores, _columns(scores), depth)  # (Q, depth), best first, ties by column
    out = np.zeros_like(scores, dtype=np.float64)
    np.put_along_axis(out, top, 1.0 / (RRF_K + np.arange(1, depth + 1))[None, :], axis=1)
    return out


def fuse_hybrid(bm25: np.ndarray, dense: np.ndarray, cfg: FirstStageConfig) -> np.ndarray:
    """(Q, N) BM25 and dense scores of the same documents -> (Q, N) fused scores (the module docstring's rules)."""
    w = cfg.bm25_weight
    if cfg.fusion == "zscore":  # the ensemble's own z-score fusion, over the whole corpus: w z(BM25) + (1 - w) z(dense)
        return fuse_zscore(np.stack([bm25, dense]), np.array([w, 1.0 - w]))
    return w * rrf_rows(bm25, cfg.depth) + (1.0 - w) * rrf_rows(dense, cfg.depth)


class FirstStage:
    """A first stage built once over a corpus and run for any number of queries: BM25's index (saved under
    $HNM_HOME/bm25/ and loaded by later runs over the same rows) and each model's document vectors (through the
    embedding cache, embed.py). `retrieve` is one build and one run; `hnm search` keeps one for many queries.

    On a chunked corpus (rows carrying a parent_id, pages.py) a run keeps the rows of each query's `top_k` best
    pages, at most `per_page` a page: the first stage ranks rows `top_k x per_page` deep, and a page that has more
    rows there keeps its best.
    """

    def __init__(self, corpus: Dict[str, dict], cfg: FirstStageConfig = FirstStageConfig(), quiet: bool = False):
        from hnm.ensemble import ensemble_vectors
        self.cfg, self.corpus, self.doc_ids, self.pages = cfg, corpus, list(corpus), page_of(corpus)
        self.index = _bm25_index(corpus, quiet) if cfg.kind in ("bm25", "hybrid") else None
        self.embedders, self.docs = [], None
        if cfg.kind != "bm25":
            from hnm.embed import Embedder
            members = parse_members(cfg.models)[:1 if cfg.kind == "dense" else None]
            if any(m.name == "bm25" for m in members):
                raise HnmError("--models: bm25 cannot join a first stage that searches vectors; use --first-stage "
                               "bm25 or hybrid")
            self.weights = [m.weight for m in members]
            self.embedders = [Embedder.load(m.name, EmbedConfig(precision=cfg.precision), quiet=quiet)
                              for m in members]
            texts = [document_text(corpus[d]) for d in self.doc_ids]
            self.docs = ensemble_vectors([e.encode(texts, quiet=quiet) for e in self.embedders], self.weights)  # (N, D)
        self.depth = min(cfg.top_k * (cfg.per_page if chunked(self.pages) else 1), len(self.doc_ids))

    def query_vectors(self, texts: List[str], cached: bool = True) -> np.ndarray:
        """(Q,) query texts -> (Q, D) ensemble vectors, through the embedding cache unless not `cached` (a person's
        questions at `hnm search`, seldom asked twice)."""
        from hnm.ensemble import ensemble_vectors
        if cached:
            vectors = [e.encode(texts, kind="query", quiet=True) for e in self.embedders]
        else:
            vectors = [e.forward([e.prefix("query") + t for t in texts]) for e in self.embedders]
        return ensemble_vectors(vectors, self.weights)

    def run(self, queries: Dict[str, str], quiet: bool = False, cached: bool = True) -> Run:
        """{qid: text} -> {qid: {row id: score}}, best pages' rows (the class docstring); queries in blocks,
        shared among the ranks under torchrun."""
        qids, texts, k, cfg = list(queries), list(queries.values()), self.depth, self.cfg
        # every query's vector before the blocks: encoding is collective under torchrun, the blocks are shared out
        dense_all = self.query_vectors(texts, cached) if self.embedders else None  # (Q, D)

        def block(i: int) -> bytes:
            """[[qid, [[row id, score], ...]], ...] of the i-th block of queries, best first."""
            rows = slice(i * cfg.block, (i + 1) * cfg.block)
            if cfg.kind == "bm25":
                found = self.index.run(dict(zip(qids[rows], texts[rows])), k)
                return json.dumps([[q, list(docs.items())] for q, docs in found.items()]).encode()
            dense = dense_all[rows]  # (Q, D)
            if cfg.kind == "hybrid":
                sparse = self.index.scores([self.index.analyser(t) for t in texts[rows]])  # (Q, N)
                fused = fuse_hybrid(sparse.astype(np.float64), (dense @ self.docs.T).astype(np.float64), cfg)
                top_s, top_i = best_k(fused, _columns(fused), k)  # (Q, k) each
                ranked = [[[self.doc_ids[j], s] for j, s in zip(r, sc)] for r, sc in zip(top_i.tolist(),
                                                                                          top_s.tolist())]
            else:
                scores, ids = topk(dense, self.docs, k)  # (Q, k) each
                ranked = [[[self.doc_ids[j], s] for j, s in zip(r, sc)] for r, sc in zip(ids.tolist(),
                                                                                          scores.tolist())]
            return json.dumps([[q, docs] for q, docs in zip(qids[rows], ranked)]).encode()

        run: Run = {}
        procs = current()
        with Progress(len(qids), desc=f"first stage {cfg.kind}", quiet=quiet or not procs.main,
                      unit=" queries") as bar:
            for _, blob in procs.in_order(-(-len(qids) // cfg.block), block):
                part = json.loads(blob)
                run.update((q, dict(docs)) for q, docs in part)
                bar.update(len(part))
        return best_chunks(run, self.pages, cfg.top_k, cfg.per_page) if chunked(self.pages) else run


def bm25_folder(corpus: Dict[str, dict]) -> Path:
    """Where BM25's index of this corpus (its defaults) is saved: $HNM_HOME/bm25/<hash of the rows and settings>."""
    from hnm.bm25 import BM25Config
    from hnm.weights import home
    h = hashlib.sha256(json.dumps(asdict(BM25Config()), sort_keys=True).encode())
    for d, doc in corpus.items():
        h.update(json.dumps([d, document_text(doc)], ensure_ascii=False).encode())
    return home() / "bm25" / h.hexdigest()[:24]


def _bm25_index(corpus: Dict[str, dict], quiet: bool):
    """BM25's index of the corpus, from bm25_folder when an earlier run saved it, else built and saved there."""
    from hnm.bm25 import BM25Index
    folder = bm25_folder(corpus)
    if (folder / "bm25.json").is_file():
        return BM25Index.load(folder)
    index = BM25Index.from_corpus(corpus, quiet=quiet)
    if current().main:
        index.save(folder)
    return index


def retrieve(corpus: Dict[str, dict], queries: Dict[str, str], cfg: FirstStageConfig = FirstStageConfig(),
             quiet: bool = False) -> Run:
    """The top_k documents of each query {qid: text} by the first stage `cfg.kind` (the module docstring); on a
    chunked corpus, the best rows of the top_k pages (FirstStage)."""
    return FirstStage(corpus, cfg, quiet).run(queries, quiet)


def annotate_rows(corpus: Dict[str, dict], rows: List[dict], cfg: FirstStageConfig = FirstStageConfig(),
                  quiet: bool = False, stage: "FirstStage" = None) -> List[dict]:
    """Mined rows -> the same rows with the first stage's scores of their positives and negatives
    ("positive_first_stage_scores", "negative_first_stage_scores") and its top cfg.top_k for the row's query
    ("candidate_ids", "candidates", "candidate_scores", best first). A document missing from the corpus is an error.
    Scores are the first stage's over the whole corpus (a hybrid's fused z-scores). On a chunked corpus the scores
    are per row as well, and so are the top k (not the pages' best rows of FirstStage.run). `stage`: one already
    built on `corpus` with `cfg`, to reuse."""
    stage = stage or FirstStage(corpus, cfg, quiet)
    column = {d: j for j, d in enumerate(stage.doc_ids)}
    texts = [r["query"] for r in rows]
    out = []
    for start in range(0, len(rows), cfg.block):
        block = slice(start, start + cfg.block)
        analysed = [stage.index.analyser(t) for t in texts[block]] if stage.index is not None else None
        sparse = stage.index.scores(analysed) if analysed is not None else None  # (Q, N)
        dense = stage.query_vectors(texts[block]) @ stage.docs.T if stage.embedders else None  # (Q, N)
        scores = (sparse if dense is None else dense if sparse is None else
                  fuse_hybrid(sparse.astype(np.float64), dense.astype(np.float64), cfg))  # (Q, N)
        _, tops = best_k(scores, _columns(scores), min(cfg.top_k, len(stage.doc_ids)))  # (Q, k), best first
        for row, values, top in zip(rows[block], scores, tops.tolist()):
            def of(ids: List[str]) -> List[float]:
                missing = [d for d in ids if d not in column]
                if missing:
                    raise ValueError(f"query {row['query_id']!r}: document {missing[0]!r} is not in the corpus")
                return [round(float(values[column[d]]), 6) for d in ids]
            out.append({**row, "positive_first_stage_scores": of(row["positive_ids"]),
                        "negative_first_stage_scores": of(row["negative_ids"]),
                        "candidate_ids": [stage.doc_ids[j] for j in top],
                        "candidates": [document_text(corpus[stage.doc_ids[j]]) for j in top],
                        "candidate_scores": [round(float(values[j]), 6) for j in top]})
    return out
