"""The gateway's own HTTP/1.1 server, over real sockets: keep-alive, pipelining in order,
``Expect: 100-continue``, the head and body limits, the connection cap, its own endpoints
through the ASGI app, and a drain that lets answers in progress finish."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.gateway.asgi import Headers, Receive, Reply, Scope, Send, json_reply, send_json
from controller.gateway.server import GatewayServer, ServerLimits
from tests.conftest import free_port


class EchoApp:
    """Stands in for ``GatewayApp``: proxied requests are echoed back as JSON (after
    ``delay_s`` for a path containing ``slow``), ``/healthz`` goes through ASGI."""

    max_body = 1000

    def __init__(self) -> None:
        self.started = False
        self.stopped = False
        self.mirrored: list[str] = []
        self.answered = 0

    def is_reserved(self, path: str) -> bool:
        return path == "/healthz"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = (await receive())["body"]
        await send_json(
            send, 200, {"status": "ok", "client": scope["client"][0], "body": body.decode()}
        )

    def answer(
        self,
        method: str,
        path: bytes,
        query: bytes,
        headers: Headers,
        body: bytes,
        client_host: str | None,
        done: Callable[[Reply, str | None], None],
    ) -> None:
        if b"boom" in path:
            raise RuntimeError("a bug")
        payload = {
            "method": method,
            "path": path.decode(),
            "query": query.decode(),
            "headers": {name.decode(): value.decode() for name, value in headers},
            "body": body.decode(),
        }

        def reply() -> None:
            self.answered += 1
            done(json_reply(200, payload), path.decode())

        if b"slow" in path:
            asyncio.get_running_loop().call_later(0.3, reply)
        else:
            reply()

    def mirror(self, copy: str) -> None:
        self.mirrored.append(copy)

    def too_large(self) -> Reply:
        return json_reply(413, {"error": "payload_too_large", "message": "too large"})

    async def startup(self) -> None:
        self.started = True

    async def shutdown(self) -> None:
        self.stopped = True


class Running:
    def __init__(self, limits: ServerLimits) -> None:
        self.app = EchoApp()
        self.port = free_port()
        self.server = GatewayServer(self.app, "127.0.0.1", self.port, limits)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


@pytest.fixture
def limits() -> ServerLimits:
    return ServerLimits(
        max_connections=20,
        max_header_bytes=4096,
        max_headers=20,
        header_timeout_s=1.0,
        keep_alive_timeout_s=1.0,
    )


def started(limits: ServerLimits) -> Running:
    """A server on its own thread, listening."""
    server = Running(limits)
    server.thread.start()
    deadline = time.monotonic() + 10
    while not server.server.started:
        assert time.monotonic() < deadline and server.thread.is_alive()
        time.sleep(0.01)
    return server


@pytest.fixture
def running(limits: ServerLimits) -> Iterator[Running]:
    server = started(limits)
    yield server
    server.server.should_exit = True
    server.thread.join(timeout=15)


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from ``sock`` (leftover bytes stay in ``buffer``)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n%s\r\n%s" % (
        path.encode(),
        len(body),
        extra,
        body,
    )


def test_keep_alive_requests_are_proxied_and_mirrored_after_the_answer(running: Running) -> None:
    with running.connect() as sock:
        buffer = bytearray()
        for body in (b"first", b"second"):
            sock.sendall(post("/m/infer?x=1", body, b"x-shelf-routing-key: k\r\n"))
            status, headers, answer = read_response(sock, buffer)
            assert status == 200
            assert "date" in headers and "connection" not in headers
            echoed = json.loads(answer)
            assert echoed == {
                "method": "POST",
                "path": "/m/infer",
                "query": "x=1",
                "headers": {
                    "host": "x",
                    "content-length": str(len(body)),
                    "x-shelf-routing-key": "k",
                },
                "body": body.decode(),
            }
    deadline = time.monotonic() + 5  # each copy is queued right after its answer is written
    while len(running.app.mirrored) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.app.mirrored == ["/m/infer", "/m/infer"]


def test_pipelined_requests_are_answered_in_order(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(post("/slow", b"1") + post("/fast", b"2") + post("/fast", b"3"))
        buffer = bytearray()
        bodies = [json.loads(read_response(sock, buffer)[2])["body"] for _ in range(3)]
    assert bodies == ["1", "2", "3"]


def test_chunked_bodies(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(
            b"POST /m HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        buffer = bytearray()
        assert json.loads(read_response(sock, buffer)[2])["body"] == "abcde"


def test_expect_continue_with_a_declared_body(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(
            b"POST /m HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        status, _, answer = read_response(sock, bytearray())
    assert status == 200 and json.loads(answer)["body"] == "body"


def test_head_answers_carry_no_body(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"HEAD /m HTTP/1.1\r\nhost: x\r\n\r\nGET /m HTTP/1.1\r\nhost: x\r\n\r\n")
        buffer = bytearray()
        sock.settimeout(5)
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert int(dict_of(head)["content-length"]) > 0
        buffer[:] = rest
        status, _, answer = read_response(sock, buffer)  # the GET's answer follows directly
    assert status == 200 and json.loads(answer)["method"] == "GET"


def dict_of(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


def test_http_1_0_and_connection_close_end_the_connection(running: Running) -> None:
    for request in (
        b"GET /m HTTP/1.0\r\n\r\n",
        b"GET /m HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ):
        with running.connect() as sock:
            sock.sendall(request)
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nconnection: close\r\n" in answer


def test_declared_bodies_beyond_the_limit_are_refused_before_they_are_read(
    running: Running,
) -> None:
    with running.connect() as sock:
        sock.sendall(b"POST /m HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(b'"too large"}')
    assert running.app.answered == 0


def test_chunked_bodies_beyond_the_limit_are_refused(running: Running) -> None:
    with running.connect() as sock:
        chunk = b"%x\r\n%s\r\n" % (600, b"a" * 600)
        sock.sendall(b"POST /m HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunk)
        sock.sendall(chunk)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert running.app.answered == 0


def test_request_heads_beyond_the_limits_are_431(running: Running) -> None:
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(30))
    big = b"x-big: " + b"a" * 5000 + b"\r\n"
    for extra in (many, big):
        with running.connect() as sock:
            sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n" + extra + b"\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_a_head_not_finished_in_time_is_408(running: Running) -> None:
    with running.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n")
        time.sleep(0.5)
        sock.sendall(b"x-slow: 1\r\n")
        answer = read_all(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.9 <= waited < 3


def test_idle_keep_alive_connections_are_closed(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert time.monotonic() - started < 3


def test_malformed_requests_are_400(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400 ")


def test_a_failing_request_is_500_and_the_connection_lives_on(running: Running) -> None:
    with running.connect() as sock:
        buffer = bytearray()
        sock.sendall(b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(sock, buffer)[0] == 500
        sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(sock, buffer)[0] == 200


def test_connections_beyond_the_cap_get_503(running: Running, limits: ServerLimits) -> None:
    idle = [running.connect() for _ in range(limits.max_connections)]
    try:
        time.sleep(0.2)
        with running.connect() as sock:
            sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    with running.connect() as sock:
        sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(sock, bytearray())[0] == 200


def test_own_endpoints_go_through_the_asgi_app(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(post("/healthz", b"hi"))
        status, headers, answer = read_response(sock, bytearray())
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(answer) == {"status": "ok", "client": "127.0.0.1", "body": "hi"}


def test_shutdown_lets_an_answer_in_progress_finish(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        time.sleep(0.1)
        running.server.should_exit = True
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in answer
    running.thread.join(timeout=10)
    assert running.app.stopped
    with pytest.raises(OSError):
        running.connect()


def test_a_port_in_use_does_not_start(limits: ServerLimits) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        app: Any = EchoApp()
        server = GatewayServer(app, "127.0.0.1", port, limits)
        asyncio.run(server.serve())
    assert not server.started and app.stopped


def test_a_request_arriving_byte_by_byte_is_answered(running: Running) -> None:
    with running.connect() as sock:
        for byte in post("/m", b"abc"):
            sock.sendall(bytes([byte]))
        status, _, answer = read_response(sock, bytearray())
    assert status == 200 and json.loads(answer)["body"] == "abc"


def test_a_client_gone_mid_answer_leaves_the_server_serving(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n" + post("/m", b"queued"))
        time.sleep(0.05)
    time.sleep(0.5)  # the slow answer completes with nobody to write it to
    with running.connect() as sock:
        sock.sendall(b"GET /m HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_response(sock, bytearray())[0] == 200
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_targets_that_are_not_paths_are_answered(running: Running) -> None:
    with running.connect() as sock:
        sock.sendall(b"GET http://h/m/x?q=1 HTTP/1.1\r\nhost: h\r\n\r\n")
        echoed = json.loads(read_response(sock, bytearray())[2])
    assert (echoed["path"], echoed["query"]) == ("/m/x", "q=1")
    with running.connect() as sock:  # CONNECT asks for a tunnel: answered, then closed
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"path":"example.com:443"' in answer


def test_the_tick_keeps_deadlines_to_a_tenth_and_wakes_an_idle_server_rarely() -> None:
    assert ServerLimits().tick_s == 0.5  # 5 s keep-alive: twice a second, not ten times
    assert ServerLimits(header_timeout_s=1.0, keep_alive_timeout_s=30.0).tick_s == 0.1
    assert ServerLimits(header_timeout_s=60.0, keep_alive_timeout_s=60.0).tick_s == 1.0
    assert ServerLimits(header_timeout_s=0.001).tick_s == 0.01  # never a busy loop


def test_an_idle_server_told_to_exit_stops_before_its_next_tick() -> None:
    server = started(ServerLimits(header_timeout_s=60.0, keep_alive_timeout_s=60.0))  # 1 s tick
    time.sleep(0.05)  # the serve loop is waiting out its tick
    told = time.monotonic()
    server.server.should_exit = True  # from another thread, as shelf.runner's tests do
    server.thread.join(timeout=15)
    assert not server.thread.is_alive()
    assert time.monotonic() - told < 0.5
