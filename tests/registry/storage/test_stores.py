"""Both artifact stores honour the same contract: atomic, verified, content-addressed."""

from __future__ import annotations

import hashlib
import os

import pytest

from registry.config import Settings
from registry.errors import IntegrityError, NotFound
from registry.storage.base import ArtifactStore, blob_key
from registry.storage.direct_io import BLOCK
from registry.storage.factory import open_store
from registry.storage.s3 import S3Store


@pytest.fixture
def store(backend_settings: Settings) -> ArtifactStore:
    return open_store(backend_settings)


def _put(store: ArtifactStore, data: bytes, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(digest, len(data))
    for start in range(0, len(data), chunk):
        writer.write(data[start : start + chunk])
    writer.commit()
    return digest


def test_round_trip_is_bit_exact(store: ArtifactStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = _put(store, data)
    assert store.has_blob(digest)
    assert store.blob_size(digest) == len(data)
    assert b"".join(store.read_blob(digest, chunk_size=65536)) == data
    assert list(store.list_blobs()) == [digest]


def test_a_blob_of_several_direct_blocks_round_trips(store: ArtifactStore) -> None:
    """Bigger than the local store's O_DIRECT block, in pieces that straddle its blocks."""
    data = os.urandom(2 * BLOCK + 4097)
    digest = _put(store, data, chunk=3 * 1024 * 1024 + 1)
    assert store.blob_size(digest) == len(data)
    assert b"".join(store.read_blob(digest)) == data


def test_empty_blob(store: ArtifactStore) -> None:
    digest = _put(store, b"")
    assert b"".join(store.read_blob(digest)) == b""


def test_digest_mismatch_leaves_nothing(store: ArtifactStore) -> None:
    claimed = hashlib.sha256(b"what the client promised").hexdigest()
    writer = store.open_writer(claimed, 11)
    writer.write(b"other bytes")
    with pytest.raises(IntegrityError, match="does not match"):
        writer.commit()
    assert not store.has_blob(claimed)
    assert list(store.list_blobs()) == []


def test_size_mismatch_leaves_nothing(store: ArtifactStore) -> None:
    data = b"abc"
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(digest, 4)
    writer.write(data)
    with pytest.raises(IntegrityError, match="expected 4"):
        writer.commit()
    assert not store.has_blob(digest)


def test_aborted_upload_leaves_nothing(store: ArtifactStore) -> None:
    data = os.urandom(1024)
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(digest, len(data))
    writer.write(data[:100])
    writer.abort()
    writer.abort()
    assert not store.has_blob(digest)
    assert list(store.list_blobs()) == []


def test_missing_blob_is_not_found(store: ArtifactStore) -> None:
    digest = "0" * 64
    assert store.blob_size(digest) is None
    with pytest.raises(NotFound):
        b"".join(store.read_blob(digest))


def test_store_is_reachable(store: ArtifactStore) -> None:
    store.check()


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3Store:
    return S3Store(
        f"s3://{s3_bucket}/prefix", endpoint_url=s3_endpoint, region="us-east-1", part_size_mb=5
    )


def test_multipart_upload_to_s3(s3_store: S3Store) -> None:
    store = s3_store
    data = os.urandom(12 * 1024 * 1024 + 5)
    digest = _put(store, data)
    head = store.client.head_object(Bucket=store.bucket, Key=store.key(digest))
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert b"".join(store.read_blob(digest)) == data
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket)
    assert not uploads.get("Uploads")


def test_failed_multipart_upload_is_aborted(s3_store: S3Store) -> None:
    store = s3_store
    data = os.urandom(11 * 1024 * 1024)
    wrong = hashlib.sha256(b"x").hexdigest()
    writer = store.open_writer(wrong, len(data))
    writer.write(data)
    with pytest.raises(IntegrityError):
        writer.commit()
    assert not store.has_blob(wrong)
    assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")


def test_corruption_is_detected_on_read(backend_settings: Settings) -> None:
    store = open_store(backend_settings)
    digest = _put(store, b"the real model weights")
    if isinstance(store, S3Store):
        store.client.put_object(Bucket=store.bucket, Key=store.key(digest), Body=b"tampered")
    else:
        (backend_settings.home / "artifacts" / blob_key(digest)).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="corrupt"):
        b"".join(store.read_blob(digest))


def test_digest_given_at_commit(store: ArtifactStore) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    digest = hashlib.sha256(data).hexdigest()
    writer = store.open_writer(None, len(data))
    writer.write(data)
    assert writer.commit(digest) == len(data)
    assert b"".join(store.read_blob(digest)) == data
    assert list(store.list_blobs()) == [digest]

    bad = store.open_writer(None, len(data))
    bad.write(data)
    with pytest.raises(IntegrityError):
        bad.commit(hashlib.sha256(b"other").hexdigest())
    assert list(store.list_blobs()) == [digest]


def test_staged_s3_upload_leaves_no_staging_object(s3_store: S3Store) -> None:
    data = os.urandom(11 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    writer = s3_store.open_writer(None, len(data))
    for start in range(0, len(data), 1 << 20):
        writer.write(data[start : start + (1 << 20)])
    writer.commit(digest)
    keys = [o["Key"] for o in s3_store.client.list_objects_v2(Bucket=s3_store.bucket)["Contents"]]
    assert keys == [s3_store.key(digest)]
    assert b"".join(s3_store.read_blob(digest)) == data
