"""Resident memory of a process and of the processes it started, read from Linux's /proc.

VmRSS is what a process holds now; VmHWM is its own high-water mark since it started (exact, but
per process: two processes' marks need not fall at the same moment, so their sum is an upper bound).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from pathlib import Path

MIB = 1024.0


def process_memory(pid: int | str = "self") -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a process in MiB; None when it has gone or the system has no /proc."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if line.startswith(("VmRSS:", "VmHWM:")))
    if len(fields) < 2:  # a zombie: its address space is gone
        return None
    return int(fields["VmRSS"].split()[0]) / MIB, int(fields["VmHWM"].split()[0]) / MIB


def descendants(pid: int | str = "self") -> list[int]:
    """Every process started by pid, and by those, that is alive now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            found += children
            todo += children
    return found


@contextlib.contextmanager
def older_objects_frozen():
    """Within: the objects alive on entry (imported modules above all) are left out of every garbage
    collection, release_freed_heap's included; on exit they are collected as before.

    A full collection walks every tracked object, and PyTorch's, TensorFlow's and onnx2tf's modules
    are most of them: 0.3-0.4 s a collection in an export, where several run in a row. What is garbage
    on entry is collected first, so that none is kept; an object alive on entry that becomes cyclic
    garbage within waits for the exit (a module built before the job is freed by its reference count).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def heap_handed_back(every_s: float = 0.1):
    """Within: a thread hands glibc's free pages back to the system every every_s seconds.

    For TFLite's converter, which copies a model's weights several times over (the SavedModel's
    graph, MLIR's constants, the flatbuffer) and frees most copies before it is done, in memory that
    glibc keeps: swin_t's float32 conversion peaked 240 MiB lower with it (2189 -> 1950 MiB), in the
    same time. Not for TensorFlow's eager work: onnx2tf's translation, which frees and reuses small
    tensors all the time, took 3-6 s longer on swin_t, faulting back in what was handed back.
    """
    trim = _malloc_trim()
    if trim is None:
        yield
        return
    done = threading.Event()

    def hand_back() -> None:
        while not done.wait(every_s):
            trim(0)

    thread = threading.Thread(target=hand_back, name="edgepipe-heap", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere (musl, macOS)."""
    try:
        # the symbols already loaded (libc's among them): find_library would start a process to look
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_heap() -> None:
    """Free what is no longer referenced and hand the C heap's free pages back to the system.

    Cycles first (a torch.export program's graph and its nodes refer to each other). Then glibc's
    malloc_trim: glibc keeps memory freed in the middle of its heaps, and raises its mmap threshold to
    the size of the largest block freed, so after a model's weights are dropped the process still holds
    their pages (an ONNX graph's 550 MiB on convnext_tiny). Elsewhere than glibc only the collection runs.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
