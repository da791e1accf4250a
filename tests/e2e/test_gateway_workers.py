"""``shelf gateway --workers 2`` as real processes on PostgreSQL + S3: both workers serve the
one port, their statistics add up to exactly what the clients saw (each worker a replica of its
own), ``/metrics`` on the port counts every worker's requests, and a rollback reaches both
workers within a second."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from controller.config import ControllerSettings
from tests.e2e.conftest import settings_env, shelf_command
from tests.e2e.roles import Role, production_env, start_role
from tests.e2e.rollout_helpers import (
    Behaviour,
    ModelServers,
    model_servers,
    register_served,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]

GOOD = Behaviour(error_rate=0.0, latency_ms=2.0, accuracy=0.9)
REQUESTS_RE = re.compile(r'^shelf_gateway_requests_total\{[^}]*model="fraud"[^}]*\} (\S+)$', re.M)


class Deployment:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.roles: list[Role] = []
        self.api = self._start("api", "api")
        self.gateway = self._start("gateway", "gw", "--workers", "2")
        self.roles.append(start_role("reconciler", "reconciler", env, log_dir))

    def _start(self, role: str, name: str, *args: str) -> Role:
        started = start_role(role, name, self.env, self.log_dir, *args)
        self.roles.append(started)
        return started

    @property
    def log_dir(self) -> Path:
        return Path(self.env["SHELF_HOME"]).parent

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [*shelf_command(), *args],
            env={**self.env, "SHELF_URL": self.api.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"shelf {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def routes_by_worker(self, seconds: float) -> dict[str, list[tuple[float, dict[str, object]]]]:
        """``/v1/routes`` on fresh connections for ``seconds``: each answer with its time, by
        the replica id of the worker that gave it."""
        seen: dict[str, list[tuple[float, dict[str, object]]]] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            body = httpx.get(f"{self.gateway.url}/v1/routes", timeout=2).json()
            route = body["models"].get("fraud", {})
            seen.setdefault(body["replica_id"], []).append((time.monotonic(), route))
            time.sleep(0.01)
        return seen

    def stop(self) -> None:
        for role in reversed(self.roles):
            role.stop()


@pytest.fixture
def deployment(
    postgres_url: str, s3_bucket: str, s3_endpoint: str, tmp_path: Path
) -> Iterator[Deployment]:
    env = production_env(postgres_url, s3_bucket, s3_endpoint, tmp_path / "home")
    running = Deployment(env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def test_two_workers_count_exactly_and_roll_back_within_a_second(
    deployment: Deployment, model_servers: ModelServers, tmp_path: Path, postgres_url: str
) -> None:
    register_served(deployment.cli, model_servers, tmp_path, GOOD, GOOD)
    deployment.cli(
        "rollout", "start", "fraud", "--challenger", "2", "--steps", "50",
        "--min-samples", "100000000", "--min-step-duration", "1h",
    )  # fmt: skip

    # Both workers answer on the one port, and both route the canary before we count.
    deadline = time.monotonic() + 20
    while True:
        seen = deployment.routes_by_worker(0.5)
        if set(seen) == {"gw-w0", "gw-w1"} and all(
            answers[-1][1].get("state") == "canary" for answers in seen.values()
        ):
            break
        assert time.monotonic() < deadline, f"workers seen: {sorted(seen)}"

    # Every request on a fresh connection, so the kernel spreads them over both workers;
    # meanwhile each worker flushes rows of its own, as a replica of its own (the reconciler
    # folds them into the totals and deletes them soon after: look while the requests run).
    served = 0
    replicas: set[str] = set()
    engine = create_engine(postgres_url)
    url = f"{deployment.gateway.url}/v2/models/fraud/infer"
    no_keep_alive = httpx.Limits(max_keepalive_connections=0)
    try:
        with httpx.Client(limits=no_keep_alive, timeout=10) as client:
            for i in range(400):
                body = {
                    "inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [i, 1]}]
                }
                response = client.post(url, json=body, headers={"x-shelf-routing-key": f"u{i}"})
                assert response.headers.get("x-shelf-version") in ("1", "2")
                served += 1
                if i % 10 == 0:
                    with engine.connect() as connection:
                        query = text("SELECT DISTINCT replica_id FROM arm_stats_deltas")
                        replicas.update(connection.scalars(query))
        deadline = time.monotonic() + 5
        while replicas != {"gw-w0", "gw-w1"} and time.monotonic() < deadline:
            with engine.connect() as connection:
                query = text("SELECT DISTINCT replica_id FROM arm_stats_deltas")
                replicas.update(connection.scalars(query))
            time.sleep(0.02)
    finally:
        engine.dispose()
    assert replicas == {"gw-w0", "gw-w1"}

    def counted() -> int:
        arms = json.loads(deployment.cli("rollout", "status", "fraud", "--json"))["arms"]
        return int(arms["champion"]["requests"]) + int(arms["challenger"]["requests"])

    deadline = time.monotonic() + 15
    while counted() != served:
        assert time.monotonic() < deadline, f"totals hold {counted()}, clients saw {served}"
        time.sleep(0.2)
    time.sleep(1.0)
    assert counted() == served  # nothing counted twice afterwards

    # A scrape of the port, whichever worker answers, counts every worker's requests.
    for _ in range(4):
        metrics = httpx.get(f"{deployment.gateway.url}/metrics", timeout=5).text
        assert sum(float(v) for v in REQUESTS_RE.findall(metrics)) == served

    # A rollback reaches both workers within a second.
    deployment.cli("rollout", "abort", "fraud")
    aborted = time.monotonic()
    seen = deployment.routes_by_worker(1.5)
    assert set(seen) == {"gw-w0", "gw-w1"}
    for worker, answers in seen.items():
        switched = next((t for t, route in answers if route.get("weight_bp") == 0), None)
        assert switched is not None, f"{worker} still routes the canary"
        assert switched - aborted < 1.0, f"{worker} took {switched - aborted:.2f}s"
        assert all(route.get("weight_bp") == 0 for t, route in answers if t >= switched)


def test_workers_on_a_port_in_use_fail_with_one_line(tmp_path: Path) -> None:
    settings = ControllerSettings(home=tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*shelf_command(), "gateway", "--workers", "2", "--port", str(port)],
            env={**settings_env(settings), "SHELF_SECRET_KEY": "k"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert (
        result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "Traceback" not in result.stdout + result.stderr
