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

import contextlib
import errno
import mmap
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from registry.storage.base import Buffer

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

BLOCK = 8 * 1024 * 1024
PAGE = 4096  # O_DIRECT's alignment: offsets, lengths and buffers in whole pages
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


_BUFFERS = AlignedBuffers(BLOCK, keep=8)


def take_buffer() -> mmap.mmap:
    """A page-aligned ``BLOCK``-sized buffer, reused; hand it back with ``give_buffer``."""
    return _BUFFERS.take()


def give_buffer(buffer: mmap.mmap) -> None:
    _BUFFERS.give(buffer)


def _write_plainly(fd: int, data: Buffer) -> None:
    """``os.write`` until every byte is written (through the page cache once O_DIRECT is off)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


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


# Writes the blocks of every ``DirectWriter`` behind its caller. Each writer has at most one
# block in flight, so a file's writes stay in order; several writers share the threads.
_WRITING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shelf-write-behind")


class DirectWriter:
    """Appends to the file open for writing at ``fd`` (at offset 0, in order), in whole
    ``BLOCK``-sized ``O_DIRECT`` writes where it can. ``finish`` writes what is left and must
    be called before the file is synced or read; ``release`` (idempotent) gives the buffers back
    without writing, when the file is being discarded. One thread at a time.

    A full block is written on a worker thread while the caller fills the next one. An
    ``O_DIRECT`` write returns only once the device has the bytes, so writing each block on
    the caller's thread left the disk idle while the next block arrived and the caller idle
    while the disk wrote: profiled on a 1 GiB upload of 3 to 4 s, the event loop waited on the
    writer for 1.0 to 1.5 s. A write error (a full disk) is raised by the next call that writes,
    at the latest by ``finish``."""

    def __init__(self, fd: int, expected_size: int | None = None) -> None:
        self._fd = fd
        # A file smaller than a block would go through the page cache anyway.
        small = expected_size is not None and expected_size < BLOCK
        self._direct = not small and _set_direct(fd, True)
        self._buffer: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._filled = 0
        # The block being written, and its buffer: filled next once the write is done.
        self._in_flight: Future[bool] | None = None
        self._spare: tuple[mmap.mmap, memoryview] | None = None

    @property
    def direct(self) -> bool:
        """Whether whole blocks are still written with ``O_DIRECT``."""
        return self._direct

    def write(self, data: Buffer) -> None:
        if not self._direct:
            _write_plainly(self._fd, data)
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
                    _write_plainly(self._fd, piece)
                    return

    def write_many(self, chunks: Sequence[Buffer]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_aligned(self, block: memoryview) -> None:
        """Append ``block``, a view from the start of a page-aligned buffer (``take_buffer``):
        written as it is, on this thread, without the copy ``write`` makes, when its length is
        whole pages and nothing is buffered; otherwise as ``write``."""
        self._wait()
        if self._direct and not self._filled and len(block) % PAGE == 0:
            self._direct = _write_direct(self._fd, block)
        else:
            self.write(block)

    def _write_block(self) -> None:
        """Hand the full block to a worker thread and take the other buffer to fill."""
        assert self._buffer is not None and self._view is not None
        self._wait()
        if not self._direct:  # the block before fell back: this one follows it plainly
            _write_plainly(self._fd, self._view)
            self._filled = 0
            return
        self._in_flight = _WRITING.submit(_write_direct, self._fd, self._view)
        full = (self._buffer, self._view)
        if self._spare is None:
            buffer = _BUFFERS.take()
            self._spare = (buffer, memoryview(buffer))
        (self._buffer, self._view), self._spare = self._spare, full
        self._filled = 0

    def _wait(self) -> None:
        """Until the block in flight is written; raises its error, notes a fallback."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and not in_flight.result():
            self._direct = False

    def finish(self) -> None:
        """Write what is still buffered (through the page cache: less than a block)."""
        self._wait()
        if self._filled:
            assert self._view is not None
            _set_direct(self._fd, False)
            self._direct = False
            _write_plainly(self._fd, self._view[: self._filled])
            self._filled = 0
        self.release()

    def release(self) -> None:
        if self._in_flight is not None:
            with contextlib.suppress(BaseException):  # the file is being discarded
                self._in_flight.result()
            self._in_flight = None
        for buffer, view in (self._buffer, self._view), self._spare or (None, None):
            if view is not None and buffer is not None:
                view.release()
                _BUFFERS.give(buffer)
        self._view = self._buffer = self._spare = None
        self._filled = 0


def _write_direct(fd: int, view: memoryview) -> bool:
    """Write ``view`` with ``O_DIRECT``; whether that is still on. Where the device refuses
    (before writing anything, or writing less), what is left is written through the page
    cache and ``O_DIRECT`` is turned off for the file."""
    try:
        written = os.write(fd, view)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        written = 0  # refused before writing anything (alignment the device won't take)
    if written < len(view):
        _set_direct(fd, False)
        _write_plainly(fd, view[written:])
        return False
    return True


# Reads ahead for every blob being read; each read is one syscall of up to a block.
_READING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shelf-read-ahead")
RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


class _BlockReader:
    """Reads block-aligned blocks of one file: through the page cache when it holds the file's
    first page (a blob read again soon after), else with ``O_DIRECT`` (a blob written around
    the page cache, or read long after). Either way the bytes are the file's: the kernel keeps
    direct reads coherent with the page cache; only the speed depends on the guess."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb", buffering=0)
        self._fd = self._file.fileno()
        self._direct_fd: int | None = None
        if O_DIRECT and not self._first_page_cached():
            with contextlib.suppress(OSError):  # O_DIRECT refused: read through the page cache
                self._direct_fd = os.open(path, os.O_RDONLY | O_DIRECT)

    def _first_page_cached(self) -> bool:
        """Whether the page cache holds the file's first page, asked without reading the disk
        (``RWF_NOWAIT``; a probe that cannot tell says yes, keeping the page cache)."""
        if not RWF_NOWAIT or not hasattr(os, "preadv"):
            return True
        try:
            return os.preadv(self._fd, [bytearray(1)], 0, RWF_NOWAIT) >= 0
        except BlockingIOError:
            return False
        except OSError:
            return True

    def read_into(self, view: memoryview, offset: int) -> int:
        """Fill ``view`` from ``offset`` (a multiple of ``BLOCK``); short only at the end."""
        done = 0
        if self._direct_fd is not None:
            try:
                done = self._read_direct(view, offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                os.close(self._direct_fd)  # refused after all: the page cache from here on
                self._direct_fd = None
        self._file.seek(offset + done)
        while done < len(view):
            got = self._file.readinto(view[done:])
            if not got:
                break
            done += got
        return done

    def _read_direct(self, view: memoryview, offset: int) -> int:
        """As much as ``O_DIRECT`` reads in whole pages; the caller reads any rest plainly."""
        assert self._direct_fd is not None
        done = 0
        while done < len(view):
            got = os.preadv(self._direct_fd, [view[done:]], offset + done)
            done += got
            if got == 0 or got % PAGE:
                break
        return done

    def close(self) -> None:
        self._file.close()
        if self._direct_fd is not None:
            os.close(self._direct_fd)


def read_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    """The file's bytes in chunks of ``chunk_size``, each block read on a worker thread while
    the caller handles the chunks of the one before (hashing, sending). A file the page cache
    does not hold is read with ``O_DIRECT`` into reused buffers instead of into fresh
    page-cache pages. Raises ``FileNotFoundError`` at once if ``path`` does not exist."""
    os.stat(path)
    return _read_ahead(path, chunk_size)


def _read_ahead(path: Path, chunk_size: int) -> Iterator[bytes]:
    reader = _BlockReader(path)
    buffers = [_BUFFERS.take(), _BUFFERS.take()]
    views = [memoryview(buffer) for buffer in buffers]
    offset = turn = 0
    pending: Future[int] | None = _READING.submit(reader.read_into, views[0], 0)
    try:
        while pending is not None:
            filled = pending.result()
            pending = None
            if filled == BLOCK:
                offset += BLOCK
                pending = _READING.submit(reader.read_into, views[1 - turn], offset)
            view = views[turn]
            for start in range(0, filled, chunk_size):
                yield bytes(view[start : min(filled, start + chunk_size)])
            turn = 1 - turn
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                pending.result()
        reader.close()
        for view, buffer in zip(views, buffers, strict=True):
            view.release()
            _BUFFERS.give(buffer)
