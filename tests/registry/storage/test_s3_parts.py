"""An S3 upload sends its parts in parallel, up to ``upload_concurrency`` at a time, from reused
buffers; a part that fails fails the upload and leaves no multipart upload and no object."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError

from registry.errors import StoreUnavailable
from registry.storage.s3 import S3Store

MB = 1024 * 1024


@pytest.fixture
def store(s3_endpoint: str, s3_bucket: str) -> S3Store:
    return S3Store(
        f"s3://{s3_bucket}/prefix",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        part_size_mb=5,
        upload_concurrency=3,
    )


class PartWatch:
    """Wraps ``upload_part``: counts the calls running at once, optionally fails one part."""

    def __init__(self, store: S3Store, fail_part: int | None = None) -> None:
        self.running = 0
        self.most = 0
        self.parts: list[int] = []
        self._lock = threading.Lock()
        self._real = store.client.upload_part
        self._fail_part = fail_part
        store.client.upload_part = self  # type: ignore[method-assign]

    def __call__(self, **kwargs: Any) -> Any:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.parts.append(kwargs["PartNumber"])
        try:
            time.sleep(0.1)  # long enough for the next parts to be handed over meanwhile
            if kwargs["PartNumber"] == self._fail_part:
                raise ClientError({"Error": {"Code": "InternalError"}}, "UploadPart")
            return self._real(**kwargs)
        finally:
            with self._lock:
                self.running -= 1


def _chunks(data: bytes) -> list[bytes]:
    """Odd-sized chunks, so parts are cut in the middle of chunks."""
    sizes = [65_536, 1, 3 * MB + 7, 999_999]
    chunks, start, i = [], 0, 0
    while start < len(data):
        chunks.append(data[start : start + sizes[i % len(sizes)]])
        start += sizes[i % len(sizes)]
        i += 1
    return chunks


def _no_leftovers(store: S3Store, digest: str) -> None:
    assert not store.has_blob(digest)
    assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    assert not store.client.list_objects_v2(Bucket=store.bucket).get("Contents")


def test_parts_go_in_parallel_up_to_the_limit(store: S3Store) -> None:
    watch = PartWatch(store)
    data = os.urandom(31 * MB + 5)  # seven parts of 5 MB, the last one short
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(digest, len(data))
    chunks = _chunks(data)
    writer.write_many(chunks[:5])
    for chunk in chunks[5:]:
        writer.write(chunk)
    assert writer.commit() == len(data)
    assert watch.most == 3
    assert sorted(watch.parts) == list(range(1, 8))
    assert b"".join(store.read_blob(digest)) == data
    head = store.client.head_object(Bucket=store.bucket, Key=store.key(digest))
    assert head["ETag"].strip('"').endswith("-7")
    assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_a_failed_part_fails_the_upload_and_leaves_nothing(store: S3Store) -> None:
    watch = PartWatch(store, fail_part=2)
    data = os.urandom(26 * MB)
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(digest, len(data))
    with pytest.raises(StoreUnavailable):
        for chunk in _chunks(data):
            writer.write(chunk)
        writer.commit()
    writer.abort()
    assert watch.running == 0
    _no_leftovers(store, digest)


def test_a_mismatch_found_at_commit_aborts_the_parts_already_sent(store: S3Store) -> None:
    PartWatch(store)
    data = os.urandom(17 * MB)
    # the last byte flipped: a claim never equal to the content's, whatever the random bytes
    claimed = hashlib.sha256(data[:-1] + bytes([data[-1] ^ 1])).hexdigest()
    writer = store.open_writer(claimed, len(data))
    writer.write_many(_chunks(data))
    with pytest.raises(Exception, match="does not match"):
        writer.commit()
    _no_leftovers(store, claimed)


def test_part_buffers_are_reused_not_reallocated(store: S3Store) -> None:
    data = os.urandom(21 * MB)
    for round_ in range(2):
        payload = data + bytes([round_])
        writer = store.open_writer(hashlib.sha256(payload).hexdigest(), len(payload))
        writer.write_many(_chunks(payload))
        writer.commit()
    # at most concurrency + 1 buffers were ever needed, and they are kept for the next upload
    assert 1 <= len(store.buffers._free) <= store.upload_concurrency + 1


def test_each_part_is_signed_with_its_sha256_and_carries_its_crc32(store: S3Store) -> None:
    """Over plain HTTP, S3 checks every part against the sha256 in its signature; each part
    also names its CRC32, so the object's checksum is composed of the parts' as they arrive
    (as boto3's ``upload_file`` does) instead of computed over the whole object at completion.
    Requests other than parts carry no CRC32 over plain HTTP (over HTTPS it is the body's only
    check, and stays)."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        headers = {k.lower(): _text(v) for k, v in request.headers.items()}
        body = request.body.getvalue() if hasattr(request.body, "getvalue") else request.body
        headers["body-sha256"] = hashlib.sha256(body).hexdigest()
        headers["body-crc32"] = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        headers["part"] = parse_qs(urlsplit(request.url).query)["partNumber"][0]
        seen.append(headers)

    store.client.meta.events.register("before-send.s3.UploadPart", record)
    data = os.urandom(11 * MB)
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(digest, len(data))
    writer.write_many(_chunks(data))
    writer.commit()
    assert len(seen) == 3
    for headers in seen:
        assert headers["x-amz-content-sha256"] == headers["body-sha256"]
        assert headers["x-amz-checksum-crc32"] == headers["body-crc32"]
    stored = store.client.head_object(
        Bucket=store.bucket, Key=store.key(digest), ChecksumMode="ENABLED"
    )
    in_order = sorted(seen, key=lambda headers: int(headers["part"]))  # sent in parallel
    parts = b"".join(base64.b64decode(headers["body-crc32"]) for headers in in_order)
    composite = base64.b64encode(zlib.crc32(parts).to_bytes(4, "big")).decode()
    assert stored["ChecksumCRC32"].split("-")[0] == composite  # S3 appends "-3"; moto not
    assert store.client.meta.config.request_checksum_calculation == "when_required"
    over_tls = S3Store("s3://bucket", endpoint_url="https://s3.example.com", region="us-east-1")
    assert over_tls.client.meta.config.request_checksum_calculation == "when_supported"


def _text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value
