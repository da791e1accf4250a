"""Blobs in a local folder: written to a temporary file, verified, then renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from registry.errors import IntegrityError, NotFound
from registry.storage.base import CHUNK_SIZE, DIGEST_RE, blob_key, hash_while, promised


class LocalBlobWriter:
    """Streams into ``<root>/tmp/<random>``; ``commit`` renames it to its content address, so a
    reader never sees a partial or unverified blob."""

    def __init__(self, root: Path, digest: str | None, size: int | None) -> None:
        self._root = root
        self._digest = digest
        self._size = size
        tmp_dir = root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = tmp_dir / f"upload-{uuid.uuid4().hex}"
        self._file = self._tmp.open("xb")
        self._hash = hashlib.sha256()
        self._written = 0

    def write(self, chunk: bytes) -> None:
        hash_while(self._hash, chunk, self._file.write)
        self._written += len(chunk)

    def commit(self, digest: str | None = None) -> int:
        try:
            digest = promised(self._digest, digest)
            verify(digest, self._size, self._hash.hexdigest(), self._written)
            self._file.flush()
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
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


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
    """Pass ``chunks`` through, then fail loudly if they do not hash to ``digest``."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
        yield chunk
    if hasher.hexdigest() != digest:
        raise IntegrityError(
            f"stored blob {digest[:12]}… is corrupt in {where}: sha256 is {hasher.hexdigest()}",
            digest=digest,
        )


class LocalStore:
    """The embedded default: ``file:///path`` (``$SHELF_HOME/artifacts``)."""

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

    def read_blob(self, digest: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        path = self._path(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the artifact store") from None
        return read_verified(digest, _chunks(handle, chunk_size), self.uri)

    def delete_blob(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(digest).unlink()

    def list_blobs(self) -> Iterator[str]:
        base = self.root / "blobs" / "sha256"
        if base.is_dir():
            for path in sorted(base.glob("*/*")):
                if DIGEST_RE.match(path.name):
                    yield path.name

    def check(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise OSError(f"artifact folder {self.root} is missing or not writable")


def _chunks(handle: object, chunk_size: int) -> Iterator[bytes]:
    with handle as file:  # type: ignore[attr-defined]
        while chunk := file.read(chunk_size):
            yield chunk
