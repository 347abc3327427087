"""An ensemble of embedding models (and optionally BM25): one similarity from several (arXiv 2411.02404, 3.2).

The paper embeds queries and documents with several pre-trained encoders and averages their cosine similarities.
Here each member has a weight, and three fusion rules combine the members' scores of a query's candidates:

- `mean`   the weighted mean of the cosines (the paper's averaging);
- `zscore` each member's scores standardised over the query's candidates, then the weighted mean, so that a model
           whose cosines spread widely does not drown one whose cosines bunch together;
- `rrf`    reciprocal-rank fusion, sum_m w_m / (60 + rank_m), over the candidates (Cormack, Clarke and Buettcher,
           SIGIR 2009; k = 60 as there).

BM25 may join as a member; its scores are divided by the query's largest candidate score so that they lie in [0, 1]
beside the cosines.

The ensemble vector of a text is every model's unit-length embedding scaled by sqrt(w_m / sum w), concatenated:
its inner product with another ensemble vector is exactly the weighted mean cosine, so k-means and exact top-k over
these vectors see the `mean` fusion's similarity, and the vector itself is unit length.

Not here: learned fusion weights, score calibration across models, cross-encoder members.
Letters: M members, Q queries, N documents, C candidates of a query, D_m model m's dimensions.
"""

import hashlib
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from hnm.config import FUSIONS, Member, parse_members
from hnm.distributed import current
from hnm.embed import EmbedConfig, Embedder
from hnm.search import exact_scores
from hnm.vectorfile import BLOCK_ROWS, VectorFile, write_vectors
from hnm.weights import home

RRF_K = 60


def ensemble_vectors(embeddings: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """[(N, D_m) unit rows] and weights -> (N, sum D_m) rows whose inner products are weighted mean cosines.

    Example: one model with weight 1 returns its embeddings unchanged; two models of weight 1 and 3 are scaled by
    sqrt(1/4) and sqrt(3/4), so x.y = cos_1 / 4 + 3 cos_2 / 4.
    """
    total = float(sum(weights))
    if len(embeddings) == 1:
        return np.ascontiguousarray(embeddings[0], dtype=np.float32)
    return np.concatenate([np.sqrt(w / total, dtype=np.float32) * e for e, w in zip(embeddings, weights)], axis=1)


def _shared_file(path: Path, write) -> VectorFile:
    """The vector file at `path`, written by `write()` (which returns nothing) where some rank lacks it, by the first
    process of each machine only; every rank then maps the same file. Every rank calls `write`'s collective steps:
    `write` is given whether this process writes."""
    procs = current()
    if not procs.all_min(torch.tensor([int(path.is_file())], dtype=torch.int32)).item():
        write(procs.local_main)
    procs.barrier()
    return VectorFile(path)


def ensemble_file(doc_files: Sequence[VectorFile], weights: Sequence[float], dtype: str) -> VectorFile:
    """The ensemble vectors of the members' vector files, made and written block by block (memory: one block of
    each member), never held beside the members'. One member's file is its own ensemble file."""
    if len(doc_files) == 1:
        return doc_files[0]
    name = hashlib.sha256(repr(([str(f.path) for f in doc_files], list(map(float, weights)), dtype)).encode())
    path = home() / "embeddings" / f"ensemble-{name.hexdigest()[:24]}.{dtype}.npy"
    n, dim = len(doc_files[0]), sum(f.shape[1] for f in doc_files)

    def write(here: bool) -> None:
        if here:
            blocks = (ensemble_vectors([f[s:s + BLOCK_ROWS] for f in doc_files], weights)
                      for s in range(0, n, BLOCK_ROWS))  # (B, sum D_m) each
            write_vectors(path, blocks, n, dim, dtype)
    return _shared_file(path, write)


def embed_to_file(model: Embedder, texts: Sequence[str], kind: str, dtype: str, quiet: bool = False) -> VectorFile:
    """Every text's vector in a matrix file of the model's cache folder, named by the texts and the dtype, encoded a
    block of texts at a time (through the embedding cache when it is on) and written as it comes: memory holds one
    block of vectors, not all of them. A rerun on the same texts maps the file without encoding."""
    keys = hashlib.sha256()
    for t in texts:
        keys.update(hashlib.sha256((model.prefix(kind) + t).encode("utf-8")).digest())
    path = model.cache(kind).folder / f"matrix-{keys.hexdigest()[:24]}.{dtype}.npy"

    def write(here: bool) -> None:
        blocks = (model.encode(texts[s:s + BLOCK_ROWS], kind, quiet) for s in range(0, len(texts), BLOCK_ROWS))
        if here:
            write_vectors(path, blocks, len(texts), model.dim, dtype)
        else:
            for _ in blocks:  # the encoding is collective: every rank takes part in every block
                pass
    return _shared_file(path, write)


def fuse_mean(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(M, Q, C) member scores -> (Q, C) weighted mean."""
    return np.tensordot(weights / weights.sum(), scores, axes=1)


def zscore(scores: np.ndarray) -> np.ndarray:
    """Standardised along the last axis to mean 0 and standard deviation 1 (a constant row becomes 0).
    [[1, 2, 3]] -> [[-1.2247, 0, 1.2247]]."""
    mu = scores.mean(axis=-1, keepdims=True)
    sd = scores.std(axis=-1, keepdims=True)
    return (scores - mu) / np.where(sd > 0, sd, 1.0)


def fuse_zscore(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(M, Q, C) -> (Q, C): standardise each member per query over the candidates, then the weighted mean."""
    return fuse_mean(zscore(scores), weights)


def fuse_rrf(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(M, Q, C) -> (Q, C): sum_m w_m / (RRF_K + rank_m) / sum w, rank 1 the member's best candidate."""
    order = np.argsort(-scores, axis=2, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[2] + 1)[None, None, :], axis=2)
    return fuse_mean(1.0 / (RRF_K + ranks), weights)


FUSE = {"mean": fuse_mean, "zscore": fuse_zscore, "rrf": fuse_rrf}


def normalise_bm25(scores: np.ndarray) -> np.ndarray:
    """(Q, C) BM25 scores -> divided by each row's maximum (rows without a positive score stay 0)."""
    top = scores.max(axis=1, keepdims=True)
    return np.where(top > 0, scores / np.where(top > 0, top, 1.0), 0.0)


class Ensemble:
    """The members' embeddings of one corpus and its queries, and scoring of any (query, candidates) pairs.

    `bm25` is an object with `scores(list of query term lists) -> (Q, N)` and an `analyser` (hnm.bm25.BM25Index);
    it is used when a member is named "bm25".
    """

    def __init__(self, members: Sequence[Member], doc_vectors: List[np.ndarray], query_vectors: List[np.ndarray],
                 fusion: str = "mean", bm25=None, query_texts: Optional[Sequence[str]] = None, docs=None):
        """`doc_vectors` are (N, D_m) arrays or vector files; `docs` the ensemble vectors when made already (a vector
        file from `ensemble_file`), else they are made here in memory."""
        if fusion not in FUSE:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        self.members = tuple(members)
        self.dense = [m for m in self.members if m.name != "bm25"]
        self.bm25_member = next((m for m in self.members if m.name == "bm25"), None)
        if not self.dense:
            raise ValueError("the ensemble needs at least one embedding model besides bm25")
        if self.bm25_member and (bm25 is None or query_texts is None):
            raise ValueError("a bm25 member needs the BM25 index and the query texts")
        self.fusion = fusion
        self.doc_vectors, self.query_vectors = doc_vectors, query_vectors
        self.weights = np.array([m.weight for m in self.dense], dtype=np.float64)
        self.docs = ensemble_vectors(doc_vectors, self.weights) if docs is None else docs  # (N, sum D_m)
        self.queries = ensemble_vectors(query_vectors, self.weights)  # (Q, sum D_m)
        self.bm25, self.query_texts = bm25, query_texts

    @classmethod
    def embed(cls, members: Sequence[Member], documents: Sequence[str], queries: Sequence[str],
              fusion: str = "mean", cfg: EmbedConfig = EmbedConfig(), bm25=None, quiet: bool = False,
              vectors: str = "memory") -> "Ensemble":
        """Embed documents and queries with every model member (through the embedding cache). `vectors` "memory"
        holds the document vectors as float32 arrays; "float32", "float16" or "bfloat16" writes them to matrix files
        in that precision and maps them (vectorfile.py), the ensemble's made from the members' block by block."""
        docs, qs = [], []
        for m in members:
            if m.name == "bm25":
                continue
            model = Embedder.load(m.name, cfg, quiet=quiet)
            docs.append(model.encode(documents, kind="document", quiet=quiet) if vectors == "memory"
                        else embed_to_file(model, documents, "document", vectors, quiet))
            qs.append(model.encode(queries, kind="query", quiet=quiet))
        weights = [m.weight for m in members if m.name != "bm25"]
        mapped = None if vectors == "memory" else ensemble_file(docs, weights, vectors)
        return cls(members, docs, qs, fusion, bm25, queries, docs=mapped)

    def score(self, query_rows: np.ndarray, candidates: List[np.ndarray]) -> List[np.ndarray]:
        """Fused scores of each query's candidate documents: query_rows (q,), candidates [(C_i,)] -> [(C_i,)]."""
        if self.fusion == "mean" and not self.bm25_member:  # one product over the ensemble vectors
            return [exact_scores(self.docs[c], self.queries[r]) for r, c in zip(query_rows, candidates)]
        bm25_rows = None
        if self.bm25_member:
            analyse = self.bm25.analyser
            bm25_rows = self.bm25.scores([analyse(self.query_texts[r]) for r in query_rows])  # (q, N)
        weights = np.append(self.weights, self.bm25_member.weight) if self.bm25_member else self.weights
        out = []
        for i, (r, c) in enumerate(zip(query_rows, candidates)):
            per_member = [exact_scores(d[c], q[r]) for d, q in zip(self.doc_vectors, self.query_vectors)]  # M x (C,)
            if bm25_rows is not None:
                per_member.append(normalise_bm25(bm25_rows[i, c][None])[0])
            out.append(FUSE[self.fusion](np.stack(per_member)[:, None, :], weights)[0])
        return out


class PassageEnsemble(Ensemble):
    """An ensemble over documents cut into passages: a document scores as its best passage (MaxP; Dai and Callan,
    SIGIR 2019), so text past an encoder's window still counts.

    passage_vectors: per model (P_m, D_m) unit rows; passage_docs: per model (P_m,) the document row of each passage,
    ascending (a document's passages are contiguous), every document having at least one. Each model may cut the
    documents at its own window, so a model with a long window sees whole documents where a short one sees pieces;
    one array is shared by all models. A (query, document) score is the weighted mean over models of each model's
    best passage. The document vectors that k-means and exact top-k see are the normalised means of their passages'
    vectors. Only the `mean` fusion is supported.
    """

    def __init__(self, members: Sequence[Member], passage_vectors: List[np.ndarray],
                 passage_docs: Union[np.ndarray, Sequence[np.ndarray]], query_vectors: List[np.ndarray]):
        if isinstance(passage_docs, np.ndarray):
            passage_docs = [passage_docs] * len(passage_vectors)
        n_docs = int(passage_docs[0].max()) + 1
        doc_vectors, self.first = [], []
        for p, docs in zip(passage_vectors, passage_docs):
            if len(docs) != len(p) or np.any(np.diff(docs) < 0) or len(np.unique(docs)) != n_docs \
                    or docs.max() + 1 != n_docs:
                raise ValueError("passages must be grouped by document, in document order, at least one each")
            mean = np.zeros((n_docs, p.shape[1]), dtype=np.float32)
            np.add.at(mean, docs, p)
            doc_vectors.append(mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12))
            self.first.append(np.searchsorted(docs, np.arange(n_docs + 1)))  # doc d: rows first[d]..first[d+1]-1
        super().__init__(members, doc_vectors, query_vectors, "mean")
        self.passage_vectors = passage_vectors
        self.shares = (self.weights / self.weights.sum()).astype(np.float32)

    def score(self, query_rows: np.ndarray, candidates: List[np.ndarray]) -> List[np.ndarray]:
        out = []
        for r, c in zip(query_rows, candidates):
            total = np.zeros(len(c), dtype=np.float64)
            for share, passages, first, queries in zip(self.shares, self.passage_vectors, self.first,
                                                       self.query_vectors):
                starts, ends = first[c], first[c + 1]
                rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
                s = exact_scores(passages[rows], queries[r])  # (passages of the candidates,)
                total += share * np.maximum.reduceat(s, np.concatenate([[0], np.cumsum(ends - starts)[:-1]]))
            out.append(total)
        return out
