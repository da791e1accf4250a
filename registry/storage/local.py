"""Blobs in a local folder: written to a temporary file, verified, then renamed into place.

Each temporary file is held under an exclusive ``flock`` by the upload writing it. The kernel
drops the lock when the writer's process dies, however it dies, so a starting server (or
``shelf gc``) can tell a killed server's leftovers from an upload still in progress by trying
to take the lock: no pid files, no clocks, and no confusion when a restarted container reuses
the dead one's pid."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows: leftovers are only collected by age
    fcntl = None  # type: ignore[assignment]

from registry.errors import IntegrityError, NotFound
from registry.storage.base import (
    CHUNK_SIZE,
    DIGEST_RE,
    Buffer,
    StoredItem,
    blob_key,
    hash_all_while,
    promised,
)
from registry.storage.direct_io import DirectWriter, read_chunks


class LocalBlobWriter:
    """Streams into ``<root>/tmp/<random>``; ``commit`` renames it to its content address, so a
    reader never sees a partial or unverified blob. Bytes are hashed on a worker thread while
    this one writes them around the page cache (``direct_io``)."""

    def __init__(self, root: Path, digest: str | None, size: int | None) -> None:
        self._root = root
        self._digest = digest
        self._size = size
        self._tmp, self._file = _locked_temp_file(root / TMP_DIR)
        self._out = DirectWriter(self._file.fileno(), size)
        self._hash = hashlib.sha256()
        self._written = 0

    def write(self, chunk: Buffer) -> None:
        self.write_many((chunk,))

    def write_many(self, chunks: Sequence[Buffer]) -> None:
        hash_all_while(self._hash, chunks, self._out.write_many)
        self._written += sum(map(len, chunks))

    def commit(self, digest: str | None = None) -> int:
        try:
            digest = promised(self._digest, digest)
            verify(digest, self._size, self._hash.hexdigest(), self._written)
            self._out.finish()
            os.fsync(self._file.fileno())
            self._file.close()
            final = self._root / blob_key(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, final)
        except BaseException:
            self.abort()
            raise
        return self._written

    def abort(self) -> None:
        self._out.release()
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


TMP_DIR = "tmp"


def _locked_temp_file(folder: Path) -> tuple[Path, BinaryIO]:
    """A new file in ``folder``, created and locked by this upload. A sweep that found the file
    in the instant between creation and locking may have removed it: then take another."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        path = folder / f"upload-{uuid.uuid4().hex}"
        handle = path.open("xb", buffering=0)
        _lock(handle)
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return path, handle
        except FileNotFoundError:
            pass
        handle.close()


def _lock(handle: BinaryIO) -> None:
    if fcntl is not None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _is_abandoned(path: Path) -> bool:
    """Whether no live upload holds ``path`` (without ``flock``, as on Windows: unknown, so no)."""
    if fcntl is None:
        return False
    try:
        with path.open("rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
    except FileNotFoundError:
        return False


def _modified(stat: os.stat_result) -> datetime:
    return datetime.fromtimestamp(stat.st_mtime, UTC)


def verify(digest: str, size: int | None, actual_digest: str, actual_size: int) -> None:
    """Raise ``IntegrityError`` unless the bytes received are the bytes promised."""
    if size is not None and actual_size != size:
        raise IntegrityError(
            f"upload of {digest[:12]}… is {actual_size} bytes, expected {size}",
            digest=digest,
            expected_size=size,
            actual_size=actual_size,
        )
    if actual_digest != digest:
        raise IntegrityError(
            f"upload does not match its digest: expected sha256 {digest}, got {actual_digest}",
            digest=digest,
            actual_digest=actual_digest,
        )


def read_verified(digest: str, chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    """Pass ``chunks`` through, holding each back until the next is hashed, and fail loudly
    before the last one if they do not hash to ``digest``: a reader of a corrupt blob never
    gets all of its bytes, so a response declaring their length is visibly cut short."""
    hasher = hashlib.sha256()
    held: bytes | None = None
    for chunk in chunks:
        hasher.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if hasher.hexdigest() != digest:
        raise IntegrityError(
            f"stored blob {digest[:12]}… is corrupt in {where}: sha256 is {hasher.hexdigest()}",
            digest=digest,
        )
    if held is not None:
        yield held


class LocalStore:
    """The embedded default: ``file:///path`` (``$SHELF_HOME/artifacts``)."""

    digest_last_is_cheap = True  # published by a rename, whenever the digest arrives

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.as_uri()
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise NotFound(f"no blob {digest!r}")
        return self.root / blob_key(digest)

    def has_blob(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def blob_size(self, digest: str) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_writer(self, digest: str | None, size: int | None = None) -> LocalBlobWriter:
        return LocalBlobWriter(self.root, digest, size)

    def read_blob(
        self, digest: str, chunk_size: int = CHUNK_SIZE, verified: bool = True
    ) -> Iterator[bytes]:
        path = self._path(digest)
        try:
            chunks = read_chunks(path, chunk_size)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the artifact store") from None
        return read_verified(digest, chunks, self.uri) if verified else chunks

    def delete_blob(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(digest).unlink()

    def list_blobs(self) -> Iterator[str]:
        base = self.root / "blobs" / "sha256"
        if base.is_dir():
            for path in sorted(base.glob("*/*")):
                if DIGEST_RE.match(path.name):
                    yield path.name

    def blob_items(self) -> Iterator[StoredItem]:
        for digest in self.list_blobs():
            with contextlib.suppress(FileNotFoundError):
                stat = self._path(digest).stat()
                yield StoredItem(digest, stat.st_size, _modified(stat))

    def _temp_items(self) -> Iterator[tuple[Path, StoredItem]]:
        folder = self.root / TMP_DIR
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                yield path, StoredItem(f"{TMP_DIR}/{path.name}", stat.st_size, _modified(stat))

    def stray_uploads(self, started_before: datetime) -> Iterator[StoredItem]:
        for path, item in self._temp_items():
            if item.modified_at < started_before and (fcntl is None or _is_abandoned(path)):
                yield item

    def abandoned_uploads(self) -> Iterator[StoredItem]:
        for path, item in self._temp_items():
            if _is_abandoned(path):
                yield item

    def remove_upload(self, item: StoredItem) -> None:
        folder, _, name = item.name.partition("/")
        if folder != TMP_DIR or not name or "/" in name:
            raise NotFound(f"no upload {item.name!r}")
        path = self.root / TMP_DIR / name
        if fcntl is None or _is_abandoned(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def check(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise OSError(f"artifact folder {self.root} is missing or not writable")
