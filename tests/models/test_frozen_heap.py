"""Garbage collection within a job: what existed before is left out of it, and nothing is kept by that."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from edgepipe.models.shared.memory import older_objects_frozen, release_freed_heap


class Node:
    """A reference cycle: only the garbage collector frees it."""

    def __init__(self):
        self.me = self


def test_objects_from_before_are_frozen_and_cycles_made_within_are_still_freed():
    before = Node()
    garbage_on_entry = Node()
    gone_on_entry = weakref.ref(garbage_on_entry)
    del garbage_on_entry
    with older_objects_frozen():
        assert gone_on_entry() is None  # collected, not frozen: garbage is never kept
        assert not _in_oldest_generation(before)  # frozen: no collection walks it
        within = Node()
        gone_within = weakref.ref(within)
        del within
        release_freed_heap()
        assert gone_within() is None
    assert gc.get_freeze_count() == 0 and _in_oldest_generation(before)  # a batch worker's next job starts clean
    gone_before = weakref.ref(before)
    del before
    gc.collect()
    assert gone_before() is None


def _in_oldest_generation(thing) -> bool:
    return any(o is thing for o in gc.get_objects(generation=2))


def test_the_console_keeps_the_exit_code_and_leaves_with_the_heap_frozen():
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "sys.argv = ['edgepipe', 'export', 'no_such_model']\n"
        "from edgepipe.pipeline.cli import console\n"
        "console()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "edgepipe: error:" in done.stderr and "no_such_model" in done.stderr
    assert done.stdout.strip().endswith("frozen True")
