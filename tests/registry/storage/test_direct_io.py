"""Files written around the page cache hold exactly the bytes given, O_DIRECT or not."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from registry.storage import direct_io
from registry.storage.direct_io import BLOCK, DirectWriter

SIZES = [0, 5, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 4097]


def _write(path: Path, data: bytes, piece: int, expected: int | None) -> DirectWriter:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        writer = DirectWriter(fd, expected)
        view = memoryview(data)
        for start in range(0, len(data), piece):
            writer.write(view[start : start + piece])
        writer.finish()
        os.fsync(fd)
    finally:
        os.close(fd)
    return writer


def _o_direct_on(fd: int) -> bool:
    return bool(direct_io.O_DIRECT) and bool(
        direct_io.fcntl.fcntl(fd, direct_io.fcntl.F_GETFL) & direct_io.O_DIRECT
    )


@pytest.mark.parametrize("size", SIZES)
def test_the_file_holds_exactly_the_bytes_written(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    _write(tmp_path / "out", data, 3 * 1024 * 1024 + 7, size)  # pieces straddle blocks
    assert (tmp_path / "out").read_bytes() == data


def test_big_files_go_around_the_page_cache_where_the_file_system_allows(
    tmp_path: Path,
) -> None:
    if not direct_io.O_DIRECT and os.environ.get("CI") != "true":  # CI runs on Linux: it has it
        pytest.skip("no O_DIRECT on this platform")
    fd = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    os.close(fd)  # opening with O_DIRECT worked: this file system takes it
    data = os.urandom(BLOCK + 10)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        writer = DirectWriter(fd)
        writer.write(data)
        assert writer.direct  # the first block went out with O_DIRECT
        writer.finish()
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data


def test_small_files_are_written_plainly(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        assert not DirectWriter(fd, expected_size=BLOCK - 1).direct
    finally:
        os.close(fd)


def test_without_o_direct_the_same_calls_write_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_io, "O_DIRECT", 0)
    data = os.urandom(BLOCK + 123)
    writer = _write(tmp_path / "out", data, 1 << 20, None)
    assert not writer.direct
    assert (tmp_path / "out").read_bytes() == data


def test_a_block_the_device_refuses_is_written_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EINVAL (an alignment the device will not take) comes before anything is written."""
    real_write = os.write

    def refuse_direct(fd: int, data: bytes) -> int:
        if _o_direct_on(fd):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(direct_io.os, "write", refuse_direct)
    data = os.urandom(2 * BLOCK + 5)
    writer = _write(tmp_path / "out", data, 1 << 20, None)
    assert not writer.direct
    assert (tmp_path / "out").read_bytes() == data


def test_other_write_errors_are_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_io, "_set_direct", lambda fd, on: True)
    monkeypatch.setattr(direct_io.os, "write", disk_full)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        writer = DirectWriter(fd)
        writer.write(os.urandom(BLOCK))  # written behind this thread: raised by finish
        with pytest.raises(OSError, match="No space"):
            writer.finish()
        writer.release()
        writer.release()
    finally:
        os.close(fd)


def test_a_block_that_fails_behind_the_caller_stops_the_next_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full block is written on a worker thread; its error is raised by the next block's
    write, before anything more reaches the file."""
    real_write = os.write
    calls: list[int] = []

    def first_fails(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    monkeypatch.setattr(direct_io, "_set_direct", lambda fd, on: True)
    monkeypatch.setattr(direct_io.os, "write", first_fails)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        writer = DirectWriter(fd)
        writer.write(os.urandom(BLOCK))
        with pytest.raises(OSError, match="Input/output"):
            writer.write(os.urandom(BLOCK))
        writer.release()
    finally:
        os.close(fd)
    assert calls == [BLOCK]  # the second block was never written
    assert (tmp_path / "out").stat().st_size == 0


def test_release_waits_for_the_block_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aborted upload closes and removes its file right after ``release``: no write may
    still be running then (it would land in whatever file next gets the descriptor)."""
    real_write = os.write
    started = threading.Event()

    def slow_write(fd: int, data: bytes) -> int:
        started.set()
        time.sleep(0.3)
        return real_write(fd, data)

    monkeypatch.setattr(direct_io.os, "write", slow_write)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        writer = DirectWriter(fd)
        writer.write(os.urandom(BLOCK))
        assert started.wait(5)
        writer.release()
        assert os.fstat(fd).st_size == BLOCK  # written before release returned
    finally:
        os.close(fd)


def test_a_short_direct_write_continues_through_the_page_cache_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device that takes only part of a block: the rest of it, and every later byte, follow
    through the page cache, in order, although the block was written behind the caller."""
    real_write = os.write
    shortened: list[bool] = []

    def half_of_the_first(fd: int, data: bytes) -> int:
        if not shortened and _o_direct_on(fd):
            shortened.append(True)
            return real_write(fd, memoryview(data)[: len(data) // 2])
        return real_write(fd, data)

    monkeypatch.setattr(direct_io.os, "write", half_of_the_first)
    data = os.urandom(3 * BLOCK + 12345)
    writer = _write(tmp_path / "out", data, 3 * 1024 * 1024 + 7, None)
    assert not writer.direct
    assert (tmp_path / "out").read_bytes() == data


def test_buffers_are_reused(tmp_path: Path) -> None:
    buffers = direct_io.AlignedBuffers(4096, keep=1)
    first = buffers.take()
    buffers.give(first)
    assert buffers.take() is first
    extra = buffers.take()
    buffers.give(first)
    buffers.give(extra)  # beyond ``keep``: closed, not kept
    assert extra.closed


def _direct_file(path: Path, data: bytes) -> None:
    """``data`` written around the page cache where possible (so reads may not find it there)."""
    _write(path, data, 1 << 20, None)


@pytest.mark.parametrize("size", [0, 1, BLOCK, BLOCK + 1, 2 * BLOCK + 4097])
@pytest.mark.parametrize("chunk", [1 << 20, 3 * 1024 * 1024 + 1])
def test_read_chunks_gives_back_exactly_the_file(tmp_path: Path, size: int, chunk: int) -> None:
    data = os.urandom(size)
    _direct_file(tmp_path / "blob", data)
    chunks = list(direct_io.read_chunks(tmp_path / "blob", chunk))
    assert all(0 < len(c) <= chunk for c in chunks)
    assert b"".join(chunks) == data
    assert b"".join(direct_io.read_chunks(tmp_path / "blob", chunk)) == data  # now cached


def test_read_chunks_through_the_page_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(BLOCK + 99)
    (tmp_path / "blob").write_bytes(data)
    monkeypatch.setattr(direct_io, "O_DIRECT", 0)
    assert b"".join(direct_io.read_chunks(tmp_path / "blob", 1 << 20)) == data


def test_a_missing_file_is_reported_before_the_first_chunk(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        direct_io.read_chunks(tmp_path / "absent", 1 << 20)


def test_a_read_stopped_early_gives_its_buffers_back(tmp_path: Path) -> None:
    _direct_file(tmp_path / "blob", os.urandom(3 * BLOCK))
    chunks = direct_io.read_chunks(tmp_path / "blob", 1 << 20)
    next(iter(chunks))
    free_before = len(direct_io._BUFFERS._free)
    chunks.close()  # type: ignore[attr-defined]
    assert len(direct_io._BUFFERS._free) == min(8, free_before + 2)  # kept, up to 8


@pytest.mark.parametrize("sizes", [[BLOCK, BLOCK, 4097], [5, BLOCK], [BLOCK, 3 * 4096, 10]])
def test_aligned_buffers_are_written_as_they_are_and_the_file_is_exact(
    tmp_path: Path, sizes: list[int]
) -> None:
    """``write_aligned`` writes a buffer from ``take_buffer`` without copying it when it can
    (whole pages, nothing buffered before it) and like ``write`` otherwise."""
    pieces = [os.urandom(size) for size in sizes]
    buffer = direct_io.take_buffer()
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        writer = DirectWriter(fd)
        view = memoryview(buffer)
        for piece in pieces:
            view[: len(piece)] = piece
            writer.write_aligned(view[: len(piece)])
        writer.finish()
        view.release()
    finally:
        os.close(fd)
        direct_io.give_buffer(buffer)
    assert (tmp_path / "out").read_bytes() == b"".join(pieces)
