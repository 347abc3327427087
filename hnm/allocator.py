"""Keep freed memory in the process: glibc's malloc returns large blocks to the kernel, and getting them back costs
more than the arithmetic done in them.

glibc serves an allocation above its mmap threshold with a fresh mmap and unmaps it on free. The threshold adapts
upward as such blocks are freed, but only to 32 MiB, and the tensors of a transformer on CPU are often larger: a
forward pass over 32 texts of 256 tokens allocates the (8192, 1536) float32 feed-forward intermediate, 48 MiB, in
every layer, and training's attention probabilities with their dropout mask, (16, 12, 256, 256) float32, are 48 MiB
too. Each new block of that size is mapped afresh, so the kernel zeroes every 4 KiB page at its first touch. Measured
on a 2-core AVX2 CPU (one thread): attention forward and backward with dropout, batch 16 x 256 tokens, 442 ms -> 246
ms; a training step of all-MiniLM-L6-v2 (16 pairs of 256 tokens) 1.3x faster; a forward pass on 32 x 256 tokens
1.1x faster. The heap needs a cycle or two of a given size before a freed block is large enough to be reused.

`keep_freed_memory` raises the mmap threshold and the trim threshold to 1 GiB, so such blocks come from the heap and
go back to it, to be reused by the next layer. PyTorch's CPU tuning guide gets the same effect by preloading jemalloc
or tcmalloc; this needs neither. The cost: memory freed by the process is kept by it (peak resident memory does not
grow). On a C library without mallopt (macOS, musl) nothing is done.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # bytes; an int for C
# the same setting for another process (a benchmark's reference run), through glibc's environment variables
ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(THRESHOLD)}

_done = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when the C library accepted both."""
    global _done
    if _done is None:
        _done = False
        name = ctypes.util.find_library("c")
        try:
            mallopt = ctypes.CDLL(name).mallopt if name else None
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            _done = all(mallopt(param, THRESHOLD) == 1 for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD))
    return _done
