"""Shared set-up for rollout end-to-end tests: a model with a champion and a challenger, each
served by a real example model server process, and live traffic through the gateway."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from shelf.demo.processes import Process, start_model_server
from tests.e2e.conftest import ShelfServer, make_server

FAST_LOOP = {
    "SHELF_RECONCILER_INTERVAL_S": "0.3",
    "SHELF_GATEWAY_FLUSH_INTERVAL_S": "0.3",
    "SHELF_GATEWAY_REFRESH_INTERVAL_S": "0.2",
}


@contextmanager
def fast_server(tmp_path: Path) -> Iterator[ShelfServer]:
    """A Shelf server on SQLite with the fast loop above, stopped afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    running = make_server(ControllerSettings(home=home), tmp_path, **FAST_LOOP)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass(frozen=True)
class Behaviour:
    error_rate: float = 0.0
    latency_ms: float = 4.0
    accuracy: float = 0.9
    class_bias: float = 0.0


class ModelServers:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Process] = []

    def start(self, name: str, behaviour: Behaviour, warm: bool = True) -> Process:
        process = start_model_server(
            name,
            self.log_dir,
            error_rate=behaviour.error_rate,
            latency_ms=behaviour.latency_ms,
            accuracy=behaviour.accuracy,
            class_bias=behaviour.class_bias,
        )
        self.started.append(process)
        if not warm:
            return process
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}
        with httpx.Client() as client:  # warm up, as a readiness probe would in production
            for _ in range(20):
                client.post(f"{process.url}/v2/models/warmup/infer", json=body)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.stop()


@pytest.fixture
def model_servers(tmp_path: Path) -> Iterator[ModelServers]:
    servers = ModelServers(tmp_path / "model-logs")
    try:
        yield servers
    finally:
        servers.stop()


def register_versions(
    server: ShelfServer,
    servers: ModelServers,
    tmp_path: Path,
    *behaviours: Behaviour,
    model: str = "fraud",
) -> None:
    """Registers one version per behaviour (v1, v2, …), makes v1 the champion and waits until
    the gateway routes to it."""
    register_served(server.cli, servers, tmp_path, *behaviours, model=model)
    wait_for_champion(server.gateway_url, model, 1)


def register_served(
    cli: Callable[..., object],
    servers: ModelServers,
    tmp_path: Path,
    *behaviours: Behaviour,
    model: str = "fraud",
    warm: bool = True,
) -> None:
    """Starts a model server per behaviour and registers it through ``cli`` as v1, v2, …; v1
    becomes the champion."""
    for number, behaviour in enumerate(behaviours, 1):
        process = servers.start(f"{model}-v{number}", behaviour, warm=warm)
        folder = tmp_path / f"{model}-v{number}"
        folder.mkdir()
        (folder / "model.json").write_text(json.dumps({"version": number, **behaviour.__dict__}))
        cli("register", model, str(folder), "--serving-url", process.url)
    cli("alias", "set", model, "champion", "1")


def wait_for_champion(gateway_url: str, model: str, version: int) -> None:
    """Until the gateway routes ``model`` to ``version`` (it reloads routes every 0.2 s here)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        routes = httpx.get(f"{gateway_url}/v1/routes").json()["models"]
        if routes.get(model, {}).get("champion", {}).get("version") == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"the gateway never routed {model} to v{version}")


def start_rollout(
    server: ShelfServer, *args: str, wait: bool = True, timeout: str = "90s"
) -> subprocess.CompletedProcess[str]:
    command = [
        "rollout", "start", "fraud", "--challenger", "2",
        "--steps", "50,100", "--min-samples", "150", "--min-step-duration", "1s",
        "--max-duration", "80s", *args,
    ]  # fmt: skip
    if wait:
        command += ["--wait", "--timeout", timeout]
    return server.cli(*command, check=False, timeout=150)


def rollout_json(server: ShelfServer, model: str = "fraud") -> dict[str, object]:
    result: dict[str, object] = json.loads(server.cli("rollout", "status", model, "--json").stdout)
    return result
