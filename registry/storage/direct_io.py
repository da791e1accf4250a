"""Writing big files around the page cache (``O_DIRECT``): the blobs a local store keeps and
the files ``shelf download`` writes.

A buffered write copies every byte into page-cache pages the kernel takes for the new file,
and the ``fsync`` before a blob is published then writes them all out. Profiled on the VM the
benchmarks run on (its hypervisor takes back memory the guest frees, "free page reporting"),
the copy was the largest cost of an upload: each fresh page-cache page is faulted in from the
host on first touch, so writing 256 MiB into a new file took 0.5-0.8 s, against 0.05 s into
pages freed a moment before and 0.1-0.15 s with ``O_DIRECT`` from a reused buffer, with nothing
left for the ``fsync``. Elsewhere ``O_DIRECT`` still keeps a multi-gigabyte model from pushing
everything else out of the page cache, at the disk's sequential speed.

Bytes are gathered into a page-aligned buffer, kept from one file to the next (its pages stay
in the process, already touched), and written in whole blocks with ``O_DIRECT``; the tail,
shorter than a block, goes through the page cache. Where the operating system or the file
system refuses ``O_DIRECT`` (macOS, Windows, tmpfs on older kernels, some network and FUSE
file systems), or a write with it fails before writing anything, the same calls write
through the page cache instead: slower there, never wrong."""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Sequence

from registry.storage.base import write_fully

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

BLOCK = 8 * 1024 * 1024
O_DIRECT: int = getattr(os, "O_DIRECT", 0)


class AlignedBuffers:
    """Page-aligned buffers of ``size`` bytes (anonymous maps), reused: a fresh one costs a page
    fault on each of its pages as it fills, a reused one nothing."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.size)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)
                return
        buffer.close()


_BUFFERS = AlignedBuffers(BLOCK, keep=4)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; whether that worked."""
    if not O_DIRECT or fcntl is None:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_DIRECT if on else flags & ~O_DIRECT)
    except OSError:
        return False
    return True


class DirectWriter:
    """Appends to the file open for writing at ``fd`` (at offset 0, in order), in whole
    ``BLOCK``-sized ``O_DIRECT`` writes where it can. ``finish`` writes what is left and must
    be called before the file is synced or read; ``release`` (idempotent) gives the buffer back
    without writing, when the file is being discarded. One thread at a time."""

    def __init__(self, fd: int, expected_size: int | None = None) -> None:
        self._fd = fd
        # A file smaller than a block would go through the page cache anyway.
        small = expected_size is not None and expected_size < BLOCK
        self._direct = not small and _set_direct(fd, True)
        self._buffer: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._filled = 0

    @property
    def direct(self) -> bool:
        """Whether whole blocks are still written with ``O_DIRECT``."""
        return self._direct

    def write(self, data: bytes | memoryview) -> None:
        if not self._direct:
            write_fully(self._fd, (data,))
            return
        if self._view is None:
            self._buffer = _BUFFERS.take()
            self._view = memoryview(self._buffer)
        piece = memoryview(data).cast("B")
        while piece:
            end = min(BLOCK, self._filled + len(piece))
            taken = end - self._filled
            self._view[self._filled : end] = piece[:taken]
            self._filled, piece = end, piece[taken:]
            if self._filled == BLOCK:
                self._write_block()
                if not self._direct:  # fell back: the rest goes through the page cache
                    write_fully(self._fd, (piece,))
                    return

    def write_many(self, chunks: Sequence[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _write_block(self) -> None:
        assert self._view is not None
        try:
            written = os.write(self._fd, self._view)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            written = 0  # refused before writing anything (alignment the device won't take)
        if written < BLOCK:
            self._direct = False
            _set_direct(self._fd, False)
            write_fully(self._fd, (self._view[written:],))
        self._filled = 0

    def finish(self) -> None:
        """Write what is still buffered (through the page cache: less than a block)."""
        if self._filled:
            assert self._view is not None
            _set_direct(self._fd, False)
            self._direct = False
            write_fully(self._fd, (self._view[: self._filled],))
            self._filled = 0
        self.release()

    def release(self) -> None:
        if self._view is not None and self._buffer is not None:
            self._view.release()
            _BUFFERS.give(self._buffer)
        self._view = self._buffer = None
        self._filled = 0
