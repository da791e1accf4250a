"""The champion watch end to end: a real `shelf server`, a real model server whose accuracy
drifts, delayed labels through the gateway, a reference profile built by `shelf profile build`,
and what people see: `shelf watch`, `shelf models`, Prometheus, a signed webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from controller.config import ControllerSettings
from controller.webhooks.outbox import sign
from shelf.demo.processes import start_model_server
from shelf.demo.traffic import Traffic
from tests.controller.webhooks.receiver import Receiver
from tests.e2e.conftest import ShelfServer, make_server

pytestmark = pytest.mark.e2e
SECRET = "watch-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def server(backend_settings: ControllerSettings, tmp_path: Path) -> Iterator[ShelfServer]:
    shelf = make_server(
        backend_settings,
        tmp_path,
        SHELF_CHAMPION_BLOCK_S="1",
        SHELF_RECONCILER_INTERVAL_S="0.3",
        SHELF_GATEWAY_FLUSH_INTERVAL_S="0.3",
    )
    shelf.start()
    try:
        yield shelf
    finally:
        shelf.stop()


def heldout(path: Path, accuracy: float, rows: int = 5000) -> None:
    """Held-out predictions of a 3-class model right ``accuracy`` of the time."""
    rng = np.random.default_rng(0)
    with path.open("w") as out:
        for _ in range(rows):
            truth = str(rng.integers(3))
            right = rng.random() < accuracy
            predicted = truth if right else str((int(truth) + 1 + rng.integers(2)) % 3)
            out.write(json.dumps({"predicted": predicted, "label": truth}) + "\n")


def watch_json(server: ShelfServer) -> dict[str, object] | None:
    result = server.cli("watch", "fraud", "--json", check=False)
    return json.loads(result.stdout)["report"] if result.returncode == 0 else None


def test_a_champion_whose_accuracy_decays_is_reported_everywhere(
    server: ShelfServer, receiver: Receiver, tmp_path: Path
) -> None:
    model = start_model_server("v1", tmp_path / "logs", accuracy=0.9, latency_ms=1.0)
    try:
        heldout(tmp_path / "heldout.jsonl", accuracy=0.9)
        profile = str(tmp_path / "p.json")
        server.cli("profile", "build", str(tmp_path / "heldout.jsonl"), "-o", profile)
        weights = tmp_path / "model.bin"
        weights.write_bytes(b"weights")
        server.cli(
            "register", "fraud", str(weights), "--serving-url", model.url,
            "--profile", profile, "--data-window", "2026-01-01..2026-06-30",
        )  # fmt: skip
        server.cli("alias", "set", "fraud", "champion", "1")
        server.cli("webhook", "add", receiver.url, "--secret", SECRET)
        with Traffic(
            server.gateway_url, "fraud", concurrency=4, label_fraction=0.5, label_delay_s=0.2
        ):
            deadline = time.monotonic() + 30
            report = None
            while time.monotonic() < deadline and report is None:
                report = watch_json(server)
                time.sleep(0.3)
            assert report is not None and report["status"] == "fresh"
            time.sleep(5)  # several judged blocks of undrifted traffic: no false alarm
            report = watch_json(server)
            assert report is not None and report["status"] == "fresh", report
            httpx.post(f"{model.url}/dials", json={"accuracy": 0.6}).raise_for_status()
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and report["status"] != "decayed":
                time.sleep(0.5)
                report = watch_json(server) or report
        assert report["status"] == "decayed", report
        shown = server.cli("watch", "fraud").stdout
        assert "champion fraud v1: decayed" in shown and "accuracy" in shown and "ALARM" in shown
        assert "decayed" in server.cli("models").stdout
        metrics = httpx.get(f"{server.url}/metrics/", follow_redirects=True).text
        assert 'shelf_champion_status{model="fraud",status="decayed"} 1.0' in metrics
        assert (
            'shelf_champion_check_log_e_value{against="reference",check="accuracy",model="fraud"}'
            in metrics
        )
        accuracy = next(
            c for c in report["checks"] if (c["check"], c["against"]) == ("accuracy", "reference")
        )
        threshold = f"{accuracy['threshold']}"
        assert (
            'shelf_champion_check_threshold{against="reference",check="accuracy",model="fraud"} '
            + threshold[:6]
            in metrics
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not receiver.received:
            time.sleep(0.2)
        headers, body = next(
            (h, b) for h, b in receiver.received if json.loads(b)["event"] == "champion.decayed"
        )
        assert headers["X-Shelf-Signature"] == sign(SECRET, body)
        payload = json.loads(body)
        assert payload["model"] == "fraud" and payload["status"] == "decayed"
        assert any(e["check"] == "accuracy" for e in payload["evidence"])
        acked = json.loads(server.cli("watch", "fraud", "--ack", "--json").stdout)
        assert acked["report"]["status"] in ("fresh", "stale")
        assert all(c["state"] == "ok" for c in acked["report"]["checks"])
    finally:
        model.stop()
