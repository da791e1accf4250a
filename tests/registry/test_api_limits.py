"""Request limits enforced before authentication and parsing (findings 2 and 3).

The app is driven at the ASGI level where it matters how many bytes it pulls: a body declared
or sent too large must be refused without being read, with the same answer whoever asks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from controller.config import ControllerSettings
from registry.api.body import RECEIVE_INTO
from registry.config import Role, TokenSpec
from registry.db.tables import ModelVersion
from shelf.app import create_app
from tests.registry.api_helpers import register, sha

TOKEN = "admin-token-0123456789"
MB = 1024 * 1024


PROFILE = {"samples": 100, "class_frequencies": {"0": 1.0}}  # a valid, shallow profile


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def settings(backend_settings: ControllerSettings) -> ControllerSettings:
    return backend_settings.model_copy(
        update={
            "tokens": [TokenSpec(name="ops", role=Role.admin, token=TOKEN)],
            "max_body_bytes": 1 * MB,
            "max_upload_bytes": 4 * MB,
            "body_idle_timeout_s": 0.3,
        }
    )


@pytest.fixture
def api(settings: ControllerSettings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"tokens": []}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


class Wire:
    """An ASGI request whose body arrives in chunks; counts what the app pulls."""

    def __init__(self, chunks: Iterator[bytes], stall_after: int | None = None) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.calls = 0
        self.stall_after = stall_after
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        if self.stall_after is not None and self.calls > self.stall_after:
            await asyncio.sleep(3600)
        chunk = next(self.chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        self.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> dict[str, Any]:
        raw = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        result: dict[str, Any] = json.loads(raw)
        return result


class IntoWire(Wire):
    """The same body offered through ``RECEIVE_INTO`` as well, as the API's server offers it:
    one buffer is filled from several pieces, each coming ``delay`` after the one before."""

    def __init__(
        self, chunks: Iterator[bytes], stall_after: int | None = None, delay: float = 0.0
    ) -> None:
        super().__init__(chunks, stall_after)
        self.delay = delay
        self.arrived = 0.0
        self.left = b""

    async def __call__(self, buffer: bytearray | memoryview) -> int:
        view, filled = memoryview(buffer).cast("B"), 0
        while filled < len(view):
            if not self.left:
                self.calls += 1
                if self.stall_after is not None and self.calls > self.stall_after:
                    await asyncio.sleep(3600)
                await asyncio.sleep(self.delay)
                chunk = next(self.chunks, None)
                if chunk is None:
                    return filled
                self.pulled += len(chunk)
                self.left = chunk
                self.arrived = asyncio.get_running_loop().time()
            taken = min(len(self.left), len(view) - filled)
            view[filled : filled + taken] = self.left[:taken]
            self.left, filled = self.left[taken:], filled + taken
        return filled


def _call(app: Any, method: str, path: str, wire: Wire, headers: dict[str, str]) -> Wire:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "extensions": {RECEIVE_INTO: wire} if isinstance(wire, IntoWire) else {},
    }
    asyncio.run(asyncio.wait_for(app(scope, wire.receive, wire.send), 30))
    return wire


def _endless(chunk: int = MB) -> Iterator[bytes]:
    for _ in range(200):  # 200 MB unless something stops reading
        yield b"[" * chunk


def test_a_declared_oversized_body_is_refused_unread_before_auth(
    settings: ControllerSettings,
) -> None:
    app = create_app(settings)
    headers = {"content-type": "application/json", "content-length": str(200 * MB)}
    wire = _call(app, "POST", "/v1/models/fraud/versions", Wire(_endless()), headers)
    assert wire.status == 413
    assert wire.pulled == 0
    assert wire.body["error"] == "payload_too_large"
    assert set(wire.body) == {"error", "message", "detail"}


def test_an_undeclared_oversized_body_is_cut_at_the_cap_before_auth(
    settings: ControllerSettings,
) -> None:
    app = create_app(settings)
    wire = _call(app, "POST", "/v1/models/fraud/versions", Wire(_endless()), {})
    assert wire.status == 413
    assert wire.pulled <= 2 * MB


def test_uploads_stream_under_their_own_cap(settings: ControllerSettings) -> None:
    app = create_app(settings)
    headers = {"authorization": f"Bearer {TOKEN}", "content-length": str(5 * MB)}
    declared = _call(app, "PUT", f"/v1/blobs/{sha(b'x')}", Wire(_endless()), headers)
    assert declared.status == 413 and declared.pulled == 0
    headers = {"authorization": f"Bearer {TOKEN}", "x-shelf-size": str(3 * MB)}
    streamed = _call(app, "PUT", f"/v1/blobs/{sha(b'x')}", Wire(_endless()), headers)
    assert streamed.status == 413
    assert streamed.pulled <= 6 * MB
    store = app.state.shelf.store
    assert list(store.list_blobs()) == []
    if hasattr(store, "root"):
        assert list((store.root / "tmp").iterdir()) == []
    # Within the cap an upload bigger than the JSON body limit goes through.
    data = b"w" * (2 * MB)
    ok = _call(
        app,
        "PUT",
        f"/v1/blobs/{sha(data)}",
        Wire(iter([data[:MB], data[MB:]])),
        {"authorization": f"Bearer {TOKEN}", "content-length": str(len(data))},
    )
    assert ok.status == 201, ok.body


def test_a_stalled_body_is_dropped_after_the_idle_timeout(settings: ControllerSettings) -> None:
    app = create_app(settings)
    wire = Wire(iter([b'{"files": [']), stall_after=1)
    _call(app, "POST", "/v1/models/fraud/versions", wire, {"content-type": "application/json"})
    assert wire.status == 408
    assert wire.body["error"] == "request_timeout"


@pytest.mark.parametrize("wire_type", [Wire, IntoWire])
def test_a_stalled_upload_is_dropped_and_leaves_nothing(
    settings: ControllerSettings, wire_type: type[Wire]
) -> None:
    app = create_app(settings)
    data = b"s" * (2 * MB)
    wire = wire_type(iter([data[:MB]]), stall_after=1)
    headers = {"authorization": f"Bearer {TOKEN}", "content-length": str(len(data))}
    _call(app, "PUT", f"/v1/blobs/{sha(data)}", wire, headers)
    assert wire.status == 408 and wire.body["error"] == "request_timeout"
    store = app.state.shelf.store
    assert list(store.list_blobs()) == []
    if hasattr(store, "root"):
        assert list((store.root / "tmp").iterdir()) == []


class SlowWire(Wire):
    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(0.15)
        return await super().receive()


def _slow_into(chunks: Iterator[bytes]) -> Wire:
    return IntoWire(chunks, delay=0.15)


@pytest.mark.parametrize("slow_wire", [SlowWire, _slow_into])
def test_a_slow_but_steady_upload_is_not_cut(settings: ControllerSettings, slow_wire: Any) -> None:
    """Each piece comes within the idle timeout, the whole takes several timeouts (and read
    into one buffer, so does a single wait)."""
    app = create_app(settings)
    data = b"t" * (2 * MB)
    pieces = [data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)]
    wire = slow_wire(iter(pieces))
    headers = {"authorization": f"Bearer {TOKEN}", "content-length": str(len(data))}
    _call(app, "PUT", f"/v1/blobs/{sha(data)}", wire, headers)
    assert wire.status == 201, wire.body
    assert list(app.state.shelf.store.list_blobs()) == [sha(data)]


def test_deeply_nested_json_is_refused_at_the_edge(api: TestClient) -> None:
    digest = sha(b"weights")
    assert api.put(f"/v1/blobs/{digest}", content=b"weights").status_code == 201
    files = [{"path": "model.bin", "size": 7, "digest": digest}]
    deep = api.post(
        "/v1/models/fraud/versions", json={"files": files, "reference_profile": _nested(300)}
    )
    assert deep.status_code == 422, deep.text
    assert "SHELF_MAX_JSON_DEPTH" in deep.json()["message"]
    assert api.get("/v1/models/fraud").status_code == 404  # nothing was committed
    brackets = api.post("/v1/blobs/missing", content=b"[" * 5000)
    assert brackets.status_code == 422
    shallow = api.post(
        "/v1/models/fraud/versions", json={"files": files, "reference_profile": _nested(20)}
    )
    # Within the depth limit: refused only for what it says (not a profile), not for its depth.
    assert shallow.status_code == 422 and "SHELF_MAX_JSON_DEPTH" not in shallow.text
    text = api.post(
        "/v1/models/fraud/versions",
        json={"files": files, "description": "[[[[{{{{" * 100, "reference_profile": PROFILE},
    )
    assert text.status_code == 201, text.text  # brackets inside strings do not count


def test_a_too_deep_profile_stored_earlier_does_not_break_reads(
    api: TestClient, tmp_path: Path
) -> None:
    register(api, "fraud", {"model.bin": b"weights"}, reference_profile=PROFILE)
    database = api.app.state.shelf.database  # type: ignore[attr-defined]
    with database.session() as session:
        session.execute(update(ModelVersion).values(reference_profile=_nested(300)))
    for url in ("/v1/models/fraud/versions", "/v1/models/fraud/versions/1"):
        response = api.get(url)
        assert response.status_code == 200, response.text
    assert api.get("/v1/models/fraud/versions/1").json()["reference_profile"] is None
    patched = api.patch("/v1/models/fraud/versions/1", json={"description": "still readable"})
    assert patched.status_code == 200, patched.text
