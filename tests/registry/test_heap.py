"""Processes that move big files keep freed memory in their heap (registry/heap.py), on glibc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    from registry.heap import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    took = keep_freed_memory() if sys.argv[1] == "tuned" else None
    maps_before = libc.mallinfo2().hblks
    buffers = [bytearray(1024 * 1024) for _ in range(8)]  # like an upload's 1 MiB chunks
    maps_during = libc.mallinfo2().hblks
    heap_during = libc.mallinfo2().arena
    del buffers
    heap_after = libc.mallinfo2().arena
    print(json.dumps({"took": took, "new_maps": maps_during - maps_before,
                      "heap_returned": heap_during - heap_after}))
    """
)


def _probe(mode: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(
    not sys.platform.startswith("linux") and os.environ.get("CI") != "true",
    reason="glibc's mallopt (CI runs on Linux: there it must run)",
)
def test_freed_buffers_stay_in_the_heap_instead_of_fresh_maps() -> None:
    default, tuned = _probe("default"), _probe("tuned")
    # By default each 1 MiB buffer is a map of its own, faulted in anew every time.
    assert default["new_maps"] == 8
    assert tuned["took"] is True
    assert tuned["new_maps"] == 0
    assert tuned["heap_returned"] == 0  # freed, kept for the next message
