"""Blobs in S3 (or MinIO and other S3-compatible stores) through boto3.

An upload is a multipart upload straight to the blob's final key, one part per
``SHELF_S3_MULTIPART_CHUNK_MB`` buffered bytes, so memory stays constant. S3 shows nothing under
the key until ``CompleteMultipartUpload``, which is only called once the size and sha256 of
everything sent match the client's promise; otherwise the upload is aborted and no object
ever appears."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.errors import InvalidInput, NotFound, StoreUnavailable
from registry.storage.base import CHUNK_SIZE, DIGEST_RE, StoredItem, blob_key, promised
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
    """Without a digest up front the upload goes to a staging key (``uploads/<random>``) and is
    copied server-side to its content address once verified (S3 has no rename)."""

    def __init__(self, store: S3Store, digest: str | None, size: int | None) -> None:
        self._store = store
        self._staged = digest is None
        self._key = store.key(digest) if digest else store.staging_key(uuid.uuid4().hex)
        self._digest = digest
        self._size = size
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._written += len(chunk)
        self._buffer += chunk
        try:
            while len(self._buffer) >= self._store.part_size:
                self._send_part(self._store.part_size)
        except (BotoCoreError, ClientError) as error:
            raise _unavailable(error) from error

    def _send_part(self, size: int | None = None) -> None:
        """Sends the first ``size`` buffered bytes (all of them by default) as the next part."""
        client = self._store.client
        if self._upload_id is None:
            created = client.create_multipart_upload(Bucket=self._store.bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        sent = client.upload_part(
            Bucket=self._store.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer[:size]),
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        del self._buffer[:size]

    def commit(self, digest: str | None = None) -> int:
        client = self._store.client
        try:
            digest = promised(self._digest, digest)
            verify(digest, self._size, self._hash.hexdigest(), self._written)
            if self._upload_id is None:
                client.put_object(
                    Bucket=self._store.bucket, Key=self._key, Body=bytes(self._buffer)
                )
            else:
                if self._buffer:
                    self._send_part()
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
        self._buffer.clear()
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
        a staging object) is left to ``shelf gc`` and the bucket's lifecycle rule."""
        self._buffer.clear()
        client, bucket, key = self._store.client, self._store.bucket, self._key
        if self._staged and self._upload_id is None:
            _best_effort(lambda: client.delete_object(Bucket=bucket, Key=key), key)
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            _best_effort(
                lambda: client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
                key,
            )


def _best_effort(call: Callable[[], object], key: str) -> None:
    try:
        call()
    except (BotoCoreError, ClientError) as error:
        log.warning("could not clean up the aborted upload to %s: %s", key, error)


class S3Store:
    """``s3://bucket/prefix``; ``endpoint_url`` for MinIO and other S3-compatible servers."""

    def __init__(
        self,
        uri: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size_mb: int = 16,
        max_attempts: int = 5,
    ) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise InvalidInput(f"S3 artifact URI must look like s3://bucket/prefix, not {uri!r}")
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.part_size = max(part_size_mb * 1024 * 1024, MIN_PART)
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"}, max_pool_connections=32
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

    def read_blob(self, digest: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as error:
            if _missing(error):
                raise NotFound(f"blob {digest} is missing from the artifact store") from None
            raise
        body = got["Body"]
        return read_verified(digest, _closing(body.iter_chunks(chunk_size), body), self.uri)

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
