"""BM25: an English analyser, an index of precomputed scores in NumPy arrays, and top-k search for batches of queries.

Scoring follows the eager idea of bm25s (Lù, "BM25S: Orders of magnitude faster lexical search via eager sparse
scoring", 2024): a document's score for a query is a sum over the query's terms of a weight that depends only on the
term and the document, so every (term, document) weight is computed once, at indexing, and a query only adds up
stored numbers. The index is laid out like a CSC matrix (terms are columns):

    postings of term t:  doc_index[indptr[t]:indptr[t+1]]   documents that contain t, ascending   int32
                         score[indptr[t]:indptr[t+1]]       their stored weights                  float32

Five variants, as Kamphuis, de Vries, Boytsov & Lin ("Which BM25 do you mean? A large-scale reproducibility study of
scoring variants", ECIR 2020) write them and bm25s implements them: each is an idf function and a tf function below,
chosen by `BM25Config.variant`. With N documents, df documents holding the term, tf its count in a document of L
tokens and Lavg the mean length, a term's weight in a document is idf(df, N) * tf_weight(tf, L / Lavg).

BM25L and BM25+ give a term a non-zero weight even where tf = 0 (the delta); the sum runs over every query term, as
in Kamphuis et al. and bm25s, so an absent term adds idf * tf_weight(0) to every document. The index stores
weight(tf) - weight(0) in the postings and adds the query's sum of weight(0) to every document, which gives exactly
that score without touching the documents that lack the term. (Lv & Zhai sum over the terms present only.)

A repeated query term counts as often as it is repeated, as in bm25s, rank_bm25 and Lucene.

Not here: fields, phrase or proximity scoring, incremental updates, other languages' analysers.
"""

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from hnm import porter
from hnm.config import BM25_VARIANTS, BM25Config
from hnm.data import atomic_write, document_text
from hnm.errors import InputError
from hnm.progress import Progress

# Q queries, N documents, V terms in the vocabulary, P postings (distinct (term, document) pairs)

# Lucene's EnglishAnalyzer stop set (ENGLISH_STOP_WORDS_SET), which bm25s also uses for "en"
STOP_WORDS = frozenset((
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with").split())
_WORD = re.compile(r"\w\w+")  # runs of two or more Unicode letters, digits or underscores (as bm25s and scikit-learn)


class Analyser:
    """Text -> terms: lower-case, split into words, drop stop words, Porter-stem.

    Analyser()("The Running of the dogs") -> ["run", "dog"]. Stems are cached, since a corpus repeats its words.
    """

    def __init__(self, stopwords: bool = True, stem: bool = True):
        self.stopwords = STOP_WORDS if stopwords else frozenset()
        self.stem = stem
        self._stems: Dict[str, str] = {}

    def words(self, text: str) -> List[str]:
        """The lower-cased words, before stop words and stemming: "Don't stop" -> ["don", "stop"]."""
        return _WORD.findall(text.lower())

    def __call__(self, text: str) -> List[str]:
        words = [w for w in self.words(text) if w not in self.stopwords]
        if not self.stem:
            return words
        stems = self._stems
        return [stems[w] if w in stems else stems.setdefault(w, porter.stem(w)) for w in words]


# ------------------------------------------------------------------------------------------------------- variants
# idf(df (V,) float64, n_docs) -> (V,);  tf_weight(tf (P,), rel_len (P,) = L / Lavg, k1, b, delta) -> (P,)

def idf_robertson(df: np.ndarray, n_docs: int) -> np.ndarray:
    """log((N - df + 0.5) / (df + 0.5)), floored at 0 (Robertson et al., Okapi at TREC-3, 1994; the floor as bm25s)."""
    return np.log(np.maximum((n_docs - df + 0.5) / (df + 0.5), 1.0))


def tf_robertson(tf: np.ndarray, rel_len: np.ndarray, k1: float, b: float, delta: float) -> np.ndarray:
    """tf / (tf + k1 (1 - b + b L/Lavg)) (Robertson et al. 1994, as Kamphuis et al. 2020 write it)."""
    return tf / (tf + k1 * (1 - b + b * rel_len))


def idf_lucene(df: np.ndarray, n_docs: int) -> np.ndarray:
    """log(1 + (N - df + 0.5) / (df + 0.5)), never negative (Lucene's BM25Similarity; Kamphuis et al. 2020)."""
    return np.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def tf_lucene(tf: np.ndarray, rel_len: np.ndarray, k1: float, b: float, delta: float) -> np.ndarray:
    """tf / (tf + k1 (1 - b + b L/Lavg)): Lucene 8 dropped the constant (k1 + 1) factor (Kamphuis et al. 2020)."""
    return tf / (tf + k1 * (1 - b + b * rel_len))


def idf_atire(df: np.ndarray, n_docs: int) -> np.ndarray:
    """log(N / df) (Trotman, Puurula & Burgess, "Improvements to BM25 and language models examined", ADCS 2014)."""
    return np.log(n_docs / df)


def tf_atire(tf: np.ndarray, rel_len: np.ndarray, k1: float, b: float, delta: float) -> np.ndarray:
    """(k1 + 1) tf / (tf + k1 (1 - b + b L/Lavg)) (Trotman et al. 2014)."""
    return (k1 + 1) * tf / (tf + k1 * (1 - b + b * rel_len))


def idf_bm25l(df: np.ndarray, n_docs: int) -> np.ndarray:
    """log((N + 1) / (df + 0.5)) (Lv & Zhai, "When documents are very long, BM25 fails!", SIGIR 2011)."""
    return np.log((n_docs + 1) / (df + 0.5))


def tf_bm25l(tf: np.ndarray, rel_len: np.ndarray, k1: float, b: float, delta: float) -> np.ndarray:
    """(k1 + 1)(c + delta) / (k1 + c + delta) with c = tf / (1 - b + b L/Lavg) (Lv & Zhai, SIGIR 2011)."""
    c = tf / (1 - b + b * rel_len)
    return (k1 + 1) * (c + delta) / (k1 + c + delta)


def idf_bm25plus(df: np.ndarray, n_docs: int) -> np.ndarray:
    """log((N + 1) / df) (Lv & Zhai, "Lower-bounding term frequency normalization", CIKM 2011)."""
    return np.log((n_docs + 1) / df)


def tf_bm25plus(tf: np.ndarray, rel_len: np.ndarray, k1: float, b: float, delta: float) -> np.ndarray:
    """(k1 + 1) tf / (tf + k1 (1 - b + b L/Lavg)) + delta (Lv & Zhai, CIKM 2011)."""
    return (k1 + 1) * tf / (tf + k1 * (1 - b + b * rel_len)) + delta


VARIANTS: Dict[str, Tuple[Callable, Callable]] = {
    "robertson": (idf_robertson, tf_robertson),
    "lucene": (idf_lucene, tf_lucene),
    "atire": (idf_atire, tf_atire),
    "bm25l": (idf_bm25l, tf_bm25l),
    "bm25+": (idf_bm25plus, tf_bm25plus),
}
assert tuple(VARIANTS) == BM25_VARIANTS  # the names BM25Config accepts (config.py)


_FORMAT = "hnm-bm25-v1"


class BM25Index:
    """An eagerly scored BM25 index over N documents; build it with `build` or `from_corpus`, or `load` it."""

    def __init__(self, config: BM25Config, terms: List[str], doc_ids: List[str], indptr: np.ndarray,
                 doc_index: np.ndarray, score: np.ndarray, absent: np.ndarray):
        self.config = config
        self.terms = terms  # (V,) term of each term id
        self.vocab = {t: i for i, t in enumerate(terms)}
        self.doc_ids = doc_ids  # (N,) external id of each document index
        self.indptr = indptr  # (V + 1,) int64: term t's postings are [indptr[t], indptr[t + 1])
        self.doc_index = doc_index  # (P,) int32, ascending within a term
        self.score = score  # (P,) float32: weight(tf) - weight(0)
        self.absent = absent  # (V,) float32: weight(0), what the term adds to every document; 0 but for bm25l/+
        self.analyser = Analyser(config.stopwords, config.stem)
        self._indptr_list = indptr.tolist()  # Python ints slice faster than NumPy scalars, once per query term

    @classmethod
    def build(cls, documents: Sequence[Sequence[str]], doc_ids: Sequence[str],
              config: BM25Config = BM25Config()) -> "BM25Index":
        """Index N documents given as term lists (already analysed); doc_ids names them in the same order."""
        n_docs = len(documents)
        if n_docs == 0 or n_docs != len(doc_ids):
            raise ValueError(f"need one id per document and at least one document; got {n_docs} documents and "
                             f"{len(doc_ids)} ids")
        if len(set(doc_ids)) != n_docs:
            raise ValueError(f"document ids must be distinct; {n_docs - len(set(doc_ids))} repeat")
        vocab: Dict[str, int] = {}
        lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=n_docs)  # (N,)
        if lengths.sum() == 0:
            raise ValueError("no document has a term left after analysis; BM25 has nothing to index")
        token = np.fromiter((vocab.setdefault(t, len(vocab)) for d in documents for t in d), dtype=np.int64,
                            count=int(lengths.sum()))  # (all tokens,) term id of each token, document by document
        doc_of_token = np.repeat(np.arange(n_docs), lengths)
        # one key per token, term * N + document: sorted distinct keys are the postings in CSC order, their counts tf
        key, tf = np.unique(token * n_docs + doc_of_token, return_counts=True)  # (P,)
        term, doc = np.divmod(key, n_docs)
        df = np.bincount(term, minlength=len(vocab))  # (V,)
        indptr = np.concatenate([[0], np.cumsum(df)])

        idf_fn, tf_fn = VARIANTS[config.variant]
        idf = idf_fn(df.astype(np.float64), n_docs)  # (V,)
        rel_len = lengths / lengths.mean()  # (N,) L / Lavg
        absent = idf * tf_fn(np.zeros(1), np.ones(1), config.k1, config.b, config.delta)  # (V,)
        score = idf[term] * tf_fn(tf.astype(np.float64), rel_len[doc], config.k1, config.b, config.delta) - absent[term]
        return cls(config, list(vocab), list(doc_ids), indptr, doc.astype(np.int32), score.astype(np.float32),
                   absent.astype(np.float32))

    @classmethod
    def from_corpus(cls, corpus: Dict[str, dict], config: BM25Config = BM25Config(),
                    quiet: bool = False) -> "BM25Index":
        """Analyse and index a BEIR corpus {doc id: {"title", "text"}}; a document's text is "title text"."""
        analyse = Analyser(config.stopwords, config.stem)
        documents = []
        with Progress(len(corpus), "bm25 index", quiet=quiet, unit=" docs") as bar:
            for doc in corpus.values():
                documents.append(analyse(document_text(doc)))
                bar.update()
        return cls.build(documents, list(corpus), config)

    def _sums(self, terms: Sequence[str]) -> Tuple[np.ndarray, float]:
        """-> (the query terms' postings summed per document (N,) float64, the sum of their weight(0)).

        Unknown terms add nothing; a repeated term adds its postings again.
        """
        ids = [self.vocab[t] for t in terms if t in self.vocab]
        if not ids:
            return np.zeros(len(self.doc_ids)), 0.0
        ptr = self._indptr_list
        # a term's postings hold distinct documents, but the query's terms share documents: bincount sums them all
        # (it is np.add.at(sums, doc_index, score) over the terms' postings, several times faster)
        sums = np.bincount(np.concatenate([self.doc_index[ptr[t]:ptr[t + 1]] for t in ids]),
                           np.concatenate([self.score[ptr[t]:ptr[t + 1]] for t in ids]), minlength=len(self.doc_ids))
        return sums, float(self.absent[ids].sum(dtype=np.float64))

    def scores(self, queries: Sequence[Sequence[str]]) -> np.ndarray:
        """Every document's score for each query given as terms: (Q, N) float64."""
        out = np.empty((len(queries), len(self.doc_ids)))
        for row, terms in zip(out, queries):
            sums, absent = self._sums(terms)
            row[:] = sums + absent
        return out

    def search(self, queries: Sequence[Sequence[str]], k: int = 100) -> Tuple[np.ndarray, np.ndarray]:
        """The k best documents of each query given as terms, best first; equal scores rank by document order.

        -> (document indices (Q, k) int64, scores (Q, k) float64); k is capped at N.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        n_docs = len(self.doc_ids)
        k = min(k, n_docs)
        top_index, top_score = np.empty((len(queries), k), np.int64), np.empty((len(queries), k))
        for i, terms in enumerate(queries):
            sums, absent = self._sums(terms)
            # the k-th best score by partition, O(N), then only the documents that reach it are sorted (np.partition
            # and a threshold is about twice as fast as np.argpartition, and puts ties in document order)
            threshold = np.partition(sums, n_docs - k)[n_docs - k]
            candidates = np.flatnonzero(sums >= threshold)  # ascending document index, k or more (ties)
            best = candidates[np.argsort(-sums[candidates], kind="stable")[:k]]
            top_index[i] = best
            # a query's weight(0) sum is the same for every document, so it is added to the k best only
            top_score[i] = sums[best] + absent
        return top_index, top_score

    def run(self, queries: Dict[str, str], k: int = 100) -> Dict[str, Dict[str, float]]:
        """Analyse and search query texts {qid: text} -> a run {qid: {doc id: score}} of the k best each."""
        top_index, top_score = self.search([self.analyser(text) for text in queries.values()], k)
        return {qid: {self.doc_ids[i]: float(s) for i, s in zip(idx, sc)}
                for qid, idx, sc in zip(queries, top_index.tolist(), top_score.tolist())}

    def save(self, folder) -> None:
        """Write folder/bm25.npz (the arrays) and folder/bm25.json (configuration, terms, document ids); no pickle."""
        folder = Path(folder)
        with atomic_write(folder / "bm25.npz", "wb") as f:
            np.savez(f, indptr=self.indptr, doc_index=self.doc_index, score=self.score, absent=self.absent)
        meta = {"format": _FORMAT, "config": asdict(self.config), "terms": self.terms, "doc_ids": self.doc_ids}
        with atomic_write(folder / "bm25.json") as f:
            json.dump(meta, f, ensure_ascii=False)

    @classmethod
    def load(cls, folder) -> "BM25Index":
        """Read an index that `save` wrote; a file that does not fit raises InputError."""
        folder = Path(folder)
        for name in ("bm25.json", "bm25.npz"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: no such file; write the index with BM25Index.save")
        with open(folder / "bm25.json", encoding="utf-8") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise InputError(f"{folder / 'bm25.json'}: not an hnm BM25 index (expected format {_FORMAT!r})")
        with np.load(folder / "bm25.npz", allow_pickle=False) as z:
            arrays = {name: z[name] for name in ("indptr", "doc_index", "score", "absent")}
        n_terms, n_docs = len(meta["terms"]), len(meta["doc_ids"])
        indptr, doc_index = arrays["indptr"], arrays["doc_index"]
        if (indptr.shape != (n_terms + 1,) or arrays["absent"].shape != (n_terms,)
                or doc_index.shape != arrays["score"].shape or indptr[-1] != len(doc_index)
                or (len(doc_index) and not 0 <= doc_index.min() <= doc_index.max() < n_docs)):
            raise InputError(f"{folder}: bm25.npz does not fit bm25.json ({n_terms} terms, {n_docs} documents)")
        return cls(BM25Config(**meta["config"]), meta["terms"], meta["doc_ids"], **arrays)
