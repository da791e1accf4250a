"""A rollout routed by a webhook: Shelf's weights reach a real nginx through
examples/nginx_router.py, each step waits for the data plane's acknowledgement, and a rollback
is applied within a moment."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.cli import exit_codes
from shelf.demo.traffic import Traffic
from tests.conftest import free_port
from tests.dataplane import nginx_or_skip, nginx_split
from tests.e2e.conftest import ShelfServer
from tests.e2e.rollout_helpers import (
    Behaviour,
    ModelServers,
    fast_server,
    model_servers,
    register_versions,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]  # a fixture
SECRET = "router-secret-0123456789"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ShelfServer]:
    nginx_or_skip()
    with fast_server(tmp_path) as running:
        yield running  # type: ignore[misc]


def status(server: ShelfServer) -> dict[str, object]:
    result: dict[str, object] = json.loads(
        server.cli("rollout", "status", "fraud", "--json").stdout
    )
    return result


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def acknowledged(server: ShelfServer, bp: int) -> bool:
    router = status(server)["router"]
    assert isinstance(router, dict)
    return not router["pending"] and router["acknowledged_weight_bp"] == bp


def test_webhook_router_steps_wait_for_nginx_and_rollback_is_fast(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, Behaviour(), Behaviour())
    v1 = model_servers.started[0].url
    with nginx_split(tmp_path / "nginx", "fraud", v1, SECRET) as split:
        server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--steps", "50,100",
            "--min-samples", "1000000", "--min-step-duration", "1h",
            "--router", "webhook", "--router-url", split.router_url, "--router-secret", SECRET,
        )  # fmt: skip
        wait_until(lambda: acknowledged(server, 5000), 10, "nginx to acknowledge 50 %")
        half = split.versions(200)
        assert 80 <= half["fraud-v2"] <= 120, half
        shown = server.cli("rollout", "status", "fraud").stdout
        assert f"router webhook {split.router_url}: acknowledged; last acknowledged 50%" in shown
        assert SECRET not in json.dumps(status(server))  # the secret is never shown again

        rolled_back = time.monotonic()
        server.cli("rollback", "fraud")
        wait_until(lambda: split.versions(5) == Counter({"fraud-v1": 5}), 5, "nginx all v1")
        assert time.monotonic() - rolled_back < 3.0
        assert acknowledged(server, 0) and status(server)["state"] == "rolled_back"


def test_a_step_waits_for_the_data_plane_and_promotion_reaches_it(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, Behaviour(), Behaviour())
    v1 = model_servers.started[0].url
    unreachable = f"http://127.0.0.1:{free_port()}/weights"
    with Traffic(server.gateway_url, "fraud", concurrency=4, label_fraction=0.0):
        server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--steps", "50,100",
            "--min-samples", "50", "--min-step-duration", "0s", "--guardrail", "error_rate",
            "--margin", "error_rate=0.05",
            "--router", "webhook", "--router-url", unreachable, "--router-secret", SECRET,
        )  # fmt: skip
        time.sleep(3.0)  # plenty of samples for a step, but no acknowledgement
        held = status(server)
        router = held["router"]
        assert isinstance(router, dict)
        assert held["state"] == "canary" and held["step_index"] == 0, held["reason"]
        assert router["pending"] and router["last_error"]
        server.cli("rollout", "abort", "fraud")

    with (
        nginx_split(tmp_path / "nginx", "fraud", v1, SECRET) as split,
        Traffic(server.gateway_url, "fraud", concurrency=4, label_fraction=0.0),
    ):
        result = server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--steps", "50,100",
            "--min-samples", "50", "--min-step-duration", "0s", "--guardrail", "error_rate",
            "--margin", "error_rate=0.05", "--wait", "--timeout", "60s",
            "--router", "webhook", "--router-url", split.router_url, "--router-secret", SECRET,
            check=False,
        )  # fmt: skip
        assert result.returncode == exit_codes.OK, result.stdout + result.stderr
        wait_until(lambda: acknowledged(server, 0), 5, "the promotion to reach nginx")
        promoted = split.versions(20)
    assert promoted == Counter({"fraud-v2": 20}), promoted  # the new champion takes it all
