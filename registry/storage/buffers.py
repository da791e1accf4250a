"""Part-sized buffers reused from one multipart upload part to the next.

Filling a buffer the process has already touched costs one copy. Allocating a fresh 8 MiB
object for each part costs a page fault on every one of its pages as well (``malloc`` maps
big blocks freshly and unmaps them when freed), several times the copy on a virtual machine:
profiling the S3 upload path showed that, not hashing or the network, as the server's largest
cost. So parts are filled into buffers kept here and given back when their upload ends."""

from __future__ import annotations

import threading


class PartBuffers:
    """Keeps up to ``keep`` free buffers of ``size`` bytes; hands out new ones when none is
    free, so the number in use is bounded by the callers (parts in flight), not by this."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give(self, buffer: bytearray) -> None:
        if len(buffer) != self.size:
            return
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)
