"""``shelf gateway --workers N``: N gateway processes serving one port (pre-fork).

The supervisor checks that the port is free and holds it, then starts N ``shelf gateway``
processes that each listen on it with ``SO_REUSEPORT``: the kernel spreads new connections
evenly over their sockets (a shared inherited socket would not: whichever worker is awake
accepts them all, and keep-alive clients then stay on it), so a busy gateway can use more than
one core. It keeps no state of its own:

- each worker is a replica of its own, ``<replica id>-w<k>``, so the statistics it flushes,
  keyed by (replica, seq), are merged exactly once like any two gateways' are;
- each worker polls the routing table (``SHELF_GATEWAY_REFRESH_INTERVAL_S``) and, on
  PostgreSQL, LISTENs for changes, so a rollback reaches every worker as it reaches any gateway;
- the workers keep their Prometheus metrics in one shared folder (``controller.gateway.metrics``)
  so that a scrape of the port shows the whole gateway, whichever worker answers it.

SIGTERM or SIGINT is passed on to every worker, which drains and flushes as a lone gateway
does. When a worker dies on its own, the others are stopped too and the supervisor exits with
an error: the orchestrator restarts the pod whole rather than run it short of a worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from controller.config import ControllerSettings
from controller.gateway.recorder import default_replica_id
from registry.errors import InvalidInput

STOP_TIMEOUT_S = 30.0


def worker_replica_id(base: str, index: int) -> str:
    suffix = f"-w{index}"
    return base[: 64 - len(suffix)] + suffix


def bind(host: str, port: int, listen: bool = True) -> socket.socket:
    """A socket on ``host:port`` with ``SO_REUSEPORT``, listening unless ``listen`` is false
    (the supervisor's, which only keeps the port: a socket that does not listen gets no
    connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if listen:
        sock.listen(2048)
    return sock


def run_gateway_workers(settings: ControllerSettings) -> int:
    """Runs ``settings.gateway_workers`` gateway processes on one port until a signal; returns
    the exit code."""
    holder = bind(settings.gateway_host, settings.gateway_port, listen=False)
    metrics_dir = tempfile.mkdtemp(prefix="shelf-gateway-metrics-")
    base = settings.replica_id or default_replica_id()
    stopping = False
    workers: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        for index in range(settings.gateway_workers):
            env = {
                **inherited,
                "SHELF_REPLICA_ID": worker_replica_id(base, index),
                "SHELF_GATEWAY_HOST": settings.gateway_host,
                "SHELF_GATEWAY_PORT": str(settings.gateway_port),
                "SHELF_GATEWAY_WORKERS": "1",
                "SHELF_GATEWAY_METRICS_DIR": metrics_dir,
                "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            }
            command = [sys.executable, "-m", "shelf", "gateway", "--reuse-port"]
            workers.append(subprocess.Popen(command, env=env))
        while not stopping and all(worker.poll() is None for worker in workers):
            time.sleep(0.2)
        failed = not stopping
        stop()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in workers:
            try:
                worker.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        return 1 if failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
