"""The device feed: (query, document) pairs tokenised once, padded into batches ahead of the step on a thread.

    store = TokenStore(model.tokenizer, texts)                # every distinct text tokenised once, kept for the run
    batch = store.pairs(queries, documents)                   # the Batch that Tokenizer.pairs would make, same tensors
    for item, waited in Prefetch(make, range(n), depth=2): ...  # make(i) runs on a thread, `depth` items ahead

Why. Between two steps the training loop and the re-ranker used to tokenise every pair's two texts again (a query
re-ranked against 100 documents was tokenised 100 times) and pad them, on the thread that drives the device: on a
GPU the device waited for it (about 29 ms for 32 pairs, on an H200). Here each distinct text is tokenised once, in
one `encode_batch` call; a pair is assembled from the two id lists and the tokenizer's own pair template
([CLS] q [SEP] d [SEP] for BERT, <s> q </s></s> d </s> for MPNet), cut as tokenize.py cuts it (the document first);
and a thread prepares the next batches while the device computes, so the loop only waits where the thread is
slower than the step. Padding goes into pinned memory when the batches are bound for a GPU, so that the copy to the
device can run beside the host's work.

The batches are the same tensors as before, so the losses and the scores are the same bits. Bucketing by length
(train.py's feed "bucketed") changes which examples share a step, and is an option of its own.

Not here: the training loop and its order of examples (train.py), the model (reranker.py).
Letters: B pairs of a batch, T tokens of its longest pair.
"""

import queue
import threading
import time
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch

from hnm.tokenize import Batch, Tokenizer


def pair_template(tokenizer: Tokenizer) -> Tuple[list, list, list, Tuple[int, int]]:
    """The special tokens the tokenizer puts around a pair: (ids, token types) before the query, between the two and
    after the document, and the token types of the query's and the document's own tokens.
    BERT: ([101], [0]), ([102], [0]), ([102], [1]), (0, 1)."""
    tok = tokenizer.tok
    a, b = tok.encode("hello world", add_special_tokens=False), tok.encode("x y z", add_special_tokens=False)
    e = tok.post_process(a, b, add_special_tokens=True)
    ids, types, na, nb = e.ids, e.type_ids, len(a.ids), len(b.ids)
    for p in range(len(ids)):  # where the query's ids start, then the document's
        if ids[p:p + na] == a.ids:
            for q in range(p + na, len(ids)):
                if ids[q:q + nb] == b.ids:
                    return ((ids[:p], types[:p]), (ids[p + na:q], types[p + na:q]), (ids[q + nb:], types[q + nb:]),
                            (types[p], types[q]))
    raise ValueError("the tokenizer's pair template could not be read")


class TokenStore:
    """The token ids of distinct texts (no special tokens, at most max_length of them), made once."""

    def __init__(self, tokenizer: Tokenizer, texts: Iterable[str] = ()):
        self.tokenizer = tokenizer
        (self.before, self.between, self.after, (self.query_type, self.doc_type)) = pair_template(tokenizer)
        self.ids: Dict[str, np.ndarray] = {}
        self.add(texts)

    def add(self, texts: Iterable[str]) -> None:
        """Tokenise the texts not yet stored, in one batch call."""
        new = list(dict.fromkeys(t for t in texts if t not in self.ids))
        if new:
            for text, e in zip(new, self.tokenizer.tok.encode_batch(new, add_special_tokens=False)):
                self.ids[text] = np.array(e.ids[:self.tokenizer.max_length], dtype=np.int64)

    def pair(self, query: str, document: str) -> Tuple[np.ndarray, np.ndarray]:
        """(ids, token types) of one pair, cut as Tokenizer.encode_pairs cuts it: the document first."""
        budget = self.tokenizer.max_length - self.tokenizer.specials_pair
        q = self.ids[query][:budget]
        d = self.ids[document][:budget - len(q)]
        (b_ids, b_types), (m_ids, m_types), (a_ids, a_types) = self.before, self.between, self.after
        ids = np.concatenate([b_ids, q, m_ids, d, a_ids]).astype(np.int64)
        types = np.concatenate([b_types, np.full(len(q), self.query_type), m_types, np.full(len(d), self.doc_type),
                                a_types]).astype(np.int64)
        return ids, types

    def pair_lengths(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """(P,) tokens of each pair, specials included, without building the pairs."""
        budget = self.tokenizer.max_length - self.tokenizer.specials_pair
        q = np.array([min(len(self.ids[t]), budget) for t in queries])
        d = np.array([len(self.ids[t]) for t in documents])
        return q + np.minimum(d, budget - q) + self.tokenizer.specials_pair

    def pairs(self, queries: Sequence[str], documents: Sequence[str], pin: bool = False) -> Batch:
        """One padded batch of pairs: the tensors Tokenizer.pairs makes; in pinned memory when `pin`."""
        rows = [self.pair(q, d) for q, d in zip(queries, documents)]
        T = max(len(ids) for ids, _ in rows)
        ids = np.full((len(rows), T), self.tokenizer.pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), T), dtype=np.int64)
        types = np.zeros((len(rows), T), dtype=np.int64)
        for i, (r_ids, r_types) in enumerate(rows):
            ids[i, :len(r_ids)], mask[i, :len(r_ids)], types[i, :len(r_ids)] = r_ids, 1, r_types
        tensors = [torch.from_numpy(x) for x in (ids, mask, types)]
        return Batch(*(t.pin_memory() if pin else t for t in tensors))


class Prefetch:
    """make(key) for each key, computed on a background thread up to `depth` keys ahead; iterating yields
    (result, seconds this thread waited for it). An exception in `make` is raised here, at its key."""

    def __init__(self, make: Callable, keys: Iterable, depth: int = 2):
        self._queue: "queue.Queue" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make, iter(keys)), daemon=True, name="hnm-feed")
        self._thread.start()

    def _run(self, make: Callable, keys: Iterator) -> None:
        for key in keys:
            try:
                item = (True, make(key))
            except BaseException as e:  # handed to the consumer, which raises it where it would have arisen
                item = (False, e)
            if not self._put(item) or not item[0]:
                return
        self._put((True, StopIteration))

    def _put(self, item) -> bool:
        """Queue the item, waiting for room unless the consumer has left (then False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        ok, item = self._queue.get()
        if not ok:
            raise item
        if item is StopIteration:
            raise StopIteration
        return item, time.perf_counter() - t

    def close(self) -> None:
        """Stop the thread (when the consumer leaves early)."""
        self._stop.set()
        self._thread.join()


class Inline:
    """Prefetch's interface without the thread: make(key) computed when asked; yields (result, seconds it took)."""

    def __init__(self, make: Callable, keys: Iterable):
        self._make, self._keys = make, iter(keys)

    def __iter__(self):
        return self

    def __next__(self):
        key = next(self._keys)
        t = time.perf_counter()
        item = self._make(key)
        return item, time.perf_counter() - t

    def close(self) -> None:
        pass


def bucket_order(order: np.ndarray, lengths: np.ndarray, group: int, window: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Bucketing by length: `order` cut into windows of `window` groups of `group` examples; within a window the
    examples sorted by length (longest first, so a group pads little), then the window's groups shuffled by `rng`,
    so that long and short steps still alternate. The examples are the same, in other groups.
    order [0..7], lengths [5, 1, 7, 2, 8, 3, 6, 4], group 2, window 4 -> groups {4, 2}, {6, 0}, {7, 5}, {3, 1},
    in a shuffled order."""
    out = []
    span = group * window
    for s in range(0, len(order), span):
        part = order[s:s + span]
        part = part[np.argsort(-lengths[part], kind="stable")]
        groups = [part[g:g + group] for g in range(0, len(part), group)]
        out += [groups[i] for i in rng.permutation(len(groups))]
    return np.concatenate(out) if out else order


def sorted_batches(lengths: np.ndarray, batch_size: int) -> List[np.ndarray]:
    """Rows of each batch, longest first, so a batch pads little: lengths [3, 9, 5], batch 2 -> [[1, 2], [0]]."""
    order = np.argsort(-lengths, kind="stable")
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
