"""Testers' routing and sampled shadow end to end: a real `shelf server` with tokens, real
model servers, the real CLI and live traffic through the gateway.

- A tester forces the challenger with ``X-Shelf-Arm`` at weight 0 (shadow) and at 50 %, with a
  token (none: 401); the forced answers are never in the rollout's statistics.
- ``--mirror-percent 25`` mirrors about a quarter of the requests and the rollout still
  reaches its decision."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from registry.cli import exit_codes
from shelf.demo.traffic import Traffic
from tests.e2e.conftest import ShelfServer, make_server
from tests.e2e.rollout_helpers import (
    FAST_LOOP,
    Behaviour,
    ModelServers,
    model_servers,
    register_versions,
    rollout_json,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]

CHAMPION = Behaviour(error_rate=0.0, latency_ms=4.0, accuracy=0.9)
DEPLOY = "deploy-token-0123456789abcdef"
READ = "tester-token-0123456789abcdef"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [7, 1]}]}


@pytest.fixture
def server(tmp_path: Path) -> ShelfServer:
    home = tmp_path / "home"
    home.mkdir()
    tokens = [
        {"name": "oncall", "role": "deploy", "token": DEPLOY},
        {"name": "tester", "role": "read", "token": READ},
    ]
    server = make_server(
        ControllerSettings(home=home), tmp_path, SHELF_TOKENS=json.dumps(tokens), **FAST_LOOP
    )
    server.env["SHELF_TOKEN"] = DEPLOY
    server.start()
    try:
        yield server  # type: ignore[misc]
    finally:
        server.stop()


def metric(text: str, name: str, *labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include every ``labels`` item."""
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$", re.M)
    return sum(
        float(m.group(2)) for m in pattern.finditer(text) if all(x in m.group(0) for x in labels)
    )


def wait_for_state(server: ShelfServer, state: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = rollout_json(server)
        if status["state"] == state:
            return status
        time.sleep(0.1)
    raise AssertionError(f"the rollout never reached {state}: {rollout_json(server)}")


def wait_for_route(server: ShelfServer, check: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        route = httpx.get(f"{server.gateway_url}/v1/routes").json()["models"].get("fraud", {})
        if check(route):  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("the gateway never routed as expected")


def settled_counts(server: ShelfServer) -> tuple[int, int]:
    """The rollout's (champion, challenger) request counts once two further looks agree."""
    previous: tuple[int, int] | None = None
    for _ in range(40):
        status = rollout_json(server)
        arms = status["arms"]
        counts = (arms["champion"]["requests"], arms["challenger"]["requests"])  # type: ignore[index]
        if counts == previous:
            return counts
        previous = counts
        time.sleep(1.0)
    raise AssertionError("the rollout's counts never settled")


def test_a_tester_forces_an_arm_with_a_token_and_is_never_counted(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, CHAMPION, CHAMPION)
    url = f"{server.gateway_url}/v2/models/fraud/infer"
    forced = {"X-Shelf-Arm": "challenger", "X-Shelf-Token": READ}
    with httpx.Client(timeout=10) as client:
        no_rollout = client.post(url, json=BODY, headers=forced)
        assert no_rollout.status_code == 409, no_rollout.text
        assert no_rollout.json()["error"] == "conflict"

        # Weight 0: a shadow that stays in shadow (it needs more samples than it will get).
        server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--strategy", "shadow",
            "--min-samples", "1000000", "--shadow-duration", "1h",
        )  # fmt: skip
        wait_for_state(server, "shadowing")
        wait_for_route(server, lambda r: r.get("mirror") is True)
        answers = [client.post(url, json=BODY, headers=forced) for _ in range(30)]
        assert {a.status_code for a in answers} == {200}
        assert {a.headers["x-shelf-version"] for a in answers} == {"2"}
        assert {a.json()["model_version"] for a in answers} == {"fraud-v2"}
        refused = client.post(url, json=BODY, headers={"X-Shelf-Arm": "challenger"})
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        wrong = client.post(url, json=BODY, headers={**forced, "X-Shelf-Token": "x" * 20})
        assert wrong.status_code == 401
        label = client.post(
            f"{server.gateway_url}/v1/feedback",
            json={"request_id": answers[0].headers["x-shelf-request-id"], "label": "0"},
        )
        assert label.status_code == 202 and label.json()["attributed"] is False
        assert settled_counts(server) == (0, 0)  # 30 forced answers, none of them counted
        server.cli("rollout", "abort", "fraud")

        # 50 %: forced requests go where they are told, keyed ones where the hash sends them.
        server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--steps", "50",
            "--min-samples", "1000000",
        )  # fmt: skip
        wait_for_state(server, "canary")
        wait_for_route(server, lambda r: r.get("weight_bp") == 5000)
        by_version = {"champion": "1", "challenger": "2", "1": "1", "2": "2"}
        for arm, version in by_version.items():
            for i in range(10):
                answer = client.post(
                    url,
                    json=BODY,
                    headers={
                        "X-Shelf-Arm": arm,
                        "X-Shelf-Token": READ,
                        "X-Shelf-Routing-Key": f"u{i}",
                    },
                )
                assert answer.headers["x-shelf-version"] == version, (arm, answer.text)
        normal = [
            client.post(url, json=BODY, headers={"X-Shelf-Routing-Key": f"user-{i}"})
            for i in range(40)
        ]
        assert {a.status_code for a in normal} == {200}
        assert {a.headers["x-shelf-version"] for a in normal} == {"1", "2"}
        champion, challenger = settled_counts(server)
        assert champion + challenger == 40  # the 40 forced answers are not among them
        assert challenger == sum(a.headers["x-shelf-version"] == "2" for a in normal)

        metrics = client.get(f"{server.gateway_url}/metrics").text
        assert metric(metrics, "shelf_gateway_forced_requests_total", 'model="fraud"') == 70
        assert metric(metrics, "shelf_gateway_forced_refused_total", 'reason="unauthorized"') == 2


def test_a_sampled_shadow_mirrors_a_quarter_and_still_decides(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, CHAMPION, CHAMPION)
    for bad, why in (("0", "mirror_percent"), ("150", "mirror_percent")):
        refused = server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--strategy", "shadow",
            "--mirror-percent", bad, check=False,
        )  # fmt: skip
        assert refused.returncode != 0 and why in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    canary = server.cli(
        "rollout", "start", "fraud", "--challenger", "2", "--mirror-percent", "25", check=False
    )
    assert canary.returncode != 0 and "shadow strategy only" in canary.stderr, canary.stderr

    with Traffic(server.gateway_url, "fraud", concurrency=6, label_fraction=0.0) as traffic:
        started = server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--strategy", "shadow",
            "--mirror-percent", "25", "--guardrail", "error_rate", "--min-samples", "1500",
            "--shadow-duration", "1s", "--max-duration", "120s",
        )  # fmt: skip
        assert "mirroring 25%" in started.stdout
        wait_for_state(server, "shadowing")
        wait_for_route(server, lambda r: r.get("mirror") is True and r["mirror_percent"] == 25)
        time.sleep(0.5)  # the pending phase's requests are answered
        before = httpx.get(f"{server.gateway_url}/metrics").text
        time.sleep(2.0)
        after = httpx.get(f"{server.gateway_url}/metrics").text
        shadowing = rollout_json(server)
        shown = server.cli("rollout", "status", "fraud").stdout
        assert "shadow, mirroring 25%" in shown and "judged on the 25% of requests" in shown
        watched = server.cli("rollout", "status", "fraud", "--watch", check=False, timeout=150)
    assert shadowing["state"] == "shadowing", "the window must lie inside the shadow phase"

    def share(text: str) -> tuple[float, float]:
        served = metric(text, "shelf_gateway_requests_total", 'model="fraud"', 'version="1"')
        copies = metric(text, "shelf_gateway_shadow_requests_total", 'model="fraud"') + metric(
            text, "shelf_gateway_shadow_dropped_total", 'model="fraud"'
        )
        return served, copies

    served = share(after)[0] - share(before)[0]
    copies = share(after)[1] - share(before)[1]
    assert served >= 200, served
    # A quarter, within five binomial standard deviations (and far from a half or all).
    sigma = (0.25 * 0.75 / served) ** 0.5
    assert abs(copies / served - 0.25) < max(5 * sigma, 0.06), (copies, served)

    assert watched.returncode == exit_codes.OK, watched.stdout + watched.stderr
    status = rollout_json(server)
    assert status["state"] == "promoted" and status["mirror_percent"] == 25.0
    arms = status["arms"]
    challenger = arms["challenger"]["requests"]  # type: ignore[index]
    champion = arms["champion"]["requests"]  # type: ignore[index]
    # Both arms' statistics cover the mirrored requests: alike, and a quarter of the traffic.
    # The champion's also hold what it answered for the rollout before mirroring began (the
    # pending phase, whose length depends on the machine's load), never less than the copies.
    assert challenger >= 1500
    assert challenger <= champion <= 1.25 * challenger, (champion, challenger)
    assert champion < 0.5 * sum(traffic.stats.by_version.values())
