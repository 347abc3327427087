"""The allocator setting: a large tensor freed and allocated again is reused, not mapped and faulted in afresh."""

import platform
import subprocess
import sys

PROBE = """
import resource, sys, torch
from hnm.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(6):  # 64 MiB of float32, above glibc's largest automatic mmap threshold (32 MiB), allocated and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del x
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
