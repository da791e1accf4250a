"""The artifact store interface: content-addressed blobs, written atomically and verified."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
DIGEST_LENGTH = 64  # hex digits of a sha256, as digest-last uploads end
CHUNK_SIZE = 1024 * 1024
# What blob content arrives as: bytes, or a view of a buffer an upload reuses.
Buffer = bytes | bytearray | memoryview


# sha256 and file or socket writes both release the GIL: hashing a chunk on this pool while the
# caller writes it makes an upload cost max(hash, write) instead of their sum.
_HASHING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shelf-sha256")


Chunk = TypeVar("Chunk", bytes, memoryview)


def hash_while(hasher: Hash, chunk: Chunk, write: Callable[[Chunk], object]) -> None:
    """``hasher.update(chunk)`` on a worker thread while ``write(chunk)`` runs on this one."""
    if len(chunk) < 256 * 1024:
        hasher.update(chunk)
        write(chunk)
        return
    hashing = _HASHING.submit(hasher.update, chunk)
    try:
        write(chunk)
    finally:
        hashing.result()


def hash_all_while(
    hasher: Hash, chunks: Sequence[Buffer], write_all: Callable[[Sequence[Buffer]], object]
) -> None:
    """Every chunk into ``hasher`` in order, on a worker thread, while ``write_all(chunks)``
    runs on this one: the chunks are never joined, so no byte is copied for either."""
    if sum(map(len, chunks)) < 256 * 1024:
        _update_all(hasher, chunks)
        write_all(chunks)
        return
    hashing = _HASHING.submit(_update_all, hasher, chunks)
    try:
        write_all(chunks)
    finally:
        hashing.result()


def _update_all(hasher: Hash, chunks: Sequence[Buffer]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


def promised(opened_with: str | None, at_commit: str | None) -> str:
    """The digest an upload must match: given when it was opened, or at commit."""
    digest = at_commit or opened_with
    if digest is None or not DIGEST_RE.match(digest):
        raise ValueError("an upload needs a sha256 digest to commit against")
    if opened_with is not None and at_commit is not None and at_commit != opened_with:
        raise ValueError("an upload cannot change the digest it was opened with")
    return digest


def blob_key(digest: str) -> str:
    """Where a blob lives inside the store: ``blobs/sha256/ab/abcdef…``."""
    return f"blobs/sha256/{digest[:2]}/{digest}"


@dataclass(frozen=True)
class StoredItem:
    """Something a store holds, for garbage collection: a blob (``name`` is its digest) or
    what an unfinished upload left (a temporary file, a staging object, a multipart upload)."""

    name: str
    size: int
    modified_at: datetime


class BlobWriter(Protocol):
    """An upload in progress. Nothing is visible in the store until ``commit`` succeeds."""

    def write(self, chunk: Buffer) -> None: ...

    def write_many(self, chunks: Sequence[Buffer]) -> None:
        """``write`` each chunk in turn, without joining them first (one copy fewer)."""
        ...

    def commit(self, digest: str | None = None) -> int:
        """Verify size and sha256 against what was promised (at ``open_writer``, or here for an
        upload whose digest comes last) and publish the blob atomically. Returns the size. On
        mismatch raises ``IntegrityError`` and leaves nothing behind."""
        ...

    def abort(self) -> None:
        """Discard everything written so far (idempotent)."""
        ...


class ArtifactStore(Protocol):
    """Blobs addressed by their sha256. Implementations: ``LocalStore``, ``S3Store``."""

    uri: str
    digest_last_is_cheap: bool
    """Whether an upload opened without its digest is published as cheaply as one opened
    with it. A local folder renames either into place; S3 has no rename, so a digest-last
    upload is staged and copied, and clients of an S3 store should hash first and send the
    digest up front (``POST /v1/blobs/missing`` tells them)."""

    def has_blob(self, digest: str) -> bool: ...

    def blob_size(self, digest: str) -> int | None: ...

    def open_writer(self, digest: str | None, size: int | None = None) -> BlobWriter:
        """``digest`` may be ``None`` when the client sends it after the content."""
        ...

    def read_blob(
        self, digest: str, chunk_size: int = CHUNK_SIZE, verified: bool = True
    ) -> Iterator[bytes]:
        """Stream a blob's bytes, verifying its sha256; raises ``IntegrityError`` instead of the
        last chunk when the stored bytes do not match (corruption), ``NotFound`` if absent.
        ``verified=False`` skips the hashing, for a reader that checks the digest itself."""
        ...

    def delete_blob(self, digest: str) -> None: ...

    def list_blobs(self) -> Iterator[str]:
        """Every stored digest (maintenance and tests; may be slow on big stores)."""
        ...

    def blob_items(self) -> Iterator[StoredItem]:
        """Every stored blob with its size and when it was written (garbage collection)."""
        ...

    def stray_uploads(self, started_before: datetime) -> Iterator[StoredItem]:
        """What unfinished uploads started before ``started_before`` left behind; an upload
        this store knows to be still running is never listed, however old."""
        ...

    def abandoned_uploads(self) -> Iterator[StoredItem]:
        """Leftovers of uploads whose writer is known to be gone (a killed server), of any
        age: what a starting server removes. Stores that cannot tell list nothing."""
        ...

    def remove_upload(self, item: StoredItem) -> None:
        """Remove one item listed by ``stray_uploads`` or ``abandoned_uploads``."""
        ...

    def check(self) -> None:
        """Raise if the store is unreachable (readiness probes)."""
        ...
