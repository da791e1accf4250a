"""Bodies read straight into the app's buffers (shelf/body_into.py), over real sockets: every
byte arrives once and in order whatever the buffer and the client's pieces, the connection
carries the next request (keep-alive, pipelined, after an early answer), and a client that
goes away is told to the app."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from registry.api.body import RECEIVE_INTO
from shelf.body_into import ReceiveIntoProtocol
from shelf.http_limits import HeaderLimits, protocol_with
from tests.shelf.uvicorn_thread import serving

MB = 1024 * 1024


class IntoApp:
    """Reads each body into a buffer of ``x-buffer`` bytes (all of it, or ``x-read-only``
    bytes), and answers with its size and sha256 and how it was read."""

    def __init__(self) -> None:
        self.disconnected = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        read_into = scope.get("extensions", {}).get(RECEIVE_INTO)
        digest, size = hashlib.sha256(), 0
        if read_into is None:
            how, more = "receive", True
            while more:
                message = await receive()
                digest.update(message.get("body", b""))
                size += len(message.get("body", b""))
                more = message.get("more_body", False)
        else:
            how = "into"
            buffer = bytearray(int(headers.get(b"x-buffer", b"65536")))
            wanted = int(headers.get(b"x-read-only", b"-1"))
            pause_after = int(headers.get(b"x-pause-after", b"-1"))
            timeout = float(headers.get(b"x-timeout", b"60"))
            try:
                while wanted < 0 or size < wanted:
                    if size == pause_after:
                        await asyncio.sleep(1.5)
                    try:
                        filled = await asyncio.wait_for(read_into(buffer), timeout)
                    except TimeoutError:
                        how = "timeout"
                        break
                    digest.update(memoryview(buffer)[:filled])
                    size += filled
                    if filled < len(buffer):
                        break
            except ClientDisconnect:
                self.disconnected.set()
                return
        answer = f"{how} {size} {digest.hexdigest()}".encode()
        out = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture(params=["uvloop", "asyncio"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[int, IntoApp]]:
    app = IntoApp()
    http = protocol_with(HeaderLimits(), ReceiveIntoProtocol)
    with serving(app, http, loop=request.param) as port:
        yield port, app


def _request(body: bytes, **headers: float | str) -> bytes:
    head = b"PUT /x HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n" % len(body)
    for name, value in headers.items():
        head += f"{name.replace('_', '-')}: {value}\r\n".encode()
    return head + b"\r\n" + body


def _answers(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` responses read off ``sock``: their bodies."""
    data, bodies = b"", list[bytes]()
    while len(bodies) < count:
        while b"\r\n\r\n" not in data:
            data += _recv(sock)
        head, data = data.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(data) < length:
            data += _recv(sock)
        bodies.append(data[:length])
        data = data[length:]
    return bodies


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


def _expected(data: bytes, how: str = "into") -> bytes:
    return f"{how} {len(data)} {hashlib.sha256(data).hexdigest()}".encode()


@pytest.mark.parametrize(
    ("buffer", "piece", "pause"),
    [(MB, MB, 0.0), (65536, 100_000, 0.01), (4 * MB, 7_001, 0.0), (7, 65536, 0.0)],
)
def test_a_body_arrives_intact_into_buffers_of_any_size(
    served: tuple[int, IntoApp], buffer: int, piece: int, pause: float
) -> None:
    port, _ = served
    data = os.urandom(3 * MB + 12345 if buffer > 1000 else 200_000)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        request = _request(data, x_buffer=buffer)
        for start in range(0, len(request), piece):
            sock.sendall(request[start : start + piece])
            if pause:
                time.sleep(pause)
        assert _answers(sock, 1) == [_expected(data)]


def test_keep_alive_and_pipelined_requests_follow_a_body_read_into_buffers(
    served: tuple[int, IntoApp],
) -> None:
    port, _ = served
    bodies = [os.urandom(2 * MB + 1), b"", os.urandom(300_000), os.urandom(5)]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for data in bodies:  # one after another
            sock.sendall(_request(data, x_buffer=MB))
            assert _answers(sock, 1) == [_expected(data, "into" if data else "receive")]
        sock.sendall(b"".join(_request(data, x_buffer=MB) for data in bodies))  # all at once
        assert _answers(sock, len(bodies)) == [
            _expected(data, "into" if data else "receive") for data in bodies
        ]


def test_an_early_answer_drops_the_rest_of_the_body_and_the_connection_goes_on(
    served: tuple[int, IntoApp],
) -> None:
    port, _ = served
    data, after = os.urandom(3 * MB), os.urandom(1000)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request(data, x_buffer=MB, x_read_only=MB))
        assert _answers(sock, 1) == [_expected(data[:MB])]
        sock.sendall(_request(after))
        assert _answers(sock, 1) == [_expected(after)]


def test_a_read_given_up_drops_the_rest_of_the_body_and_the_connection_goes_on(
    served: tuple[int, IntoApp],
) -> None:
    """The app stops waiting (its idle timeout) in the middle of a buffer; what the client
    sends later is not written into that buffer, and the next request parses."""
    port, _ = served
    data, after = os.urandom(2 * MB), os.urandom(1000)
    request = _request(data, x_buffer=4 * MB, x_timeout=0.3)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request[: len(request) - MB])
        answer = _answers(sock, 1)[0]
        assert answer.startswith(b"timeout ")
        sock.sendall(request[len(request) - MB :])
        sock.sendall(_request(after))
        assert _answers(sock, 1) == [_expected(after)]


def test_expect_100_continue_is_answered_before_the_body(served: tuple[int, IntoApp]) -> None:
    port, _ = served
    data = os.urandom(MB)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = _request(b"", expect="100-continue").replace(
            b"content-length: 0", b"content-length: %d" % len(data)
        )
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(data)
        assert _answers(sock, 1) == [_expected(data)]


def test_a_chunked_body_comes_through_receive(served: tuple[int, IntoApp]) -> None:
    port, _ = served
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"PUT /x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        assert _answers(sock, 1) == [_expected(b"hello world", "receive")]


def test_a_client_leaving_mid_body_is_told_to_the_app(served: tuple[int, IntoApp]) -> None:
    port, app = served
    data = os.urandom(2 * MB)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request(data, x_buffer=MB)[: MB + MB // 2])
        time.sleep(0.2)
    assert app.disconnected.wait(5)
    with socket.create_connection(("127.0.0.1", port)) as sock:  # the server serves on
        sock.sendall(_request(b"x" * 10))
        assert _answers(sock, 1) == [_expected(b"x" * 10)]


def test_a_slow_app_holds_the_client_back(served: tuple[int, IntoApp]) -> None:
    """Nothing is read while no buffer waits: the client's sends block on TCP's window
    instead of the server buffering the body."""
    port, _ = served
    data = os.urandom(MB) * 96
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        request = _request(data, x_buffer=MB, x_pause_after=MB)
        sent, deadline = 0, time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                sent += sock.send(request[sent : sent + MB])
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < 48 * MB  # held back while the app pauses
        sock.setblocking(True)
        sock.sendall(request[sent:])
        assert _answers(sock, 1) == [_expected(data)]
