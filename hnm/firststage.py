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

import json
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from hnm.data import document_text
from hnm.distributed import current
from hnm.embed import EmbedConfig
from hnm.ensemble import RRF_K, fuse_zscore
from hnm.metrics import Run
from hnm.progress import Progress

KINDS = ("bm25", "dense", "ensemble", "hybrid")
HYBRID_FUSIONS = ("zscore", "rrf")


@dataclass(frozen=True)
class FirstStageConfig:
    kind: str = "bm25"  # bm25, dense (the first of `models`), ensemble (all of them) or hybrid (BM25 + ensemble)
    top_k: int = 100  # documents kept per query
    models: str = "all-MiniLM-L6-v2,all-mpnet-base-v2"  # NAME[:WEIGHT],... of weights.lock: dense, ensemble, hybrid
    fusion: str = "zscore"  # of the hybrid: zscore over the corpus, or rrf over both top-`depth` lists
    bm25_weight: float = 0.5  # w of the hybrid: the BM25 side's share
    depth: int = 1000  # of each system's list for rrf
    precision: str = "float32"  # of the encoders (embed.py); part of the embedding cache key
    block: int = 256  # queries scored at once by the hybrid

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"first stage {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.fusion not in HYBRID_FUSIONS:
            raise ValueError(f"hybrid fusion {self.fusion!r} is not one of {', '.join(HYBRID_FUSIONS)}")
        if not 0.0 <= self.bm25_weight <= 1.0:
            raise ValueError(f"bm25_weight is a share in [0, 1], not {self.bm25_weight}")
        if min(self.top_k, self.depth, self.block) < 1:
            raise ValueError("top_k, depth and block must be at least 1")


def rrf_rows(scores: np.ndarray, depth: int) -> np.ndarray:
    """(Q, N) -> 1 / (RRF_K + rank) for each row's top `depth` documents (rank 1 the best), 0 for the others.
    [[0.1, 0.9, 0.5]], depth 2 -> [[0, 1/61, 1/62]]."""
    depth = min(depth, scores.shape[1])
    top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]  # (Q, depth), unordered
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)  # (Q, depth), best first
    out = np.zeros_like(scores, dtype=np.float64)
    np.put_along_axis(out, top, 1.0 / (RRF_K + np.arange(1, depth + 1))[None, :], axis=1)
    return out


def fuse_hybrid(bm25: np.ndarray, dense: np.ndarray, cfg: FirstStageConfig) -> np.ndarray:
    """(Q, N) BM25 and dense scores of the same documents -> (Q, N) fused scores (the module docstring's rules)."""
    w = cfg.bm25_weight
    if cfg.fusion == "zscore":  # the ensemble's own z-score fusion, over the whole corpus: w z(BM25) + (1 - w) z(dense)
        return fuse_zscore(np.stack([bm25, dense]), np.array([w, 1.0 - w]))
    return w * rrf_rows(bm25, cfg.depth) + (1.0 - w) * rrf_rows(dense, cfg.depth)


def _top(scores: np.ndarray, k: int) -> List[np.ndarray]:
    """(Q, N) -> per row the indices of its k best, best first (ties by index)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    out = []
    for row, idx in zip(scores, top):
        out.append(idx[np.lexsort((idx, -row[idx]))])
    return out


def retrieve(corpus: Dict[str, dict], queries: Dict[str, str], cfg: FirstStageConfig = FirstStageConfig(),
             quiet: bool = False) -> Run:
    """The top_k documents of each query {qid: text} by the first stage `cfg.kind` (the module docstring)."""
    from hnm.bm25 import BM25Index
    from hnm.ensemble import Ensemble, parse_members
    from hnm.search import topk
    doc_ids, qids, texts = list(corpus), list(queries), list(queries.values())
    index = BM25Index.from_corpus(corpus, quiet=quiet) if cfg.kind in ("bm25", "hybrid") else None
    ensemble = None
    if cfg.kind != "bm25":
        members = parse_members(cfg.models)[:1 if cfg.kind == "dense" else None]
        if any(m.name == "bm25" for m in members):
            raise ValueError("bm25 cannot join a first stage that searches vectors; use --first-stage bm25 or hybrid")
        ensemble = Ensemble.embed(members, [document_text(corpus[d]) for d in doc_ids], texts,
                                  cfg=EmbedConfig(precision=cfg.precision), quiet=quiet)
    k = min(cfg.top_k, len(doc_ids))

    def block(i: int) -> bytes:
        """[[qid, [[doc id, score], ...]], ...] of the i-th block of queries, best first."""
        rows = slice(i * cfg.block, (i + 1) * cfg.block)
        if cfg.kind == "bm25":
            found = index.run(dict(zip(qids[rows], texts[rows])), k)
            return json.dumps([[q, list(docs.items())] for q, docs in found.items()]).encode()
        if cfg.kind == "hybrid":
            sparse = index.scores([index.analyser(t) for t in texts[rows]])  # (Q, N)
            dense = ensemble.queries[rows] @ ensemble.docs.T  # (Q, N) weighted mean cosines
            fused = fuse_hybrid(sparse.astype(np.float64), dense.astype(np.float64), cfg)
            ranked = [[[doc_ids[j], float(row[j])] for j in top] for row, top in zip(fused, _top(fused, k))]
        else:
            scores, ids = topk(ensemble.queries[rows], ensemble.docs, k)  # (Q, k) each
            ranked = [[[doc_ids[j], s] for j, s in zip(r, sc)] for r, sc in zip(ids.tolist(), scores.tolist())]
        return json.dumps([[q, docs] for q, docs in zip(qids[rows], ranked)]).encode()

    run: Run = {}
    procs = current()
    with Progress(len(qids), desc=f"first stage {cfg.kind}", quiet=quiet or not procs.main, unit=" queries") as bar:
        for _, blob in procs.in_order(-(-len(qids) // cfg.block), block):
            part = json.loads(blob)
            run.update((q, dict(docs)) for q, docs in part)
            bar.update(len(part))
    return run


def annotate_rows(corpus: Dict[str, dict], rows: List[dict], cfg: FirstStageConfig = FirstStageConfig(),
                  quiet: bool = False) -> List[dict]:
    """Mined rows -> the same rows with the first stage's scores of their positives and negatives
    ("positive_first_stage_scores", "negative_first_stage_scores") and its top cfg.top_k for the row's query
    ("candidate_ids", "candidates", "candidate_scores", best first). A document missing from the corpus is an error."""
    from hnm.bm25 import BM25Index
    from hnm.ensemble import Ensemble, parse_members
    doc_ids = list(corpus)
    column = {d: j for j, d in enumerate(doc_ids)}
    texts = [r["query"] for r in rows]
    index = BM25Index.from_corpus(corpus, quiet=quiet) if cfg.kind in ("bm25", "hybrid") else None
    ensemble = None
    if cfg.kind != "bm25":
        members = parse_members(cfg.models)[:1 if cfg.kind == "dense" else None]
        ensemble = Ensemble.embed(members, [document_text(corpus[d]) for d in doc_ids], texts,
                                  cfg=EmbedConfig(precision=cfg.precision), quiet=quiet)
    out = []
    for start in range(0, len(rows), cfg.block):
        block = slice(start, start + cfg.block)
        sparse = index.scores([index.analyser(t) for t in texts[block]]) if index is not None else None  # (Q, N)
        dense = ensemble.queries[block] @ ensemble.docs.T if ensemble is not None else None  # (Q, N)
        scores = (sparse if dense is None else dense if sparse is None else
                  fuse_hybrid(sparse.astype(np.float64), dense.astype(np.float64), cfg))  # (Q, N)
        for row, values, top in zip(rows[block], scores, _top(scores, min(cfg.top_k, len(doc_ids)))):
            def of(ids: List[str]) -> List[float]:
                missing = [d for d in ids if d not in column]
                if missing:
                    raise ValueError(f"query {row['query_id']!r}: document {missing[0]!r} is not in the corpus")
                return [round(float(values[column[d]]), 6) for d in ids]
            out.append({**row, "positive_first_stage_scores": of(row["positive_ids"]),
                        "negative_first_stage_scores": of(row["negative_ids"]),
                        "candidate_ids": [doc_ids[j] for j in top],
                        "candidates": [document_text(corpus[doc_ids[j]]) for j in top],
                        "candidate_scores": [round(float(values[j]), 6) for j in top]})
    return out
