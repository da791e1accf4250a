"""Shelf's production roles as separate OS processes (`shelf api|gateway|reconciler`)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from controller.config import ControllerSettings
from tests.conftest import free_port
from tests.e2e.conftest import settings_env, shelf_command
from tests.e2e.rollout_helpers import FAST_LOOP

LEADER_RE = re.compile(r"^shelf_reconciler_leader (\S+)$", re.MULTILINE)


@dataclass
class Role:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def is_leader(self) -> bool:
        text = httpx.get(f"{self.url}/metrics/", timeout=2, follow_redirects=True).text
        match = LEADER_RE.search(text)
        return bool(match and float(match.group(1)) == 1.0)


def start_role(role: str, name: str, env: dict[str, str], log_dir: Path, *args: str) -> Role:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [*shelf_command(), role, "--port", str(port), *args],
        env={**env, "SHELF_REPLICA_ID": name},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Role(name, url, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{name} did not start: {log_path.read_text()[-3000:]}")


def leaders(reconcilers: list[Role]) -> list[str]:
    return [r.name for r in reconcilers if r.process.poll() is None and r.is_leader()]


def production_env(
    postgres_url: str, s3_bucket: str, s3_endpoint: str, home: Path
) -> dict[str, str]:
    """The environment of separate roles on PostgreSQL and S3 (fast loops), its database
    migrated as `shelf db upgrade` does in production."""
    home.mkdir()
    settings = ControllerSettings(
        home=home,
        database_url=postgres_url,
        artifact_uri=f"s3://{s3_bucket}/shelf",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
    )
    env = {**settings_env(settings), **FAST_LOOP}
    subprocess.run([*shelf_command(), "db", "upgrade"], env=env, check=True, capture_output=True)
    return env
