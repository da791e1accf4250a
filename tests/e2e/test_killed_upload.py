"""A server killed in the middle of an upload leaves a partial temporary file; the next start
removes it (finding 10). ``shelf gc`` then works against the remote server like every other
command: a dry run that says what it would free, and ``--apply``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from tests.e2e.conftest import ShelfServer, make_server

pytestmark = pytest.mark.e2e
MB = 1024 * 1024


def _start(settings: ControllerSettings, tmp_path: Path) -> ShelfServer:
    server = make_server(settings, tmp_path)
    server.start()
    return server


def _partial_upload(url: str, sent: threading.Event) -> None:
    data = b"k" * (64 * MB)

    def body() -> Iterator[bytes]:
        # Enough for the store to have written whole 8 MiB blocks (registry/storage/direct_io)
        for start in range(0, 24 * MB, MB):
            yield data[start : start + MB]
        sent.set()
        time.sleep(60)  # the server dies meanwhile
        yield data[24 * MB :]

    digest = hashlib.sha256(data).hexdigest()
    headers = {"Content-Length": str(len(data))}
    with contextlib.suppress(httpx.HTTPError):
        httpx.put(f"{url}/v1/blobs/{digest}", content=body(), headers=headers, timeout=90)


def test_a_killed_servers_partial_upload_is_removed_at_the_next_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    settings = ControllerSettings(home=home)
    tmp_folder = home / "artifacts" / "tmp"
    first = _start(settings, tmp_path)
    try:
        sent = threading.Event()
        threading.Thread(target=_partial_upload, args=(first.url, sent), daemon=True).start()
        assert sent.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 0 for p in tmp_folder.glob("upload-*")
        ):
            time.sleep(0.05)
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    leftovers = list(tmp_folder.glob("upload-*"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0

    second = _start(settings, tmp_path)
    try:
        assert list(tmp_folder.iterdir()) == []
        assert second.log_path is not None
        assert "removed 1 files of uploads a stopped server left" in second.log_path.read_text()

        # shelf gc over HTTP: a registered version's blob stays, an unreferenced one goes.
        model = tmp_path / "model"
        model.mkdir()
        (model / "weights.bin").write_bytes(b"weights")
        second.cli("register", "fraud", str(model))
        stray = b"uploaded, never registered"
        digest = hashlib.sha256(stray).hexdigest()
        assert httpx.put(f"{second.url}/v1/blobs/{digest}", content=stray).status_code == 201
        assert "would free 0 B" in second.cli("gc").stdout  # within the default 24 h grace
        dry = second.cli("gc", "--grace", "0")
        assert "would free 26 B: 1 unreferenced blobs" in dry.stdout, dry.stdout
        assert "--apply" in dry.stdout
        applied = json.loads(second.cli("gc", "--grace", "0s", "--apply", "--json").stdout)
        assert [b["name"] for b in applied["blobs"]] == [digest] and applied["applied"]
        assert second.cli("gc", "--grace", "0", "--json").stdout.count(digest) == 0
        second.cli("download", "fraud@1", "-o", str(tmp_path / "out"))
        assert (tmp_path / "out" / "weights.bin").read_bytes() == b"weights"
        bad = second.cli("gc", "--grace", "soon", check=False)
        assert bad.returncode != 0 and "invalid duration" in bad.stderr
    finally:
        second.stop()
