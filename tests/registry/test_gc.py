"""``POST /v1/admin/gc`` (``shelf gc``): unreferenced blobs and upload leftovers are listed by a
dry run, removed with ``apply``, and nothing a running upload or a future registration needs
is touched (finding 10, requirement 5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from controller.config import ControllerSettings
from registry.db.tables import Blob
from shelf import migrate
from shelf.app import create_app
from tests.registry.api_helpers import register, sha, upload

MB = 1024 * 1024
HOUR = 3600.0


@pytest.fixture
def settings(backend_settings: ControllerSettings) -> ControllerSettings:
    return backend_settings.model_copy(update={"s3_multipart_chunk_mb": 5})


@pytest.fixture
def api(settings: ControllerSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _ctx(api: TestClient) -> Any:
    return api.app.state.shelf  # type: ignore[attr-defined]


def _stored(api: TestClient) -> set[str]:
    return set(_ctx(api).store.list_blobs())


def _recorded(api: TestClient) -> set[str]:
    with _ctx(api).database.session() as session:
        return set(session.scalars(select(Blob.digest)))


def _backdate(api: TestClient, digest: str, days: float) -> None:
    with _ctx(api).database.session() as session:
        session.execute(
            update(Blob)
            .where(Blob.digest == digest)
            .values(created_at=datetime.now(UTC) - timedelta(days=days))
        )


def _gc(api: TestClient, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/admin/gc", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _wait_until_parts_are_sent(api: TestClient) -> None:
    store = _ctx(api).store
    if not hasattr(store, "bucket"):
        time.sleep(0.5)
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pending in store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []):
            parts = store.client.list_parts(
                Bucket=store.bucket, Key=pending["Key"], UploadId=pending["UploadId"]
            )
            if parts.get("Parts"):
                return
        time.sleep(0.1)
    raise AssertionError("the upload never sent a part")


class Served:
    """The test's app on a real loopback server (the test client reads a request body whole
    before the app sees it, so a slow upload needs real HTTP)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from tests.conftest import free_port

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class SlowUpload:
    """A blob upload that sends its first half, then waits to be released."""

    def __init__(self, api: TestClient, data: bytes) -> None:
        self.served = Served(api.app)
        self.url = self.served.__enter__()
        self.data = data
        self.digest = sha(data)
        self.halfway = threading.Event()
        self.release = threading.Event()
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, args=(api,), daemon=True)
        self._thread.start()

    def __enter__(self) -> SlowUpload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()  # a failed test must not leave the app waiting on the upload
        self._thread.join(60)
        self.served.__exit__()

    def _body(self) -> Iterator[bytes]:
        half = len(self.data) // 2
        for start in range(0, half, MB):
            yield self.data[start : min(start + MB, half)]
        self.halfway.set()
        self.release.wait(60)
        for start in range(half, len(self.data), MB):
            yield self.data[start : start + MB]

    def _run(self, api: TestClient) -> None:
        headers = {"X-Shelf-Size": str(len(self.data))}
        self.status = httpx.put(
            f"{self.url}/v1/blobs/{self.digest}", content=self._body(), headers=headers, timeout=60
        ).status_code

    def finish(self) -> int | None:
        self.release.set()
        self._thread.join(60)
        return self.status


def test_gc_is_a_dry_run_by_default_and_spares_what_is_young_or_referenced(
    api: TestClient,
) -> None:
    referenced = register(api, "fraud", {"model.bin": b"champion weights"})["files"][0]["digest"]
    young = upload(api, b"uploaded a moment ago, not registered yet")
    stale = upload(api, b"uploaded two days ago and never registered")
    _backdate(api, stale, days=2)
    _backdate(api, referenced, days=2)

    with SlowUpload(api, b"s" * (24 * MB)) as slow:  # a part sent to S3 before it pauses
        assert slow.halfway.wait(30)
        _wait_until_parts_are_sent(api)
        _collect_while_uploading(api, slow, referenced, young, stale)


def _collect_while_uploading(
    api: TestClient, slow: SlowUpload, referenced: str, young: str, stale: str
) -> None:
    dry = _gc(api, grace_s=HOUR)
    assert [b["name"] for b in dry["blobs"]] == [stale]
    assert dry["applied"] is False and dry["uploads"] == []
    assert dry["blob_bytes"] == len(b"uploaded two days ago and never registered")
    assert stale in _stored(api) and stale in _recorded(api)

    applied = _gc(api, grace_s=HOUR)
    assert stale in _stored(api)  # still a dry run
    applied = _gc(api, apply=True, grace_s=HOUR)
    assert applied["applied"] is True
    assert [b["name"] for b in applied["blobs"]] == [stale]
    assert stale not in _stored(api) and stale not in _recorded(api)
    assert {referenced, young} <= _stored(api) & _recorded(api)

    # The upload that was running all along completes and is registered.
    assert slow.finish() == 201
    files = [
        {"path": "big.bin", "size": len(slow.data), "digest": slow.digest},
        {"path": "young.bin", "size": 41, "digest": young},
    ]
    created = api.post("/v1/models/fraud/versions", json={"files": files})
    assert created.status_code == 201, created.text
    assert api.get("/v1/models/fraud/versions/2/files/big.bin").content == slow.data

    # Once everything is referenced, nothing is collectable whatever the grace period.
    assert _gc(api, apply=True, grace_s=0)["blobs"] == []
    assert {referenced, young, slow.digest} <= _stored(api)
    events = api.get("/v1/events", params={"kind": "store.collected"}).json()["items"]
    assert len(events) == 1 and events[0]["payload"]["blobs"] == 1


@pytest.fixture
def local_api(tmp_path: Path) -> Iterator[TestClient]:
    """sqlite+local only: a running local upload is known by its lock (S3 has no such thing)."""
    settings = ControllerSettings(home=tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def s3_api(
    tmp_path: Path, postgres_url: str, s3_endpoint: str, s3_bucket: str
) -> Iterator[TestClient]:
    settings = ControllerSettings(
        home=tmp_path,
        database_url=postgres_url,
        artifact_uri=f"s3://{s3_bucket}/shelf",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
    )
    migrate.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_a_running_local_upload_survives_gc_with_no_grace(local_api: TestClient) -> None:
    api = local_api
    with SlowUpload(api, b"r" * (3 * MB)) as slow:
        assert slow.halfway.wait(30)
        time.sleep(0.3)
        _collect_beside(api, slow)


def _collect_beside(api: TestClient, slow: SlowUpload) -> None:
    tmp = _ctx(api).store.root / "tmp"
    leftover = tmp / "upload-from-a-killed-server"
    leftover.write_bytes(b"partial")
    report = _gc(api, apply=True, grace_s=0)
    assert [u["name"] for u in report["uploads"]] == ["tmp/upload-from-a-killed-server"]
    assert not leftover.exists()
    assert slow.finish() == 201
    assert slow.digest in _stored(api)
    assert list(tmp.iterdir()) == []


def test_s3_multipart_uploads_and_staging_objects_are_collected(
    s3_api: TestClient, s3_endpoint: str
) -> None:
    api = s3_api
    store = _ctx(api).store
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    key = store.key(sha(b"never finished"))
    upload_id = s3.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
    # (moto reports every upload as initiated in 2010; the part says when it was last active)
    s3.upload_part(Bucket=store.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"p")
    s3.put_object(Bucket=store.bucket, Key=store.staging_key("abandoned"), Body=b"staged")
    kept = upload(api, b"recorded, fresh")
    assert _gc(api, grace_s=HOUR)["uploads"] == []
    dry = _gc(api, grace_s=0)
    assert len(dry["uploads"]) == 2
    assert s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    _gc(api, apply=True, grace_s=0)
    assert not s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=store.bucket).get("Contents", [])}
    assert keys == set()  # the fresh blob too: grace 0 and nothing references it
    assert kept not in _stored(api)


def test_blobs_stored_but_never_recorded_are_collected(api: TestClient) -> None:
    store = _ctx(api).store
    data = b"stored, then the database write failed"
    writer = store.open_writer(sha(data), len(data))
    writer.write(data)
    writer.commit()
    assert sha(data) in _stored(api) and sha(data) not in _recorded(api)
    assert _gc(api, apply=True, grace_s=HOUR)["blobs"] == []
    report = _gc(api, apply=True, grace_s=0)
    assert [b["name"] for b in report["blobs"]] == [sha(data)]
    assert sha(data) not in _stored(api)


def test_gc_needs_the_admin_role(backend_settings: ControllerSettings) -> None:
    from registry.config import Role, TokenSpec

    tokens = [
        TokenSpec(name="ci", role=Role.deploy, token="deploy-token-0123456789"),
        TokenSpec(name="ops", role=Role.admin, token="admin-token-0123456789"),
    ]
    app = create_app(backend_settings.model_copy(update={"tokens": tokens}))
    with TestClient(app) as client:
        deploy = {"Authorization": "Bearer deploy-token-0123456789"}
        admin = {"Authorization": "Bearer admin-token-0123456789"}
        assert client.post("/v1/admin/gc", json={}, headers=deploy).status_code == 403
        assert client.post("/v1/admin/gc", json={}, headers=admin).status_code == 200
