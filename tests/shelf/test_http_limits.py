"""The API's HTTP protocol (shelf/http_limits.py) hands request bodies on intact, whether the
app takes each piece as it comes or lets pieces pile up (``on_body`` without uvicorn's copies)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from shelf.http_limits import HeaderLimits, protocol_with
from tests.shelf.uvicorn_thread import serving

MB = 1024 * 1024


class BodyApp:
    """Hashes each request body; sleeps between reads when asked, so pieces pile up."""

    def __init__(self) -> None:
        self.types: set[type] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        pause = float(dict(scope["headers"]).get(b"x-pause", b"0"))
        digest, size, more = hashlib.sha256(), 0, True
        while more:
            if pause:
                await asyncio.sleep(pause)
            message = await receive()
            body = message.get("body", b"")
            self.types.add(type(body))
            digest.update(body)
            size += len(body)
            more = message.get("more_body", False)
        answer = f"{size} {digest.hexdigest()}".encode()
        headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def served() -> Iterator[tuple[int, BodyApp]]:
    app = BodyApp()
    with serving(app, protocol_with(HeaderLimits())) as port:
        yield port, app


def _put(port: int, data: bytes, pause: float, piece: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"PUT /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-length: %d\r\n"
            b"x-pause: %g\r\n\r\n" % (len(data), pause)
        )
        for start in range(0, len(data), piece):
            sock.sendall(data[start : start + piece])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(("pause", "piece"), [(0.0, MB), (0.02, 100_000), (0.0, 7)])
def test_bodies_arrive_intact_taken_at_once_or_piled_up(
    served: tuple[int, BodyApp], pause: float, piece: int
) -> None:
    port, app = served
    data = os.urandom(4 * MB if piece > 1000 else 50_000)
    expected = f"{len(data)} {hashlib.sha256(data).hexdigest()}".encode()
    assert _put(port, data, pause, piece) == expected
    assert app.types == {bytes}
