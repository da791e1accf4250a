"""SIGTERM: a gateway finishes the requests it is serving and flushes their statistics before
it exits; every role answers its probes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
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
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [7]}]}


def test_gateway_drains_and_flushes_on_sigterm(model_servers: ModelServers, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **settings_env(ControllerSettings(home=home)),
        **FAST_LOOP,
        "SHELF_GATEWAY_FLUSH_INTERVAL_S": "30",
    }
    subprocess.run([*shelf_command(), "db", "upgrade"], env=env, check=True, capture_output=True)
    api = start_role("api", "api", env, tmp_path)
    gateway = start_role("gateway", "gateway", env, tmp_path)
    roles = [api, gateway]

    def cli(*args: str) -> str:
        return subprocess.run(
            [*shelf_command(), *args],
            env={**env, "SHELF_URL": api.url},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    try:
        slow = Behaviour(latency_ms=1500, accuracy=1.0)
        register_served(cli, model_servers, tmp_path, slow, slow, warm=False)
        started = json.loads(
            cli(
                "rollout",
                "start",
                "fraud",
                "--challenger",
                "2",
                "--steps",
                "50",
                "--min-samples",
                "1000000",
                "--json",
            )
        )
        for role in roles:
            assert httpx.get(f"{role.url}/readyz").status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the gateway sees the (pending) rollout
            routes = httpx.get(f"{gateway.url}/v1/routes").json()["models"]
            if routes.get("fraud", {}).get("rollout_id") == started["id"]:
                break
            time.sleep(0.05)

        url = f"{gateway.url}/v2/models/fraud/infer"
        with ThreadPoolExecutor(max_workers=4) as pool:
            pending = [pool.submit(httpx.post, url, json=BODY, timeout=30) for _ in range(4)]
            time.sleep(0.5)  # all four are now waiting on the slow model server
            gateway.process.send_signal(signal.SIGTERM)
            answers = [f.result() for f in pending]
        assert [a.status_code for a in answers] == [200] * 4
        assert gateway.process.wait(timeout=20) == 0

        # Their statistics were flushed on the way out: a reconciler finds all four.
        roles.append(start_role("reconciler", "reconciler", env, tmp_path))
        deadline = time.monotonic() + 15
        counted = 0
        while time.monotonic() < deadline and counted < 4:
            arms = json.loads(cli("rollout", "status", "fraud", "--json"))["arms"]
            counted = arms["champion"]["requests"] + arms["challenger"]["requests"]
            time.sleep(0.3)
        assert counted == 4
    finally:
        for role in reversed(roles):
            role.stop()
