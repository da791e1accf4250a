"""The client's download path against hostile or unusual manifests (finding 9): file names
that need URL-encoding download intact, and a server that sends more than an entry declares is
cut off at once instead of filling the disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from registry.client.http import Connection
from registry.client.socket_http import FileBody
from registry.client.transfer import download_version
from registry.config import ClientSettings, Settings
from registry.errors import IntegrityError
from shelf.app import create_app
from tests.registry.api_helpers import register, sha


def _connection(http: httpx.Client) -> Connection:
    connection = Connection(ClientSettings(url="http://testserver"))
    connection.close()
    connection._http = http
    connection.socket_transfers = False  # bodies go through the injected httpx client
    return connection


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    home = tmp_path / "home"
    home.mkdir()
    from shelf import migrate

    settings = Settings(home=home)
    migrate.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_paths_that_need_url_encoding_download_intact(api: TestClient, tmp_path: Path) -> None:
    files = {
        "a?b#c": b"query and fragment",
        "dir/100% sure.txt": b"percent and space",
        "caf\u00e9/na\u00efve": b"non-ascii",
    }
    created = register(api, "odd", files)
    out = tmp_path / "out"
    written = download_version(_connection(api), "odd", 1, created["files"], out, False)
    assert len(written) == 3
    for path, data in files.items():
        assert (out / path).read_bytes() == data


def test_download_stops_as_soon_as_an_entry_exceeds_its_declared_size(tmp_path: Path) -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(10_000):  # 10 GB if nothing stops it
            sent += 1024 * 1024
            yield b"\0" * (1024 * 1024)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    http = httpx.Client(base_url="http://testserver", transport=httpx.MockTransport(handler))
    entry = {"path": "model.bin", "size": 3 * 1024 * 1024, "digest": sha(b"x")}
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="more than"):
        download_version(_connection(http), "m", 1, [entry], out, False)
    assert sent <= 5 * 1024 * 1024
    assert list(out.iterdir()) == []


def test_a_failed_already_stored_check_does_not_stop_the_upload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The check sent once the hash is known is a shortcut: a connection reset on it (a stale
    keep-alive connection) leaves the upload to go on, and nothing is logged as a failure."""
    from registry.client import transfer

    data = b"model weights" * 1000
    received: list[bytes] = []

    class Registry:
        def post(self, path: str, body: object) -> object:
            raise httpx.ReadError("Connection reset by peer")

        def upload_blob_digest_last(self, body: FileBody) -> object:
            received.append(b"".join(body.chunks()))
            return {}

    (tmp_path / "weights.bin").write_bytes(data)
    entry, sent = transfer._send_while_hashing(
        Registry(),  # type: ignore[arg-type]
        "weights.bin",
        tmp_path / "weights.bin",
        lambda n: None,
    )
    assert sent == len(data) and entry.digest == sha(data)
    assert received == [data + sha(data).encode()]
    assert "exception calling callback" not in caplog.text
