"""The production topology as separate OS processes on PostgreSQL + S3: one api, two gateways,
two reconcilers. Traffic spreads over both gateways; exactly one reconciler acts at a time;
killing the leader hands over; statistics flushed by two gateways add up exactly."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.cli import exit_codes
from shelf.demo.traffic import Traffic
from tests.e2e.conftest import shelf_command
from tests.e2e.roles import Role, leaders, production_env, start_role
from tests.e2e.rollout_helpers import (
    Behaviour,
    ModelServers,
    model_servers,
    register_served,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]

GOOD = Behaviour(error_rate=0.0, latency_ms=4.0, accuracy=0.9)
WORSE = Behaviour(error_rate=0.2, latency_ms=4.0, accuracy=0.9)


class Cluster:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.roles: list[Role] = []
        self.api = self.start("api", "api")
        self.gateways = [self.start("gateway", f"gateway-{i}") for i in (1, 2)]
        self.reconcilers = [self.start("reconciler", f"reconciler-{i}") for i in (1, 2)]

    def start(self, role: str, name: str) -> Role:
        started = start_role(role, name, self.env, self.log_dir)
        self.roles.append(started)
        return started

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*shelf_command(), *args],
            env={**self.env, "SHELF_URL": self.api.url},
            capture_output=True,
            text=True,
            timeout=150,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"shelf {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def status(self) -> dict[str, object]:
        result: dict[str, object] = json.loads(
            self.cli("rollout", "status", "fraud", "--json").stdout
        )
        return result

    def traffic(self, **options: object) -> list[Traffic]:
        return [Traffic(g.url, "fraud", **options) for g in self.gateways]  # type: ignore[arg-type]

    def stop(self) -> None:
        for role in reversed(self.roles):
            role.stop()


@pytest.fixture
def cluster(
    postgres_url: str, s3_bucket: str, s3_endpoint: str, tmp_path: Path
) -> Iterator[Cluster]:
    env = production_env(postgres_url, s3_bucket, s3_endpoint, tmp_path / "home")
    running = Cluster(env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def wait_for(predicate: object, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def routes_rollout(gateway_url: str) -> bool:
    routes = httpx.get(f"{gateway_url}/v1/routes", timeout=2).json()["models"]
    return routes.get("fraud", {}).get("state") == "canary"


def run_with_traffic(cluster: Cluster, seconds: float, **options: object) -> list[Traffic]:
    streams = cluster.traffic(**options)
    for stream in streams:
        stream.start()
    time.sleep(seconds)
    for stream in streams:
        stream.stop()
    return streams


def test_one_api_two_gateways_two_reconcilers(
    cluster: Cluster, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_served(cluster.cli, model_servers, tmp_path, GOOD, WORSE, GOOD)

    # Exactly one reconciler acts, at every moment we look.
    wait_for(lambda: len(leaders(cluster.reconcilers)) == 1, 15, "a leader")
    for _ in range(10):
        assert len(leaders(cluster.reconcilers)) == 1
        time.sleep(0.2)

    # Two gateways flush deltas concurrently: the totals equal what the clients saw, exactly.
    cluster.cli(
        "rollout", "start", "fraud", "--challenger", "3", "--steps", "50",
        "--min-samples", "100000000", "--min-step-duration", "1h",
    )  # fmt: skip
    wait_for(lambda: cluster.status()["state"] == "canary", 15, "the canary step")
    # Requests a gateway answers before its routing table holds the rollout are not the
    # rollout's: start counting once every gateway routes it.
    wait_for(lambda: all(routes_rollout(g.url) for g in cluster.gateways), 15, "both gateways")
    streams = run_with_traffic(cluster, 3.0, concurrency=3, label_fraction=0.0)
    served = sum(sum(s.stats.by_version.values()) for s in streams)
    assert served > 100
    assert all(sum(s.stats.by_version.values()) > 0 for s in streams)

    def counted() -> int:
        arms = cluster.status()["arms"]
        return int(arms["champion"]["requests"]) + int(arms["challenger"]["requests"])  # type: ignore[index]

    try:
        wait_for(lambda: counted() == served, 10, f"{served} requests in the totals")
    except AssertionError as error:
        raise AssertionError(f"{error}; the totals hold {counted()}") from None
    time.sleep(1.5)
    assert counted() == served  # and nothing counted twice afterwards
    cluster.cli("rollout", "abort", "fraud")

    # A worse challenger is rolled back with traffic over both gateways.
    streams = cluster.traffic(concurrency=3, label_fraction=0.0)
    for stream in streams:
        stream.start()
    try:
        result = cluster.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--steps", "50,100",
            "--min-samples", "150", "--min-step-duration", "1s", "--guardrail", "error_rate",
            "--wait", "--timeout", "90s", check=False,
        )  # fmt: skip
        assert result.returncode == exit_codes.ROLLED_BACK, result.stdout + result.stderr

        # A good one is promoted, although its leader is killed midway.
        cluster.cli(
            "rollout", "start", "fraud", "--challenger", "3", "--steps", "20,50,100",
            "--min-samples", "200", "--min-step-duration", "2s", "--guardrail", "error_rate",
        )  # fmt: skip
        # (Latency is left out on purpose: on a 2-core machine running seven processes, the
        # model server with the smaller traffic share really is slower — woken from idle.)
        wait_for(lambda: cluster.status()["state"] == "canary", 15, "the canary")
        (leader_name,) = leaders(cluster.reconcilers)
        leader = next(r for r in cluster.reconcilers if r.name == leader_name)
        leader.kill()
        survivor = next(r for r in cluster.reconcilers if r is not leader)
        handover = wait_for(survivor.is_leader, 10, "the survivor to take over")
        assert handover < 10
        finished = wait_for(
            lambda: cluster.status()["state"] in ("promoted", "rolled_back"), 90, "the outcome"
        )
        assert finished
    finally:
        for stream in streams:
            stream.stop()
    status = cluster.status()
    assert status["state"] == "promoted", status["reason"]
    champion = json.loads(cluster.cli("show", "fraud@champion", "--json").stdout)
    assert champion["version"] == 3
