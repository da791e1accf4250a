"""The S3 endpoint failing in the middle of a multipart upload (requirement 4): the upload
answers 503, and no version, no blob, no object and no open multipart upload is left, also
when the endpoint is down for the abort itself (then ``shelf gc`` finishes the job)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient

from controller.config import ControllerSettings
from shelf import migrate
from shelf.app import create_app
from tests.registry.storage.s3_proxy import FaultyProxy

MB = 1024 * 1024
DATA = bytes(range(256)) * (12 * MB // 256)  # parts of 5, 5 and 2 MB


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultyProxy]:
    running = FaultyProxy(s3_endpoint)
    yield running
    running.close()


@pytest.fixture
def api(
    proxy: FaultyProxy, postgres_url: str, s3_bucket: str, tmp_path: Path
) -> Iterator[TestClient]:
    settings = ControllerSettings(
        home=tmp_path,
        database_url=postgres_url,
        artifact_uri=f"s3://{s3_bucket}/shelf",
        s3_endpoint_url=proxy.url,
        s3_region="us-east-1",
        s3_multipart_chunk_mb=5,
        s3_max_attempts=2,
    )
    migrate.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _assert_nothing_left(api: TestClient, s3_endpoint: str, s3_bucket: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    digest = hashlib.sha256(DATA).hexdigest()
    assert api.post("/v1/blobs/missing", json={"digests": [digest]}).json()["missing"] == [digest]
    files = [{"path": "model.bin", "size": len(DATA), "digest": digest}]
    assert api.post("/v1/models/fraud/versions", json={"files": files}).status_code == 409
    assert api.get("/v1/models/fraud").status_code == 404


def _upload(api: TestClient) -> dict[str, object]:
    digest = hashlib.sha256(DATA).hexdigest()
    response = api.put(f"/v1/blobs/{digest}", content=DATA)
    assert response.status_code == 503, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_part_cut_off_leaves_nothing(
    api: TestClient, proxy: FaultyProxy, s3_endpoint: str, s3_bucket: str
) -> None:
    proxy.cut_when = b"partNumber=2"
    body = _upload(api)
    assert body["error"] == "store_unavailable"
    assert proxy.cuts >= 2  # every try of part 2 was cut
    _assert_nothing_left(api, s3_endpoint, s3_bucket)


def test_an_endpoint_down_for_the_abort_too_is_cleaned_by_gc(
    api: TestClient, proxy: FaultyProxy, s3_endpoint: str, s3_bucket: str
) -> None:
    proxy.cut_when = b"partNumber=2"
    proxy.down_after_cut = True
    assert _upload(api)["error"] == "store_unavailable"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    [left] = s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    # Parts go in parallel: part 1 may have been stored, or cut too when the endpoint went down.
    parts = s3.list_parts(Bucket=s3_bucket, Key=left["Key"], UploadId=left["UploadId"])
    held = sum(part["Size"] for part in parts.get("Parts", []))
    assert held in (0, 5 * MB)
    proxy.down = False
    proxy.cut_when = None
    report = api.post("/v1/admin/gc", json={"apply": True, "grace_s": 0}).json()
    assert len(report["uploads"]) == 1 and report["upload_bytes"] == held
    _assert_nothing_left(api, s3_endpoint, s3_bucket)
