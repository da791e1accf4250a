"""The gateway's server protocol sends a response's head and body in one write, and still
sends what is not followed by a completed response (``100 Continue``) without waiting."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from controller.gateway.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport
from tests.controller.gateway.harness import ServerThread


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_writes_of_one_loop_turn_go_out_as_one() -> None:
    async def scenario() -> list[bytes]:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"ok")
        assert inner.writes == []
        await asyncio.sleep(0)  # the next loop iteration flushes
        transport.write(b"late")
        transport.close()  # closing flushes first
        assert inner.closed
        return inner.writes

    assert asyncio.run(scenario()) == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"late",
    ]


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_server_answers_keep_alive_requests_and_expect_continue() -> None:
    server = ServerThread(echo, http=CoalescingHttpToolsProtocol).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            for payload in (b"first", b"second"):
                sock.sendall(
                    b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                answer = _read_until(sock, payload)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
                assert answer.endswith(b"\r\n\r\n" + payload)
            sock.sendall(
                b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
            )
            # The interim answer must arrive although no response completes behind it.
            assert _read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"body")
            assert _read_until(sock, b"body").endswith(b"\r\n\r\nbody")
    finally:
        server.stop()
