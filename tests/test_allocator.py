"""The allocator setting: a large block freed and allocated again is reused, not mapped and faulted in afresh.

The probe allocates through the C library's malloc itself, the allocator the setting changes: how a given torch
build obtains its tensors (malloc, or an aligned allocation that glibc may serve otherwise) is torch's, and on some
builds its 64 MiB tensors are faulted in afresh whatever the setting (measured with torch 2.13 on glibc 2.36)."""

import platform
import subprocess
import sys

PROBE = """
import ctypes, resource, sys
from hnm.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_void_p,)
faults = []
for _ in range(6):  # 64 MiB, above glibc's largest automatic mmap threshold (32 MiB), allocated, written, freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[3:]))  # the steady state: the heap needs a cycle or two to hold a free block large enough
"""

def page_faults(mode: str) -> int:
    """Minor page faults of the last three of six cycles, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_large_blocks_are_reused_instead_of_faulted_in_again():
    if platform.libc_ver()[0] != "glibc":  # mallopt's thresholds are glibc's; elsewhere the setting reports False
        from hnm.allocator import keep_freed_memory
        assert keep_freed_memory() is False
        return
    pages = 3 * (64 << 20) // 4096
    assert page_faults("default") > pages // 2  # each new mapping's 4 KiB pages are faulted in at first touch
    assert page_faults("keep") < pages // 20


def test_setting_is_made_once_and_reports_success():
    from hnm.allocator import keep_freed_memory
    assert keep_freed_memory() is keep_freed_memory()
