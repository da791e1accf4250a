"""Blobs in S3 (or MinIO and other S3-compatible stores) through boto3.

An upload is a multipart upload straight to the blob's final key, one part per
``SHELF_S3_MULTIPART_CHUNK_MB`` buffered bytes and up to ``SHELF_S3_UPLOAD_CONCURRENCY`` parts in
flight, so memory stays constant. S3 shows nothing under
the key until ``CompleteMultipartUpload``, which is only called once the size and sha256 of
everything sent match the client's promise; otherwise the upload is aborted and no object
ever appears."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.errors import InvalidInput, NotFound, StoreUnavailable
from registry.storage.base import CHUNK_SIZE, DIGEST_RE, Buffer, StoredItem, blob_key, promised
from registry.storage.buffers import PartBuffers
from registry.storage.local import read_verified, verify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIN_PART = 5 * 1024 * 1024  # S3's smallest non-final part
MULTIPART = "multipart"

log = logging.getLogger("shelf.storage")


def _unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the artifact store failed: {error}".splitlines()[0])


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3BlobWriter:
    """Parts go to S3 on the store's thread pool, up to ``concurrency`` at a time, while the
    next part fills: one upload keeps as many requests in flight as boto3's ``upload_file``,
    and holds at most ``concurrency + 1`` parts in memory whatever the blob's size. The sha256
    is taken here, in the order the bytes arrive, so what S3 receives is what is verified.

    Without a digest up front the upload goes to a staging key (``uploads/<random>``) and is
    copied server-side to its content address once verified (S3 has no rename); clients send
    the digest first to S3-backed registries (``ArtifactStore.digest_last_is_cheap``)."""

    def __init__(self, store: S3Store, digest: str | None, size: int | None) -> None:
        self._store = store
        self._staged = digest is None
        self._key = store.key(digest) if digest else store.staging_key(uuid.uuid4().hex)
        self._digest = digest
        self._size = size
        self._hash = hashlib.sha256()
        self._part: bytearray | None = None  # the part being filled, from ``store.buffers``
        self._filled = 0
        self._written = 0
        self._upload_id: str | None = None
        self._sent = 0
        self._in_flight: deque[Future[dict[str, Any]]] = deque()
        self._parts: list[dict[str, Any]] = []

    def write(self, chunk: Buffer) -> None:
        self.write_many((chunk,))

    def write_many(self, chunks: Sequence[Buffer]) -> None:
        for chunk in chunks:
            self._append(chunk)

    def _append(self, chunk: Buffer) -> None:
        self._hash.update(chunk)
        self._written += len(chunk)
        view, start = memoryview(chunk), 0
        while start < len(view):
            if self._part is None:
                self._part = self._store.buffers.take()
            room = len(self._part) - self._filled
            piece = view[start : start + room]
            # Through a memoryview: a bytearray's slice assignment from anything but a
            # bytearray first copies the source into a new one (fresh pages, for 4 MiB).
            memoryview(self._part)[self._filled : self._filled + len(piece)] = piece
            self._filled += len(piece)
            start += len(piece)
            if self._filled == len(self._part):
                self._send_part()

    def _take_part(self) -> bytearray | bytes:
        """The filled part: the buffer itself when full (given back once sent), else a copy
        of what it holds (the last part) and the buffer goes back at once."""
        part, filled = self._part, self._filled
        self._part, self._filled = None, 0
        if part is None:
            return b""
        if filled == len(part):
            return part
        body = bytes(memoryview(part)[:filled])
        self._store.buffers.give(part)
        return body

    def _send_part(self) -> None:
        """Hands the filled part to the pool, first waiting for a slot among the in-flight."""
        store = self._store
        try:
            if self._upload_id is None:
                created = store.client.create_multipart_upload(
                    Bucket=store.bucket, Key=self._key, ChecksumAlgorithm=PART_CHECKSUM
                )
                self._upload_id = created["UploadId"]
            while len(self._in_flight) >= store.upload_concurrency or (
                self._in_flight and self._in_flight[0].done()
            ):
                self._parts.append(self._in_flight.popleft().result())
        except (BotoCoreError, ClientError) as error:
            raise _unavailable(error) from error
        self._sent += 1
        self._in_flight.append(
            store.pool.submit(
                _upload_part, store, self._key, self._upload_id, self._sent, self._take_part()
            )
        )

    def _settle(self) -> None:
        """Waits for every part in flight; raises the first failure."""
        try:
            while self._in_flight:
                self._parts.append(self._in_flight.popleft().result())
        except (BotoCoreError, ClientError) as error:
            raise _unavailable(error) from error

    def commit(self, digest: str | None = None) -> int:
        client = self._store.client
        try:
            digest = promised(self._digest, digest)
            verify(digest, self._size, self._hash.hexdigest(), self._written)
            if self._upload_id is None:
                client.put_object(
                    Bucket=self._store.bucket, Key=self._key, Body=bytes(self._take_part())
                )
            else:
                if self._filled:
                    self._send_part()
                self._settle()
                client.complete_multipart_upload(
                    Bucket=self._store.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
                )
                self._upload_id = None
            if self._staged:
                self._publish_staged(digest)
        except (BotoCoreError, ClientError) as error:
            self.abort()
            raise _unavailable(error) from error
        except BaseException:
            self.abort()
            raise
        return self._written

    def _publish_staged(self, digest: str) -> None:
        store, staging = self._store, self._key
        try:
            if not store.has_blob(digest):
                store.client.copy(
                    {"Bucket": store.bucket, "Key": staging}, store.bucket, store.key(digest)
                )
        finally:
            store.client.delete_object(Bucket=store.bucket, Key=staging)

    def abort(self) -> None:
        """Best effort and never raises: what an unreachable store keeps (a multipart upload,
        a staging object) is left to ``shelf gc`` and the bucket's lifecycle rule. Parts still
        in flight are waited for first, so none lands after the multipart upload is aborted."""
        if self._part is not None:
            self._store.buffers.give(self._part)
            self._part, self._filled = None, 0
        while self._in_flight:
            with contextlib.suppress(Exception):
                self._in_flight.popleft().result()
        client, bucket, key = self._store.client, self._store.bucket, self._key
        if self._staged and self._upload_id is None:
            _best_effort(lambda: client.delete_object(Bucket=bucket, Key=key), key)
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            _best_effort(
                lambda: client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
                key,
            )


def _upload_part(
    store: S3Store, key: str, upload_id: str, number: int, body: bytearray | bytes
) -> dict[str, Any]:
    """Sends one part with its CRC32 (see :data:`PART_CHECKSUM`). A ``bytearray`` body is
    signed, checksummed and sent as it is (botocore wraps ``bytes`` in a ``BytesIO`` and reads
    it back in copies), then given back."""
    try:
        sent = store.client.upload_part(
            Bucket=store.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,  # type: ignore[arg-type]  # botocore takes bytearray; the stubs omit it
            ChecksumAlgorithm=PART_CHECKSUM,
        )
    finally:
        if isinstance(body, bytearray):
            store.buffers.give(body)
    return {"PartNumber": number, "ETag": sent["ETag"], "ChecksumCRC32": sent["ChecksumCRC32"]}


def _best_effort(call: Callable[[], object], key: str) -> None:
    try:
        call()
    except (BotoCoreError, ClientError) as error:
        log.warning("could not clean up the aborted upload to %s: %s", key, error)


# Each part of a multipart upload carries its CRC32, which S3 checks as the part arrives, and
# the object's checksum is composed of the parts' (what boto3's ``upload_file`` does). An
# upload that names no algorithm gets a full-object CRC64NVME computed when it completes, over
# the whole object at once: in moto a copy of the object and a checksum after the last part,
# which made `shelf register` take twice as long as ``upload_file`` (benchmarks/artifacts.py).
PART_CHECKSUM: Literal["CRC32"] = "CRC32"


def _checksums_for(endpoint_url: str | None) -> Literal["when_supported", "when_required"]:
    """Which other requests botocore adds a CRC32 to (a part always has one). Over plain HTTP
    every request is signed with the sha256 of its body (SigV4), and S3 refuses a body that
    does not match it: a CRC32 on top checks nothing more. Over HTTPS the body is not signed
    but streamed with a CRC32 trailer, its only checksum: keep it."""
    plain_http = endpoint_url is not None and endpoint_url.lower().startswith("http://")
    return "when_required" if plain_http else "when_supported"


class S3Store:
    """``s3://bucket/prefix``; ``endpoint_url`` for MinIO and other S3-compatible servers."""

    # S3 has no rename: a blob whose digest comes last is staged and copied to its address.
    digest_last_is_cheap = False

    def __init__(
        self,
        uri: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size_mb: int = 8,
        max_attempts: int = 5,
        upload_concurrency: int = 8,
    ) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidInput(f"S3 artifact URI must look like s3://bucket/prefix, not {uri!r}")
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.part_size = max(part_size_mb * 1024 * 1024, MIN_PART)
        self.upload_concurrency = upload_concurrency
        self.buffers = PartBuffers(self.part_size, keep=upload_concurrency + 1)
        # Shared by every upload: each keeps at most ``upload_concurrency`` parts in flight.
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="shelf-s3-part")
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=48,
            request_checksum_calculation=_checksums_for(endpoint_url),
        )
        self.client: S3Client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    def key(self, digest: str) -> str:
        if not DIGEST_RE.match(digest):
            raise NotFound(f"no blob {digest!r}")
        return f"{self.prefix}/{blob_key(digest)}" if self.prefix else blob_key(digest)

    def blob_size(self, digest: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return int(head["ContentLength"])

    def has_blob(self, digest: str) -> bool:
        return self.blob_size(digest) is not None

    def staging_key(self, name: str) -> str:
        return f"{self.prefix}/uploads/{name}" if self.prefix else f"uploads/{name}"

    def open_writer(self, digest: str | None, size: int | None = None) -> S3BlobWriter:
        return S3BlobWriter(self, digest, size)

    def read_blob(
        self, digest: str, chunk_size: int = CHUNK_SIZE, verified: bool = True
    ) -> Iterator[bytes]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as error:
            if _missing(error):
                raise NotFound(f"blob {digest} is missing from the artifact store") from None
            raise
        body = got["Body"]
        chunks = _closing(body.iter_chunks(chunk_size), body)
        return read_verified(digest, chunks, self.uri) if verified else chunks

    def delete_blob(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))

    def list_blobs(self) -> Iterator[str]:
        prefix = f"{self.prefix}/blobs/sha256/" if self.prefix else "blobs/sha256/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if DIGEST_RE.match(name):
                    yield name

    def _under(self, folder: str) -> str:
        return f"{self.prefix}/{folder}/" if self.prefix else f"{folder}/"

    def blob_items(self) -> Iterator[StoredItem]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._under("blobs/sha256")
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if DIGEST_RE.match(name):
                    yield StoredItem(name, int(item["Size"]), item["LastModified"])

    def stray_uploads(self, started_before: datetime) -> Iterator[StoredItem]:
        """Staging objects and open multipart uploads older than ``started_before`` (S3 does
        not say whether their writer is alive, so age is all there is to go by)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._under("uploads")
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["LastModified"] < started_before:
                    yield StoredItem(item["Key"], int(item["Size"]), item["LastModified"])
        uploads = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for listing in uploads:
            for upload in listing.get("Uploads", []):
                if upload["Initiated"] >= started_before:
                    continue
                parts = self.client.list_parts(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                ).get("Parts", [])
                # A long upload started before the cutoff is still sending parts: its last
                # part, not its start, says whether it is abandoned.
                active = max([upload["Initiated"], *(p["LastModified"] for p in parts)])
                if active < started_before:
                    yield StoredItem(
                        f"{MULTIPART}:{upload['UploadId']}:{upload['Key']}",
                        sum(int(p["Size"]) for p in parts),
                        active,
                    )

    def abandoned_uploads(self) -> Iterator[StoredItem]:
        return iter(())

    def remove_upload(self, item: StoredItem) -> None:
        if item.name.startswith(f"{MULTIPART}:"):
            _, upload_id, key = item.name.split(":", 2)
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        elif item.name.startswith(self._under("uploads")):
            self.client.delete_object(Bucket=self.bucket, Key=item.name)
        else:
            raise NotFound(f"no upload {item.name!r}")

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def _closing(chunks: Iterator[bytes], body: Any) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        body.close()
