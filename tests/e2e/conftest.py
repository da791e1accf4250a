"""A real `shelf server` process on free loopback ports, driven through the real `shelf` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from tests.conftest import free_port

SHELF_BIN = Path(sys.executable).with_name("shelf")


def shelf_command() -> list[str]:
    return [str(SHELF_BIN)] if SHELF_BIN.exists() else [sys.executable, "-m", "shelf"]


def settings_env(settings: ControllerSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELF_")}
    env.update(
        SHELF_HOME=str(settings.home),
        SHELF_DATABASE_URL=settings.resolved_database_url,
        SHELF_ARTIFACT_URI=settings.resolved_artifact_uri,
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    if settings.s3_endpoint_url:
        env["SHELF_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
        env["SHELF_S3_REGION"] = settings.s3_region or "us-east-1"
    return env


@dataclass
class ShelfServer:
    settings: ControllerSettings
    url: str
    gateway_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def cli(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        run_env = {**self.env, "SHELF_URL": self.url, **(env or {})}
        result = subprocess.run(
            [*shelf_command(), *args], env=run_env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(
                f"shelf {command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self) -> None:
        assert self.log_path is not None
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *shelf_command(),
                "server",
                "--port",
                self.url.rsplit(":", 1)[1],
                "--gateway-port",
                self.gateway_url.rsplit(":", 1)[1],
            ],
            env={**self.env, **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"shelf server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"shelf server did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_server(settings: ControllerSettings, tmp_path: Path, **extra_env: str) -> ShelfServer:
    return ShelfServer(
        settings=settings,
        url=f"http://127.0.0.1:{free_port()}",
        gateway_url=f"http://127.0.0.1:{free_port()}",
        env=settings_env(settings),
        log_path=tmp_path / "server.log",
        extra_env=extra_env,
    )


@pytest.fixture
def shelf_server(backend_settings: ControllerSettings, tmp_path: Path) -> Iterator[ShelfServer]:
    server = make_server(backend_settings, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
