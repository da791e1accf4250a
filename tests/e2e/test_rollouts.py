"""Rollouts end to end: a real server, real model servers and live traffic through the gateway.
A regressed challenger is rolled back by the guardrails, a good one promoted, and `--wait`
tells CI which happened through its exit code."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from registry.cli import exit_codes
from shelf.demo.traffic import Traffic
from tests.e2e.conftest import ShelfServer
from tests.e2e.rollout_helpers import (
    Behaviour,
    ModelServers,
    fast_server,
    model_servers,
    register_versions,
    rollout_json,
    start_rollout,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]

CHAMPION = Behaviour(error_rate=0.0, latency_ms=4.0, accuracy=0.9)


@pytest.fixture
def server(tmp_path: Path) -> ShelfServer:
    with fast_server(tmp_path) as running:
        yield running  # type: ignore[misc]


@pytest.mark.parametrize(
    ("regression", "guardrail"),
    [
        (Behaviour(error_rate=0.15, latency_ms=4.0, accuracy=0.9), "error_rate"),
        (Behaviour(error_rate=0.0, latency_ms=14.0, accuracy=0.9), "latency"),
        (Behaviour(error_rate=0.0, latency_ms=4.0, accuracy=0.9, class_bias=0.4), "class_shift"),
        (Behaviour(error_rate=0.0, latency_ms=4.0, accuracy=0.45), "accuracy"),
    ],
    ids=["more-errors", "slower", "shifted-predictions", "worse-labels"],
)
def test_regressed_challenger_is_rolled_back(
    server: ShelfServer,
    model_servers: ModelServers,
    tmp_path: Path,
    regression: Behaviour,
    guardrail: str,
) -> None:
    register_versions(server, model_servers, tmp_path, CHAMPION, regression)
    with Traffic(server.gateway_url, "fraud", concurrency=6, label_fraction=0.5, label_delay_s=0.2):
        result = start_rollout(server, "--guardrail", guardrail)
    assert result.returncode == exit_codes.ROLLED_BACK, result.stdout + result.stderr
    status = rollout_json(server)
    assert status["state"] == "rolled_back"
    assert guardrail in str(status["reason"])
    assert status["challenger_weight_bp"] == 0
    champion = json.loads(server.cli("show", "fraud@champion", "--json").stdout)
    assert champion["version"] == 1
    history = server.cli("history", "fraud", "--json").stdout
    rolled_back = [e for e in json.loads(history)["items"] if e["kind"] == "rollout.rolled_back"]
    assert rolled_back and rolled_back[0]["payload"]["evidence"]["verdict"] == "harm"


def test_equal_challenger_is_promoted_and_becomes_champion(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, CHAMPION, CHAMPION)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    with Traffic(server.gateway_url, "fraud", concurrency=6, label_fraction=0.3):
        result = start_rollout(
            server, "--guardrail", "error_rate", "--guardrail", "latency", "--summary", str(summary)
        )
    assert result.returncode == exit_codes.OK, result.stdout + result.stderr
    assert "promoted" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr  # no colour codes off a terminal
    written = summary.read_text()
    assert written.startswith("earlier step\n### Shelf rollout")  # appended, as CI expects
    assert "v1 → v2: **promoted**" in written
    # The last look is at the full-traffic step, where the champion serves nothing new: each
    # guardrail's verdict there is non-inferiority or, on a slow machine, still "continue";
    # never harm.
    for metric in ("error_rate", "latency"):
        assert re.search(rf"\| {metric} \| (no_harm_within_margin|continue) \|", written), written
    champion = json.loads(server.cli("show", "fraud@champion", "--json").stdout)
    assert champion["version"] == 2
    history = json.loads(server.cli("history", "fraud", "--json").stdout)["items"]
    assert any(e["kind"] == "rollout.promoted" for e in history)
    # The full switch to 100 % happened only once every guardrail showed non-inferiority.
    switch = [
        e for e in history if e["kind"] == "rollout.canary" and e["payload"]["step_index"] == 1
    ]
    assert switch and switch[0]["payload"]["evidence"]["verdict"] == "no_harm_within_margin"


def test_wait_times_out_and_abort_exits_4(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, CHAMPION, CHAMPION)
    bad = server.cli(
        "rollout", "start", "fraud", "--challenger", "2", "--margin", "accuracy=0.1", check=False
    )
    assert bad.returncode == exit_codes.ERROR and "not in the list" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1  # one line, no traceback
    # No traffic: the rollout cannot progress, so --wait gives up with its own exit code.
    step_summary = tmp_path / "step-summary.md"
    result = server.cli(
        "rollout", "start", "fraud", "--challenger", "2", "--margin", "error_rate=0.02",
        "--wait", "--timeout", "2s",
        check=False, env={"GITHUB_STEP_SUMMARY": str(step_summary)},
    )  # fmt: skip
    assert result.returncode == exit_codes.TIMED_OUT, result.stdout + result.stderr
    assert "(the job stopped waiting)" in step_summary.read_text()
    status = rollout_json(server)
    assert status["state"] == "canary"
    assert status["plan"]["guardrail_options"] == {"error_rate": {"margin": 0.02}}  # type: ignore[index]
    server.cli("rollout", "abort", "fraud")
    status = rollout_json(server)
    assert status["state"] == "aborted"
    waited = server.cli("rollout", "status", "fraud", "--watch", check=False)
    assert waited.returncode == exit_codes.ABORTED


def test_manual_rollback_during_canary_moves_traffic_within_a_second(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(server, model_servers, tmp_path, CHAMPION, CHAMPION)
    started = start_rollout(server, "--steps", "50", "--min-samples", "1000000", wait=False)
    assert started.returncode == 0, started.stderr
    with Traffic(server.gateway_url, "fraud", concurrency=4, keep_log=True) as traffic:
        deadline = time.monotonic() + 10
        while traffic.stats.by_version["2"] < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert traffic.stats.by_version["2"] >= 20, traffic.stats
        server.cli("rollback", "fraud", "--reason", "pager went off")
        returned = time.monotonic()
        time.sleep(2.0)
    late = [s for s in traffic.log if s.version == "2" and s.sent > returned + 1.0]
    assert late == [], f"{len(late)} requests reached the challenger >1s after the rollback"
    assert rollout_json(server)["state"] == "rolled_back"
    history = json.loads(server.cli("history", "fraud", "--json").stdout)["items"]
    assert any("pager went off" in json.dumps(e) for e in history)


def test_shadow_rollout_judges_mirrored_traffic_and_never_answers_with_it(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    failing = Behaviour(error_rate=0.3, latency_ms=4.0, accuracy=0.9)
    register_versions(server, model_servers, tmp_path, CHAMPION, failing)
    with Traffic(server.gateway_url, "fraud", concurrency=6, label_fraction=0.0) as traffic:
        result = start_rollout(
            server,
            "--strategy", "shadow", "--shadow-duration", "60s", "--steps", "50",
            "--guardrail", "error_rate",
        )  # fmt: skip
    assert result.returncode == exit_codes.ROLLED_BACK, result.stdout + result.stderr
    status = rollout_json(server)
    assert status["strategy"] == "shadow" and "error_rate" in str(status["reason"])
    challenger = status["arms"]["challenger"]  # type: ignore[index]
    assert challenger["requests"] > 0 and challenger["errors"] > 0
    # Every answer came from the champion: mirrored copies are never returned.
    assert set(traffic.stats.by_version) == {"1"}
    assert traffic.stats.statuses[500] == 0
