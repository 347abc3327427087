"""Document vectors on disk: one .npy matrix in float32, float16 or bfloat16, written block by block and
memory-mapped, so that a corpus of ten million vectors is one file every process of a machine shares.

    write_vectors(path, blocks, n=N, dim=D, dtype="float16")   # blocks: (B, D) float32 arrays, in row order
    docs = VectorFile(path)                                     # nothing read yet
    docs[rows]                                                  # (len(rows), D) float32, read from the file
    for start, block in docs.blocks(65536): ...                 # (B, D) float32 blocks, in row order

A `VectorFile` slices like a (N, D) float32 array (an index array, a slice or one row), each read upcast to float32,
so the code that scores candidates (ensemble.py, search.exact_scores) takes it in place of an array. The operating
system keeps the pages that were read in its page cache and shares them among the processes that map the file:
under torchrun the ranks of one machine hold the vectors once, not once each.

Precision. float32 stores the vectors as they are: every score is the bits the in-memory path gives. float16 keeps
11 significant bits (a relative error of at most 2^-11 a component) and halves the file; bfloat16 keeps 8 bits and
float32's range (numpy has no bfloat16, so the file holds its bit patterns as uint16, the upper halves of the float32
words, rounded to nearest even). For unit vectors either moves an inner product by about 1e-4 (float16) or 1e-3
(bfloat16); scripts/bench_mine_scale.py measures what that does to the mined negatives.

Not here: the embedding cache's keys (embed.py), quantisation beyond 16 bits, vectors spread over several files.
Letters: N rows, D dimensions, B rows of one block.
"""

import os
from pathlib import Path
from typing import Iterable, Iterator, Tuple, Union

import numpy as np

DTYPES = ("float32", "float16", "bfloat16")
STORED = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}  # what the .npy file declares
BLOCK_ROWS = 65536  # rows of one block read or written at a time: 96 MiB of float32 at D = 384


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 bit patterns, rounded to nearest even (as torch's .to(torch.bfloat16)).
    [1.0, 1.00390625] -> [0x3F80, 0x3F80] (the tie goes to the even mantissa); [1.01171875] -> [0x3F82]."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> the float32 values they stand for (exact)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def encode_rows(x: np.ndarray, dtype: str) -> np.ndarray:
    """(B, D) float32 rows -> the array the file stores for `dtype`."""
    if dtype == "bfloat16":
        return to_bfloat16_bits(x)
    return np.asarray(x, dtype=STORED[dtype])


def decode_rows(stored: np.ndarray) -> np.ndarray:
    """Rows as the file stores them -> float32 (no copy for float32 rows already in memory)."""
    if stored.dtype == np.uint16:
        return from_bfloat16_bits(stored)
    return np.asarray(stored, dtype=np.float32)


def write_vectors(path: Path, blocks: Iterable[np.ndarray], n: int, dim: int, dtype: str = "float32") -> "VectorFile":
    """Write n rows of `dim` floats, given as consecutive float32 blocks, to `path` in `dtype`; atomically (a temporary
    name, then a rename), so a reader never maps a half-written file. Memory: one block (the rows are written with
    plain writes, not through a map, so that written pages do not stay in this process's resident memory)."""
    if dtype not in DTYPES:
        raise ValueError(f"vector dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(STORED[dtype])), "fortran_order": False,
              "shape": (n, dim)}
    done = 0
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for block in blocks:
                if block.ndim != 2 or block.shape[1] != dim or done + len(block) > n:
                    raise ValueError(f"{path}: a block of shape {block.shape} does not fit rows {done}.. of "
                                     f"({n}, {dim})")
                f.write(np.ascontiguousarray(encode_rows(block, dtype)).tobytes())
                done += len(block)
            if done != n:
                raise ValueError(f"{path}: {done} rows written, {n} announced")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return VectorFile(path)


def array_blocks(x: np.ndarray, rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """A (N, D) array as consecutive (B, D) float32 blocks, for write_vectors."""
    for start in range(0, len(x), rows):
        yield np.asarray(x[start:start + rows], dtype=np.float32)


class VectorFile:
    """A (N, D) matrix in a .npy file, mapped read-only; indexing reads rows and returns them as float32."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such vector file")
        self.raw = np.load(self.path, mmap_mode="r")  # (N, D) as stored; pages are read when touched
        if self.raw.ndim != 2 or self.raw.dtype not in (np.float32, np.float16, np.uint16):
            raise ValueError(f"{self.path}: expected a (N, D) float32, float16 or bfloat16 (uint16) matrix, got "
                             f"{self.raw.dtype} of shape {self.raw.shape}")
        self.dtype = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16",
                      np.dtype(np.uint16): "bfloat16"}[self.raw.dtype]

    @property
    def shape(self) -> Tuple[int, int]:
        return self.raw.shape

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.raw.shape[0]

    def __getitem__(self, rows: Union[int, slice, np.ndarray, list]) -> np.ndarray:
        """Rows as float32: docs[[3, 1]] is (2, D), docs[5:9] is (4, D), docs[7] is (D,).

        A range of rows is read with a plain read, an index array through the map: a block scan (k-means
        assignment, building the ensemble's vectors) then leaves no pages in resident memory, while the scattered
        rows of a query's candidates are read where they lie."""
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(len(self))
            count = max(stop - start, 0) * self.shape[1]
            offset = self.raw.offset + start * self.shape[1] * self.raw.itemsize
            stored = np.fromfile(self.path, dtype=self.raw.dtype, count=count, offset=offset)
            return decode_rows(stored.reshape(-1, self.shape[1]))
        return decode_rows(self.raw[rows])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole matrix in memory as float32 (what code that needs an array gets: small corpora only)."""
        return np.asarray(self[:], dtype=dtype or np.float32)

    def blocks(self, rows: int = BLOCK_ROWS) -> Iterator[Tuple[int, np.ndarray]]:
        """(first row, (B, D) float32 block) in row order; memory: one block."""
        for start in range(0, len(self), rows):
            yield start, self[start:start + rows]
