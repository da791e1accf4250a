"""A real Prometheus server on loopback for the metric-source tests: it scrapes the given
targets every second into a temporary folder and stops with the test."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from shelf.demo.processes import free_port
from tests.conftest import IN_CI

PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
)

CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: models
    static_configs:
      - targets: [{targets}]
"""


def prometheus_or_skip() -> str:
    if PROMETHEUS is None:
        if IN_CI:
            pytest.fail("CI=true but prometheus is not installed")
        pytest.skip("prometheus not installed")
    return PROMETHEUS


@contextmanager
def prometheus(home: Path, targets: list[str]) -> Iterator[str]:
    """Prometheus scraping ``targets`` (``host:port``); yields its URL once it is ready."""
    binary = prometheus_or_skip()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(CONFIG.format(targets=", ".join(f'"{t}"' for t in targets)))
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited: {(home / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("prometheus did not become ready within 30 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
