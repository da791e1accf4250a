"""Big artifacts through a real server process and the real CLI, on both backends: a file sent
in several parts round-trips bit-exact; on S3 it goes straight to its content address (no
staging object, no server-side copy) in parallel parts; an unchanged file is not sent again;
a corrupted, truncated or interrupted upload is refused and leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from controller.config import ControllerSettings
from tests.e2e.conftest import ShelfServer, make_server
from tests.registry.storage.s3_proxy import FaultyProxy

pytestmark = pytest.mark.e2e
MB = 1024 * 1024


@pytest.fixture
def proxy(backend_settings: ControllerSettings) -> Iterator[FaultyProxy | None]:
    """On S3, a counting proxy between the server and the S3 endpoint."""
    if backend_settings.s3_endpoint_url is None:
        yield None
        return
    running = FaultyProxy(backend_settings.s3_endpoint_url)
    yield running
    running.close()


@pytest.fixture
def server(
    backend_settings: ControllerSettings, proxy: FaultyProxy | None, tmp_path: Path
) -> Iterator[ShelfServer]:
    extra = {"SHELF_S3_MULTIPART_CHUNK_MB": "5", "SHELF_S3_UPLOAD_CONCURRENCY": "4"}
    if proxy is not None:
        extra["SHELF_S3_ENDPOINT_URL"] = proxy.url
    running = make_server(backend_settings, tmp_path, **extra)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _stored(settings: ControllerSettings) -> tuple[list[str], list[str]]:
    """Every object or file the artifact store holds, and every unfinished upload in it."""
    if settings.s3_endpoint_url is None:
        root = settings.home / "artifacts"
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return [f for f in files if not f.startswith("tmp/")], [
            f for f in files if f.startswith("tmp/")
        ]
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
    bucket = settings.resolved_artifact_uri.removeprefix("s3://").split("/")[0]
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return sorted(objects), uploads


def _missing(server: ShelfServer, digest: str) -> bool:
    answer = httpx.post(f"{server.url}/v1/blobs/missing", json={"digests": [digest]}).json()
    return bool(answer["missing"] == [digest])


def test_a_big_file_round_trips_straight_to_its_address(
    server: ShelfServer,
    proxy: FaultyProxy | None,
    backend_settings: ControllerSettings,
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    weights = os.urandom(23 * MB + 11)  # five parts of 5 MB
    (model / "weights.bin").write_bytes(weights)
    (model / "config.json").write_text('{"layers": 3}')

    first = server.cli("register", "fraud", str(model))
    assert "23.0 MiB uploaded" in first.stdout, first.stdout
    objects, uploads = _stored(backend_settings)
    digest = hashlib.sha256(weights).hexdigest()
    assert len(objects) == 2 and any(o.endswith(digest) for o in objects)
    assert all("/blobs/sha256/" in f"/{o}" for o in objects)  # nothing staged elsewhere
    assert uploads == []
    if proxy is not None:
        assert proxy.copies == 0
        assert proxy.parts == 5

    again = server.cli("register", "fraud", str(model))  # unchanged: nothing is sent
    assert "(0 B uploaded" in again.stdout, again.stdout
    if proxy is not None:
        assert proxy.parts == 5

    out = tmp_path / "out"
    server.cli("download", "fraud@2", "-o", str(out))
    assert (out / "weights.bin").read_bytes() == weights
    assert (out / "config.json").read_text() == '{"layers": 3}'
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.bin"]


def test_corrupted_and_truncated_uploads_are_refused_and_leave_nothing(
    server: ShelfServer, backend_settings: ControllerSettings
) -> None:
    data = os.urandom(12 * MB)
    digest = hashlib.sha256(data).hexdigest()
    corrupted = data[:-1] + bytes([data[-1] ^ 1])
    refused = httpx.put(f"{server.url}/v1/blobs/{digest}", content=corrupted, timeout=60)
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"] == "integrity_error" and "does not match" in body["message"]
    assert set(body) == {"error", "message", "detail"}

    truncated = httpx.put(
        f"{server.url}/v1/blobs/{digest}",
        content=data[: 7 * MB],
        headers={"X-Shelf-Size": str(len(data))},
        timeout=60,
    )
    assert truncated.status_code == 422
    assert truncated.json()["error"] == "integrity_error"

    digest_last = httpx.post(
        f"{server.url}/v1/blobs",
        content=corrupted + digest.encode(),
        headers={"X-Shelf-Size": str(len(data))},
        timeout=60,
    )
    assert digest_last.status_code == 422 and digest_last.json()["error"] == "integrity_error"

    assert _missing(server, digest)
    assert _stored(backend_settings) == ([], [])
    listed = server.cli("gc", "--grace", "0", "--json")
    assert json.loads(listed.stdout)["blobs"] == []


def test_an_interrupted_upload_leaves_nothing(
    server: ShelfServer, backend_settings: ControllerSettings
) -> None:
    data = os.urandom(40 * MB)
    digest = hashlib.sha256(data).hexdigest()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as conn:
        head = (
            f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        conn.sendall(head.encode() + data[: 18 * MB])  # some parts are in the store by now
        time.sleep(1.0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _stored(backend_settings) != ([], []):
        time.sleep(0.2)
    assert _stored(backend_settings) == ([], [])
    assert _missing(server, digest)
