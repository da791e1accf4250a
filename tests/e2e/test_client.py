"""The Python client (``shelf.Client``) drives a real ``shelf server``: register, download,
aliases, a rollout followed to its outcome with typed evidence, feedback, rollback, errors."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.stats import Report
from registry.errors import Conflict, InvalidInput, NotFound
from shelf import Client, RolloutTimeout, Unreachable
from shelf.demo.traffic import Traffic
from tests.conftest import free_port
from tests.e2e.conftest import ShelfServer
from tests.e2e.rollout_helpers import (
    Behaviour,
    ModelServers,
    fast_server,
    model_servers,
    wait_for_champion,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]  # a fixture


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ShelfServer]:
    with fast_server(tmp_path) as running:
        yield running  # type: ignore[misc]


def _model_folder(tmp_path: Path, name: str, content: bytes) -> Path:
    folder = tmp_path / name
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "model.bin").write_bytes(content)
    (folder / "config.json").write_text('{"classes": ["0", "1", "2"]}')
    return folder


def test_a_ci_job_in_python_registers_rolls_out_and_rolls_back(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    v1_server = model_servers.start("fraud-v1", Behaviour())
    v2_server = model_servers.start("fraud-v2", Behaviour())
    with Client(server.url, gateway_url=server.gateway_url) as client:
        first = client.register(
            "fraud",
            _model_folder(tmp_path, "v1", b"weights-1" * 1000),
            serving_url=v1_server.url,
            source_uri="git+https://example/repo@0123abc",
            data_window=("2026-01-01", "2026-06-30"),
            tags={"team": "risk"},
        )
        assert (first["version"], first["git_commit"], first["tags"]) == (
            1,
            "0123abc",
            {"team": "risk"},
        )
        assert first["uploaded_bytes"] > 9000
        second = client.register(
            "fraud", _model_folder(tmp_path, "v2", b"weights-1" * 1000), serving_url=v2_server.url
        )
        assert (second["version"], second["uploaded_bytes"]) == (2, 0)  # nothing new to store

        client.set_alias("fraud", "champion", 1)
        assert client.version("fraud@champion")["version"] == 1
        written = client.download("fraud@1", tmp_path / "out")
        model_bin = tmp_path / "out" / "weights" / "model.bin"
        assert sorted(written) == sorted([model_bin, tmp_path / "out" / "config.json"])
        expected = hashlib.sha256(b"weights-1" * 1000).hexdigest()
        assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == expected
        wait_for_champion(server.gateway_url, "fraud", 1)

        with Traffic(server.gateway_url, "fraud", concurrency=4, label_fraction=0.0):
            started = client.start_rollout(
                "fraud",
                2,
                steps=[50, 100],
                min_samples=100,
                min_step_duration_s=1,
                max_duration_s=60,
                guardrails=["error_rate"],
                guardrail_options={"error_rate": {"margin": 0.05}},
            )
            seen: list[str] = []
            outcome = client.wait(
                started.id, 90, poll_s=0.3, on_progress=lambda r: seen.append(r.state)
            )
        assert outcome.state == "promoted", outcome.reason
        assert outcome.ended and seen[-1] == "promoted"
        assert isinstance(outcome.evidence, Report)
        assert [e.metric for e in outcome.evidence.guardrails] == ["error_rate"]
        looks = client.observations(started.id)
        assert looks and all(isinstance(look.evidence, Report) for look in looks)
        assert client.version("fraud@champion")["version"] == 2

        back = client.rollback("fraud", reason="client test")
        assert (back["champion_version"], back["previous_champion_version"]) == (1, 2)

        pending = client.start_rollout("fraud", 2, min_samples=10**9)
        with pytest.raises(RolloutTimeout) as timeout:
            client.wait(pending.id, 0.5, poll_s=0.1)
        assert timeout.value.rollout.id == pending.id
        request_id = _request_id_within_rollout(server.gateway_url)
        recorded = client.feedback(request_id, label="1")
        assert (recorded["status"], recorded["rollout_id"]) == ("recorded", pending.id)
        with pytest.raises(Conflict):
            client.feedback(request_id, label="1")  # a label counts once
        assert client.abort("fraud").state == "aborted"
        with pytest.raises(NotFound):
            client.version("fraud@99")

        sampled = client.start_rollout("fraud", 2, strategy="shadow", mirror_percent=12.5)
        assert sampled.mirror_percent == 12.5 and sampled.plan["mirror_percent"] == 12.5
        assert client.abort("fraud").state == "aborted"
        with pytest.raises(InvalidInput, match="shadow strategy only"):
            client.start_rollout("fraud", 2, mirror_percent=50)


def _request_id_within_rollout(gateway_url: str) -> str:
    """The id of a request the gateway answered as part of the active rollout (it picks the
    rollout up within its refresh interval)."""
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [4]}]}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        routes = httpx.get(f"{gateway_url}/v1/routes").json()["models"]
        if routes.get("fraud", {}).get("rollout_id") is not None:
            answer = httpx.post(f"{gateway_url}/v2/models/fraud/infer", json=body)
            return answer.headers["x-shelf-request-id"]
        time.sleep(0.05)
    raise AssertionError("the gateway never routed the rollout")


def test_an_unreachable_server_is_one_clear_error() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client,
        pytest.raises(Unreachable, match="cannot reach Shelf"),
    ):
        client.models()
