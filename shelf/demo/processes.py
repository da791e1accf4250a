"""Start and stop the local processes a demo needs: a Shelf server and example model servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float = 60.0) -> None:
    """Until ``url`` answers 200; fails early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g}s")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str

    def stop(self, timeout_s: float = 15.0) -> None:
        self.terminate()
        self.wait(timeout_s)

    def terminate(self) -> None:
        """Asks the process to shut down gracefully (SIGTERM), without waiting."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 15.0) -> None:
        """Until the process has exited; killed if it takes longer than ``timeout_s``."""
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def stop_all(processes: list[Process], timeout_s: float = 15.0) -> None:
    """Stops every process at once (each shuts down gracefully in parallel), in list order."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout_s)


def spawn(
    name: str, args: list[str], env: dict[str, str], log_dir: Path
) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def start_model_server(
    name: str,
    log_dir: Path,
    *,
    error_rate: float = 0.0,
    latency_ms: float = 5.0,
    accuracy: float = 0.9,
    class_bias: float = 0.0,
) -> Process:
    """An example OIP v2 model server (``shelf.demo.model_server``) on a free port, ready."""
    process = spawn_model_server(
        name,
        log_dir,
        error_rate=error_rate,
        latency_ms=latency_ms,
        accuracy=accuracy,
        class_bias=class_bias,
    )
    wait_ready(process)
    return process


def spawn_model_server(
    name: str,
    log_dir: Path,
    *,
    error_rate: float = 0.0,
    latency_ms: float = 5.0,
    accuracy: float = 0.9,
    class_bias: float = 0.0,
) -> Process:
    """Like :func:`start_model_server` without waiting for it, so several processes can start
    at once (:func:`wait_ready` before use)."""
    port = free_port()
    args = [
        sys.executable, "-m", "shelf.demo.model_server",
        "--port", str(port),
        "--error-rate", str(error_rate),
        "--latency-ms", str(latency_ms),
        "--accuracy", str(accuracy),
        "--class-bias", str(class_bias),
        "--version-name", name,
    ]  # fmt: skip
    popen = spawn(name, args, dict(os.environ), log_dir)
    return Process(name, popen, f"http://127.0.0.1:{port}")


def wait_ready(process: Process) -> None:
    """Until a model server spawned by :func:`spawn_model_server` answers its readiness probe."""
    wait_http(f"{process.url}/v2/health/ready", process.popen)


def start_shelf_server(home: Path, extra_env: dict[str, str] | None = None) -> tuple[Process, str]:
    """``shelf server`` (API, gateway and reconciler) on free ports in ``home``; returns the
    process (whose url is the API) and the gateway's URL."""
    port, gateway_port, reconciler_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELF_")}
    env.update(
        SHELF_HOME=str(home),
        SHELF_PORT=str(port),
        SHELF_GATEWAY_PORT=str(gateway_port),
        SHELF_RECONCILER_PORT=str(reconciler_port),
        **(extra_env or {}),
    )
    args = [sys.executable, "-m", "shelf", "server"]
    popen = spawn("shelf-server", args, env, home / "logs")
    url = f"http://127.0.0.1:{port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    wait_http(f"{url}/healthz", popen)
    wait_http(f"{gateway}/healthz", popen)
    return Process("shelf-server", popen, url), gateway
