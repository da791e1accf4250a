"""A crashed reconciler resumes the same rollout from the database (embedded SQLite, roles as
separate processes)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from controller.config import ControllerSettings
from shelf.demo.traffic import Traffic
from tests.e2e.conftest import settings_env, shelf_command
from tests.e2e.roles import start_role
from tests.e2e.rollout_helpers import (
    FAST_LOOP,
    Behaviour,
    ModelServers,
    model_servers,
    register_served,
)

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]


def test_killed_reconciler_resumes_the_same_rollout(
    model_servers: ModelServers, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**settings_env(ControllerSettings(home=home)), **FAST_LOOP}
    subprocess.run([*shelf_command(), "db", "upgrade"], env=env, check=True, capture_output=True)
    api = start_role("api", "api", env, tmp_path)
    gateway = start_role("gateway", "gateway", env, tmp_path)
    reconciler = start_role("reconciler", "reconciler", env, tmp_path)
    roles = [api, gateway, reconciler]

    def cli(*args: str) -> str:
        done = subprocess.run(
            [*shelf_command(), *args],
            env={**env, "SHELF_URL": api.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def status() -> dict[str, object]:
        result: dict[str, object] = json.loads(cli("rollout", "status", "fraud", "--json"))
        return result

    try:
        register_served(cli, model_servers, tmp_path, Behaviour(), Behaviour())
        started = json.loads(
            cli(
                "rollout",
                "start",
                "fraud",
                "--challenger",
                "2",
                "--steps",
                "20,50,100",
                "--min-samples",
                "150",
                "--min-step-duration",
                "1s",
                "--guardrail",
                "error_rate",
                "--json",
            )
        )
        with Traffic(gateway.url, "fraud", concurrency=4, label_fraction=0.0):
            deadline = time.monotonic() + 60
            while status()["step_index"] < 1 and time.monotonic() < deadline:  # type: ignore[operator]
                time.sleep(0.2)
            reconciler.kill()
            frozen = status()
            assert frozen["state"] == "canary" and frozen["step_index"] >= 1
            time.sleep(2.0)
            assert status()["step_index"] == frozen["step_index"], "nobody should act while down"
            roles.append(start_role("reconciler", "reconciler-restarted", env, tmp_path))
            deadline = time.monotonic() + 90
            while status()["state"] == "canary" and time.monotonic() < deadline:
                time.sleep(0.3)
        final = status()
        assert final["id"] == started["id"]
        assert final["state"] == "promoted", final["reason"]
        events = json.loads(cli("history", "fraud", "--json", "--limit", "200"))["items"]
        steps = [
            e["payload"]["step_index"]
            for e in reversed(events)
            if e["kind"] == "rollout.canary" and e["payload"].get("rollout_id") == started["id"]
        ]
        assert steps == sorted(steps) and len(steps) == len(set(steps)), steps
    finally:
        for role in reversed(roles):
            role.stop()
