"""Texts to vectors with one model of weights.lock: prefixes, batching by length, pooling, and an on-disk cache.

    emb = Embedder.load("all-MiniLM-L6-v2")
    vectors = emb.encode(["first text", "second text"], kind="document")   # (2, 384) float32, input order

`encode` prepends the model's query or document prefix, tokenises, sorts texts by token count so that each batch
pads little, runs the encoder without gradients (two batches at once when torch has two or more threads, each on
its share of them), pools and (per the lock) L2-normalises, and puts the rows back in input order. Optional
bfloat16 autocast gives a cosine of about 0.9999 to the float32 vectors; it is faster only on CPUs with bfloat16
instructions (AVX512-BF16, AMX) and several times slower on those without (AVX2 only).

The cache keeps vectors under $HNM_HOME/embeddings/<identity>/, where <identity> hashes everything a vector depends
on besides its text: the sha256 of the model's three files, the prefix, the maximum length, the pooling, the
normalisation and the precision. A change to any of them therefore lands in a new folder and never reuses a stale
vector. Inside, each text is keyed by the sha256 of its prefixed form. New vectors are written every
`flush_every` texts as an atomically renamed shard, so a killed run keeps what it had finished. The device is not
part of the identity: a vector made on a GPU is reused on the CPU and the other way round.

Under torchrun (distributed.py), the W ranks encode one text list together. A text counts as cached only when every
rank has it (so all plan the same work, whether or not the ranks share a disk); each block of `flush_every` missing
texts is cut into the batches one process would make, batch i goes to rank i mod W, each rank writes the vectors it
made as its own cache shard (named by the hash of its keys, so no two ranks write the same file), and an
all-gather gives every rank the whole block. Each batch is the same batch; computed on as many threads as one
process's stream has (torchrun gives each rank one; one process on two threads runs two streams of one), it gives
the same bits as a one-process run's.

`save_embeddings` writes the vectors (.npy) and their row ids (.ids.txt) as a pair that must agree: both in full
under temporary names first, so a full disk or a crash while writing leaves the old pair; then the old ids file is
removed and the two renamed into place, the ids last. A finished ids file is thus the mark of a whole pair, and a
crash between the renames (nothing is written there) leaves vectors without ids, which `load_embeddings` reports,
never vectors beside another run's ids.

Not here: combining models (ensemble.py) and similarity search (search.py).
"""

import functools
import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from hnm.config import PRECISIONS, EmbedConfig
from hnm.data import atomic_write
from hnm.distributed import current, resolve_device
from hnm.encoder import EncoderConfig, build_encoder
from hnm.errors import InputError
from hnm.pooling import l2_normalize, pool
from hnm.progress import Progress
from hnm.tokenize import Batch, Tokenizer
from hnm.weights import ModelSpec, fetch, home, load_safetensors_strict, model_spec

LONG_RUN = 5000  # texts to encode from which a float32 run on a CPU with bfloat16 units is told what auto would save


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once per process ("" where there is none): `auto` is resolved at every scoring call."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def native_bf16(device: torch.device = torch.device("cpu"), cpuinfo: Optional[str] = None) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU whose flags (the text of
    /proc/cpuinfo, read when not given) name avx512_bf16 or amx_bf16. Elsewhere autocast emulates bfloat16 slowly."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device = torch.device("cpu"),
                      cpuinfo: Optional[str] = None) -> str:
    """"auto" -> "bfloat16" where the hardware has it natively, else "float32"; any other precision unchanged."""
    if precision == "auto":
        return "bfloat16" if native_bf16(device, cpuinfo) else "float32"
    return precision


def stream_plan(streams: int, threads: int) -> tuple:
    """(streams, torch threads per stream) for `streams` (0: automatic) on `threads` torch threads."""
    if streams < 0:
        raise ValueError(f"streams must be 0 (automatic) or a positive number, not {streams}")
    n = min(streams or 2, max(threads, 1))
    return n, max(threads // n, 1)


def planned_streams(streams: int) -> int:
    """The streams the batches are cut for: the configured number (0: 2), whatever the threads, so that one process
    and W processes of one thread each cut a block into the same batches."""
    return streams or 2


def batch_sizes(n: int, batch_size: int, streams: int) -> List[int]:
    """Sizes of the batches for n texts: full batches in rounds of one per stream, then what is left split evenly
    over the streams, so that no stream sits idle while another runs a last full batch alone."""
    full = n // (batch_size * streams) * streams
    rest = n - full * batch_size
    parts = min(streams, rest)
    return [batch_size] * full + [rest // parts + (i < rest % parts) for i in range(parts)]


def _rows(batches: List[np.ndarray], rank: int, world: int) -> np.ndarray:
    """The rows of the batches rank r encodes (r, r + W, ...), in that order."""
    return np.concatenate(batches[rank::world] or [np.zeros(0, dtype=np.int64)])


class EmbeddingCache:
    """Vectors on disk in one folder per identity, as .npz shards of (keys: (n, 32) uint8 sha256, vectors: (n, D))."""

    def __init__(self, root: Path, identity: dict):
        blob = json.dumps(identity, sort_keys=True).encode()
        self.folder = root / hashlib.sha256(blob).hexdigest()[:24]
        self.identity = identity
        self._rows: Optional[Dict[bytes, np.ndarray]] = None

    def _load(self) -> Dict[bytes, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            for shard in sorted(self.folder.glob("shard-*.npz")):
                with np.load(shard, allow_pickle=False) as z:
                    for key, vec in zip(z["keys"], z["vectors"]):
                        self._rows[key.tobytes()] = vec
        return self._rows

    def get(self, key: bytes) -> Optional[np.ndarray]:
        return self._load().get(key)

    def remember(self, keys: List[bytes], vectors: np.ndarray) -> None:
        """Hold vectors another rank wrote to its own shard, in memory only."""
        rows = self._load()
        for k, v in zip(keys, vectors):
            rows[k] = v

    def add(self, keys: List[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "identity.json").exists():
            with atomic_write(self.folder / "identity.json") as f:
                json.dump(self.identity, f, indent=1)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        name = hashlib.sha256(key_array.tobytes()).hexdigest()[:16]
        with atomic_write(self.folder / f"shard-{name}.npz", "wb") as f:
            np.savez(f, keys=key_array, vectors=vectors.astype(np.float32))
        rows = self._load()
        for k, v in zip(keys, vectors):
            rows[k] = v


class Embedder:
    def __init__(self, spec: ModelSpec, folder: Path, cfg: EmbedConfig = EmbedConfig()):
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"precision {cfg.precision!r} is not one of {', '.join(PRECISIONS)}")
        stream_plan(cfg.streams, 1)  # a bad number of streams fails here, not at the first long encode
        self.spec = spec
        self.device = current().device if cfg.device is None else resolve_device(cfg.device)
        self.cfg = replace(cfg, precision=resolve_precision(cfg.precision, self.device))  # decided once, as cached
        self.model = build_encoder(EncoderConfig.from_json(folder / "config.json"))
        load_safetensors_strict(self.model, folder / "model.safetensors")
        self.model.eval().to(self.device)
        self.tokenizer = Tokenizer.from_file(folder / "tokenizer.json", spec.max_length)
        self.dim = self.model.config.hidden_size
        self._caches: Dict[str, EmbeddingCache] = {}

    @classmethod
    def load(cls, name: str, cfg: EmbedConfig = EmbedConfig(), lock: Optional[dict] = None,
             quiet: bool = False) -> "Embedder":
        """Fetch (if needed) and load the model `name` of weights.lock."""
        spec = model_spec(name, lock)
        return cls(spec, fetch(name, lock, quiet=quiet), cfg)

    def prefix(self, kind: str) -> str:
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
        return self.spec.query_prefix if kind == "query" else self.spec.document_prefix

    def cache(self, kind: str) -> EmbeddingCache:
        prefix = self.prefix(kind)
        if prefix not in self._caches:
            identity = {"model": self.spec.name, "files": {f: s.sha256 for f, s in sorted(self.spec.files.items())},
                        "prefix": prefix, "max_length": self.spec.max_length, "pooling": self.spec.pooling,
                        "normalize": self.spec.normalize, "precision": self.cfg.precision}
            self._caches[prefix] = EmbeddingCache(home() / "embeddings", identity)
        return self._caches[prefix]

    def forward(self, texts: Sequence[str]) -> np.ndarray:
        """One batch of already-prefixed texts -> (B, D) float32 vectors, no cache."""
        return self._vectors(self.tokenizer(texts))

    @torch.no_grad()
    def _vectors(self, batch: Batch) -> np.ndarray:
        ids, mask, types = (t.to(self.device) for t in (batch.input_ids, batch.attention_mask, batch.token_type_ids))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bfloat16"):
            hidden = self.model(ids, mask, types)  # (B, T, H)
            vectors = pool(self.spec.pooling, hidden.float(), mask)  # (B, H)
        if self.spec.normalize:
            vectors = l2_normalize(vectors)
        return vectors.float().cpu().numpy()

    def encode(self, texts: Sequence[str], kind: str = "document", quiet: bool = False) -> np.ndarray:
        """(N,) texts -> (N, D) float32 vectors in input order, through the cache when it is on."""
        procs = current()
        prefixed = [self.prefix(kind) + t for t in texts]
        out = np.zeros((len(prefixed), self.dim), dtype=np.float32)
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in prefixed]
        cache = self.cache(kind) if self.cfg.cache else None
        hits = [cache.get(key) if cache else None for key in keys]
        if procs.world > 1 and cache:  # cached only where every rank has it, so that all plan the same work
            everywhere = procs.all_min(torch.tensor([h is not None for h in hits], dtype=torch.int32)).tolist()
            hits = [h if ok else None for h, ok in zip(hits, everywhere)]
        todo: Dict[bytes, List[int]] = {}  # each distinct missing text once, with every row that wants it
        for i, (key, hit) in enumerate(zip(keys, hits)):
            if hit is not None:
                out[i] = hit
            else:
                todo.setdefault(key, []).append(i)
        missing = list(todo)
        if len(missing) >= LONG_RUN and self.cfg.precision == "float32" and native_bf16() and not quiet:
            print(f"note: this CPU computes bfloat16 natively; --precision auto (or bfloat16) would encode these "
                  f"{len(missing):,} texts about 1.7x faster, at a cosine of about 0.9999 to float32",
                  file=sys.stderr, flush=True)
        with Progress(len(missing), desc=f"embed {self.spec.name}", quiet=quiet or not missing or not procs.main) \
                as bar:
            for start in range(0, len(missing), self.cfg.flush_every):
                block = missing[start:start + self.cfg.flush_every]
                block_texts = [prefixed[todo[k][0]] for k in block]
                encodings = self.tokenizer.encode(block_texts)
                batches = self._batches(encodings)
                rows = _rows(batches, procs.rank, procs.world)
                vectors = np.zeros((len(block), self.dim), dtype=np.float32)
                vectors[rows] = self._encode_batches(encodings, batches[procs.rank::procs.world],
                                                     bar if procs.world == 1 else None)
                if cache:  # this rank's part, on disk before the others hear of it
                    cache.add([block[i] for i in rows], vectors[rows])
                if procs.world > 1:
                    for r, blob in enumerate(procs.all_gather_bytes(vectors[rows].tobytes())):
                        theirs = _rows(batches, r, procs.world)
                        vectors[theirs] = np.frombuffer(blob, dtype=np.float32).reshape(len(theirs), self.dim)
                        if cache and r != procs.rank:
                            cache.remember([block[i] for i in theirs], vectors[theirs])
                    bar.update(len(block))
                for k, v in zip(block, vectors):
                    out[todo[k]] = v
        return out

    def _batches(self, encodings: list) -> List[np.ndarray]:
        """The rows of each batch, longest texts first, in batches of similar length (`batch_sizes` for the
        planned streams)."""
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        bounds = np.cumsum([0] + batch_sizes(len(encodings), self.cfg.batch_size, planned_streams(self.cfg.streams)))
        return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _encode_batches(self, encodings: list, batches: List[np.ndarray], bar: Optional[Progress]) -> np.ndarray:
        """Encode the given batches (rows of the tokenised `encodings`); return their vectors, batch after batch.

        With two or more streams, that many batches run at once, each in its own thread on its share of torch's
        threads. On two CPU cores, two batches on one thread each ran 1.08x faster than one batch on two threads
        (median of three 2,000-document runs, scripts/bench_encode.py) and drifted less with the machine's load:
        a single-thread stream never waits for the other core, while one batch on two threads meets a barrier at
        every operation, the small ones between the matrix products (layer norm, GELU, residual adds) included.
        Each batch is computed the same way whatever the number of streams, so the vectors do not depend on it
        beyond float rounding. Costs: one more batch's activations in memory."""
        streams, per_stream = stream_plan(self.cfg.streams, torch.get_num_threads())

        def run(idx: np.ndarray) -> np.ndarray:
            return self._vectors(self.tokenizer.pad([encodings[i] for i in idx]))

        pool = None  # torch's thread count is per thread: each worker sets its own share once
        if streams > 1 and len(batches) > 1:
            pool = ThreadPoolExecutor(streams, thread_name_prefix="hnm-embed", initializer=torch.set_num_threads,
                                      initargs=(per_stream,))
        results = pool.map(run, batches) if pool else map(run, batches)
        parts = []
        try:
            for idx, rows in zip(batches, results):
                parts.append(rows)
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)


def save_embeddings(path: Path, ids: Sequence[str], vectors: np.ndarray) -> None:
    """Write (N, D) `vectors` to `path` (.npy) and their N row ids, one a line, to its .ids.txt, as one pair
    (see the module docstring)."""
    path = Path(path)
    ids_path = path.with_suffix(".ids.txt")
    assert len(ids) == len(vectors)
    with atomic_write(ids_path) as f_ids:
        f_ids.writelines(f"{doc_id}\n" for doc_id in ids)
        f_ids.flush()
        os.fsync(f_ids.fileno())
        with atomic_write(path, "wb") as f_vec:
            np.save(f_vec, vectors, allow_pickle=False)
            f_vec.flush()
            os.fsync(f_vec.fileno())
            ids_path.unlink(missing_ok=True)  # both new files are whole on disk: only the renames remain


def load_embeddings(path: Path):
    """(row ids, (N, D) vectors) that save_embeddings wrote; a pair that does not agree raises InputError."""
    path = Path(path)
    ids_path = path.with_suffix(".ids.txt")
    if not ids_path.is_file():
        raise InputError(f"{path}: its row ids {ids_path} are missing (an interrupted hnm embed?); embed again")
    ids = ids_path.read_text(encoding="utf-8").splitlines()
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InputError(f"{path}: {vectors.shape[0]} rows of vectors but {len(ids)} ids in {ids_path}; "
                         f"the two are not one pair, embed again")
    return ids, vectors
