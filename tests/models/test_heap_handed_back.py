"""While TFLite's converter runs, the C heap's free pages go back to the system instead of piling up."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from edgepipe.models.shared.memory import heap_handed_back

# In a fresh process: 2000 blocks of 64 KiB (under glibc's mmap threshold, so in the heap), all
# touched, then nine in ten freed. The tenth pins every stretch, so free() itself trims nothing.
FRAGMENTED = """
import ctypes, sys, time
from edgepipe.models.shared.memory import heap_handed_back, process_memory
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(64 * 1024) for _ in range(2000)]
for b in blocks:
    ctypes.memset(b, 1, 64 * 1024)
for i, b in enumerate(blocks):
    if i % 10:
        libc.free(b)
before = process_memory()[0]
if sys.argv[1] == "within":
    with heap_handed_back(every_s=0.05):
        time.sleep(0.5)
else:
    time.sleep(0.5)
print(before - process_memory()[0])
"""


def _handed_back_mib(how: str) -> float:
    run = subprocess.run([sys.executable, "-c", FRAGMENTED, how], capture_output=True, text=True, check=True)
    return float(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim, read through /proc")
def test_freed_pages_go_back_within_and_stay_without():
    assert _handed_back_mib("without") < 20  # glibc keeps them: what the converter's peak piled up
    assert _handed_back_mib("within") > 80  # nine tenths of 125 MiB, less what the heap's bookkeeping keeps


def test_the_thread_ends_with_the_block_even_when_it_raises():
    with pytest.raises(RuntimeError), heap_handed_back(every_s=0.01):
        assert any(t.name == "edgepipe-heap" for t in threading.enumerate())
        raise RuntimeError("the conversion failed")
    assert not any(t.name == "edgepipe-heap" for t in threading.enumerate())
