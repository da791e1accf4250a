"""Connection limits on every listener of a real ``shelf server`` (finding 4): header size and
count, header and keep-alive timeouts, a connection cap, and abuse of the API that no longer
stalls the gateway sharing its event loop."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from tests.e2e.conftest import ShelfServer, make_server

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 40
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShelfServer]:
    tmp_path: Path = tmp_path_factory.mktemp("limits")
    home = tmp_path / "home"
    home.mkdir()
    running = make_server(
        ControllerSettings(home=home),
        tmp_path,
        SHELF_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        SHELF_KEEP_ALIVE_TIMEOUT_S="1",
        SHELF_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        SHELF_MAX_BODY_BYTES=str(1 * MB),
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _connect(url: str) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """Sends until the server closes; a reset is the expected end of an oversized request."""
    view = memoryview(data)
    try:
        while view:
            sent = sock.send(view[: 1 * MB])
            view = view[sent:]
    except OSError:
        pass


def _read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


class HealthzProbe:
    """Polls the gateway's /healthz on a keep-alive connection and records each latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    def __enter__(self) -> HealthzProbe:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join(timeout=30)


def test_oversized_requests_to_the_api_do_not_stall_the_gateway(server: ShelfServer) -> None:
    with HealthzProbe(server.gateway_url) as probe:
        started = time.monotonic()
        big_header = _connect(server.url)
        _send_quietly(
            big_header,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * MB) + b"\r\n\r\n",
        )
        answer = _read_all(big_header)
        big_header.close()
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]

        big_body = _connect(server.url)
        _send_quietly(
            big_body,
            b"POST /v1/models/m/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"100000\r\n" + b"[" * MB + b"\r\n" for _ in range(64)),
        )
        answer = _read_all(big_body)
        big_body.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        elapsed = time.monotonic() - started
    assert len(probe.latencies) >= 10
    worst = max(probe.latencies)
    print(
        f"gateway /healthz during API abuse ({elapsed:.2f} s, {len(probe.latencies)} probes): "
        f"median {statistics.median(probe.latencies) * 1000:.1f} ms, "
        f"worst {worst * 1000:.1f} ms"
    )
    assert worst < 0.5, f"gateway stalled for {worst:.2f} s (2.2 s before the limits)"


@pytest.mark.parametrize("listener", ["api", "gateway"])
def test_too_many_or_too_large_headers_are_431(server: ShelfServer, listener: str) -> None:
    url = server.url if listener == "api" else server.gateway_url
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    sock = _connect(url)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert _read_all(sock).startswith(b"HTTP/1.1 431")
    sock.close()
    response = httpx.get(f"{url}/healthz", headers={"X-Big": "a" * (128 * 1024)}, timeout=10)
    assert response.status_code == 431
    assert httpx.get(f"{url}/healthz", headers={"X-Small": "a" * 1000}).status_code == 200


@pytest.mark.parametrize("listener", ["api", "gateway"])
def test_a_client_that_never_finishes_its_headers_is_dropped(
    server: ShelfServer, listener: str
) -> None:
    url = server.url if listener == "api" else server.gateway_url
    sock = _connect(url)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(3):
        time.sleep(HEADER_TIMEOUT_S / 4)
        sock.sendall(b"X-Slow: 1\r\n")  # trickling bytes does not extend the deadline
    answer = _read_all(sock, timeout=HEADER_TIMEOUT_S * 4)
    waited = time.monotonic() - started
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEADER_TIMEOUT_S * 0.9 <= waited < HEADER_TIMEOUT_S + 3


def test_idle_keep_alive_connections_are_closed(server: ShelfServer) -> None:
    sock = _connect(server.url)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    answer = _read_all(sock, timeout=10)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - started < 5  # closed after the 1 s keep-alive timeout


def test_connections_beyond_the_cap_are_refused(server: ShelfServer) -> None:
    idle = [_connect(server.url) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        time.sleep(0.2)
        response = httpx.get(f"{server.url}/healthz", timeout=10)
        assert response.status_code == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
