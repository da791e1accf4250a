"""Moving files to and from the registry: hash, upload only what is missing, download verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from registry.client.http import Connection
from registry.client.socket_http import FileBody, Readable
from registry.errors import IntegrityError, InvalidInput, ShelfError
from registry.names import check_manifest_path
from registry.storage.base import DIGEST_LENGTH, hash_while
from registry.storage.direct_io import DirectWriter, give_buffer, take_buffer

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: str  # inside the version, '/'-separated
    source: Path
    size: int
    digest: str


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def collect(root: Path) -> list[tuple[str, Path]]:
    """The files of a version: PATH itself if a file, else every regular file below it."""
    if not root.exists():
        raise InvalidInput(f"{root} does not exist")
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise InvalidInput(f"{root} is neither a file nor a directory")
    found = []
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            source = Path(directory) / name
            if not source.is_file():
                raise InvalidInput(f"{source} is not a regular file")
            relative = source.relative_to(root).as_posix()
            found.append((check_manifest_path(relative), source))
    if not found:
        raise InvalidInput(f"{root} contains no files")
    return found


def hash_files(files: list[tuple[str, Path]], show_progress: bool) -> list[LocalFile]:
    total = sum(source.stat().st_size for _, source in files)
    hashed = []
    with _progress(show_progress) as progress:
        task = progress.add_task("hashing", total=total)
        for path, source in files:
            digest = hashlib.sha256()
            size = 0
            with source.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    progress.advance(task, len(chunk))
            hashed.append(LocalFile(path, source, size, digest.hexdigest()))
    return hashed


class _PipelinedSink:
    """Reads a body into reused page-aligned blocks and hashes and writes each on worker
    threads while the next one fills: sha256 and file writes release the GIL, so receiving,
    hashing and writing overlap, and a byte is copied only into the block it is read into,
    which is written from there around the page cache where it can be (``direct_io``)."""

    DEPTH = 3

    def __init__(self, fd: int, expected_size: int) -> None:
        self._out = DirectWriter(fd, expected_size)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelf-download")
        self._buffers = [take_buffer() for _ in range(self.DEPTH)]
        self._views = [memoryview(buffer) for buffer in self._buffers]
        self._pending: list[Future[None] | None] = [None] * self.DEPTH
        self.digest = hashlib.sha256()
        self.size = 0

    def _consume(self, block: memoryview) -> None:
        hash_while(self.digest, block, self._out.write_aligned)

    def fill_from(self, body: Readable, limit: int, advance: Callable[[int], object]) -> None:
        """Reads ``body`` to its end, every byte hashed and written, or raises
        ``IntegrityError`` as soon as it holds more than ``limit`` bytes."""
        turn = 0
        while True:
            self._wait(turn)
            view = self._views[turn]
            filled = _read_full(body, view[: min(len(view), limit + 1 - self.size)])
            self.size += filled
            if self.size > limit:
                raise IntegrityError(
                    f"the server sent more than the {limit} bytes the manifest declares"
                )
            if not filled:
                break
            self._pending[turn] = self._pool.submit(self._consume, view[:filled])
            advance(filled)
            turn = (turn + 1) % self.DEPTH
        for turn in range(self.DEPTH):
            self._wait(turn)
        self._out.finish()

    def _wait(self, turn: int) -> None:  # a write error (a full disk) surfaces here
        pending, self._pending[turn] = self._pending[turn], None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            for turn in range(self.DEPTH):
                self._wait(turn)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._out.release()
            for view, buffer in zip(self._views, self._buffers, strict=True):
                view.release()
                give_buffer(buffer)
            self._views, self._buffers = [], []


class CutShort(Exception):
    """The connection failed before the body's end (the name of the error says how)."""


def _read_full(body: Readable, view: memoryview) -> int:
    """Fill ``view`` from ``body``; short only at the body's end."""
    filled = 0
    try:
        while filled < len(view) and (got := body.readinto(view[filled:])):
            filled += got
    except httpx.HTTPError as exc:
        raise CutShort(exc.__class__.__name__) from None
    return filled


# Files at least this big are hashed and sent at once (digest last) instead of read twice.
STREAM_HASHED_FROM = 8 * 1024 * 1024
HASH_HEAD_START_S = 0.1
HEAD_START_UP_TO = 64 * 1024 * 1024  # hashes in well under HASH_HEAD_START_S


class _AlreadyStored(Exception):
    """The registry turned out to hold the content being sent: stop sending it."""


def _file_digest(source: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _send_while_hashing(
    client: Connection, path: str, source: Path, advance: Callable[[int], object]
) -> tuple[LocalFile, int]:
    """Sends a big file while another thread hashes it; the digest follows the content. As soon
    as the digest is known the registry is asked whether it already holds the content, and if
    it does the upload stops early: unchanged files still cost almost nothing to register."""
    size = source.stat().st_size
    stored, checked = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelf-hash") as pool:
        hashing = pool.submit(_file_digest, source)

        def check(done: Future[str]) -> None:
            # Only a shortcut: without an answer (or a digest) the upload just goes on.
            try:
                with contextlib.suppress(httpx.HTTPError, ShelfError):
                    if done.exception() is None:
                        missing = client.post("/v1/blobs/missing", {"digests": [done.result()]})
                        if not missing["missing"]:
                            stored.set()
            finally:
                checked.set()

        hashing.add_done_callback(check)
        # A file that hashes within a moment is checked before a byte is sent; a bigger one
        # starts at once and is stopped when the check says the registry has it.
        head_start = HASH_HEAD_START_S if size <= HEAD_START_UP_TO else 0.0
        if checked.wait(head_start) and stored.is_set():
            return LocalFile(path, source, size, hashing.result()), 0

        def stop_if_stored() -> None:
            if stored.is_set():
                raise _AlreadyStored

        body = FileBody(
            source,
            size,
            advance,
            trailer=lambda: hashing.result().encode(),
            trailer_length=DIGEST_LENGTH,
            stop=stop_if_stored,
        )
        sent = size
        try:
            client.upload_blob_digest_last(body)
        except (_AlreadyStored, httpx.HTTPError):
            if not stored.is_set():
                raise
            sent = 0
        digest = hashing.result()
    return LocalFile(path, source, size, digest), sent


def upload_files(
    client: Connection, files: list[tuple[str, Path]], show_progress: bool
) -> tuple[list[LocalFile], int]:
    """Hashes ``files`` and uploads what the registry lacks; returns them and the bytes sent.
    Small files are hashed first and checked in one request. Big ones are sent while hashed,
    digest last, unless the registry asks for the digest first (an S3 store, which would
    otherwise stage and copy them): then they too are hashed first, one local read each."""
    big = [(p, s) for p, s in files if s.stat().st_size >= STREAM_HASHED_FROM]
    small = [(p, s) for p, s in files if s.stat().st_size < STREAM_HASHED_FROM]
    hashed = {f.path: f for f in hash_files(small, show_progress)}
    sent, digest_first = upload_missing(client, list(hashed.values()), show_progress)
    if big and digest_first:
        entries = hash_files(big, show_progress)
        hashed.update((f.path, f) for f in entries)
        sent += upload_missing(client, entries, show_progress)[0]
    elif big:
        with _progress(show_progress) as progress:
            task = progress.add_task("uploading", total=sum(s.stat().st_size for _, s in big))
            for path, source in big:

                def advance(n: int) -> None:
                    progress.advance(task, n)

                entry, sent_now = _send_while_hashing(client, path, source, advance)
                hashed[path] = entry
                sent += sent_now
    return [hashed[path] for path, _ in files], sent


def upload_missing(
    client: Connection, files: list[LocalFile], show_progress: bool
) -> tuple[int, bool]:
    """Uploads the blobs the registry lacks, digest first; returns the bytes sent and whether
    the registry wants big files' digests first too."""
    digests = sorted({f.digest for f in files})
    answer = client.post("/v1/blobs/missing", {"digests": digests})
    missing = set(answer["missing"])
    todo: dict[str, LocalFile] = {}
    for entry in files:
        if entry.digest in missing:
            todo.setdefault(entry.digest, entry)
    total = sum(f.size for f in todo.values())
    with _progress(show_progress) as progress:
        task = progress.add_task("uploading", total=total)
        for entry in todo.values():

            def advance(n: int) -> None:
                progress.advance(task, n)

            client.upload_blob(entry.digest, FileBody(entry.source, entry.size, advance))
    return total, bool(answer.get("send_digest_first", False))


# Sent with every download: this client checks size and sha256 itself, so the server need not
# hash what it sends (it still does for any client that does not say so).
VERIFIED_HERE = {"X-Shelf-Verify": "client"}


def download_version(
    client: Connection,
    model: str,
    version: int,
    files: list[dict[str, object]],
    out_dir: Path,
    show_progress: bool,
) -> list[Path]:
    """Writes each file to a temporary name, verifies size and sha256, then renames it into
    place, so a failed or corrupted download never leaves a plausible-looking file behind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    total = sum(int(f["size"]) for f in files)  # type: ignore[call-overload]
    with _progress(show_progress) as progress:
        task = progress.add_task("downloading", total=total)
        for entry in files:
            path = check_manifest_path(str(entry["path"]))
            declared = int(entry["size"])  # type: ignore[call-overload]
            target = out_dir.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".shelf-partial-")
            try:
                with (
                    os.fdopen(fd, "wb", buffering=0) as handle,
                    client.body(
                        f"/v1/models/{model}/versions/{version}/files/{quote(path, safe='/')}",
                        VERIFIED_HERE,
                    ) as body,
                ):
                    sink = _PipelinedSink(handle.fileno(), declared)
                    try:
                        sink.fill_from(body, declared, lambda n: progress.advance(task, n))
                    except IntegrityError as exc:
                        raise IntegrityError(f"{path!r}: {exc}") from None
                    except CutShort as exc:
                        raise IntegrityError(
                            f"download of {path!r} was cut short ({exc}); "
                            "the stored copy may be corrupt"
                        ) from None
                    finally:
                        sink.close()
                    os.fsync(handle.fileno())  # on disk before it is renamed into place
                size, digest = sink.size, sink.digest
                if size != declared or digest.hexdigest() != entry["digest"]:
                    raise IntegrityError(
                        f"{path!r}: got {size} bytes with sha256 {digest.hexdigest()}, expected "
                        f"{entry['size']} bytes with sha256 {entry['digest']}"
                    )
                os.replace(temp_name, target)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
            written.append(target)
    return written
