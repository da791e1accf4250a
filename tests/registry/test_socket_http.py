"""Big bodies straight between files and sockets (``registry.client.socket_http``): which
servers get them, what a server that answers early or stops mid-body does to a transfer, and a
file that shrinks while it is sent. The happy paths run in every end-to-end upload and
download (tests/e2e)."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from registry.client import socket_http
from registry.client.http import Connection
from registry.client.socket_http import FileBody, reachable_directly
from registry.client.transfer import download_version
from registry.config import ClientSettings
from registry.errors import IntegrityError, InvalidInput, NotFound, PayloadTooLarge


def test_plain_http_without_a_proxy_is_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert reachable_directly("http://127.0.0.1:8000")
    assert not reachable_directly("https://shelf.example.com")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert not reachable_directly("http://shelf.internal:8000")
    monkeypatch.setenv("NO_PROXY", "shelf.internal")
    assert reachable_directly("http://shelf.internal:8000")


Handler = Callable[[socket.socket], None]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], str]]:
    """A one-connection HTTP server whose handler writes raw bytes: answers no real server
    gives on purpose, but a crashed or overloaded one can."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(handler: Handler) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                handler(connection)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(timeout=10)


def _read_head(connection: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        head += connection.recv(65536)
    return head


def _json_answer(status: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


def _connection(url: str) -> Connection:
    connection = Connection(ClientSettings(url=url))
    assert connection.socket_transfers
    return connection


def test_an_answer_sent_before_the_body_is_read_is_the_error_raised(
    raw_server: Callable[[Handler], str], tmp_path: Path
) -> None:
    """A server that refuses an upload at once (too big, say) and closes the connection: the
    client hears its answer, not a broken pipe."""
    body = b'{"error": "payload_too_large", "message": "blob is larger than 1 MiB"}'

    def refuse(connection: socket.socket) -> None:
        _read_head(connection)
        connection.sendall(_json_answer(b"413 Payload Too Large", body))
        connection.shutdown(socket.SHUT_RDWR)

    source = tmp_path / "big.bin"
    source.write_bytes(b"\0" * (64 * 1024 * 1024))
    with (
        _connection(raw_server(refuse)) as client,
        pytest.raises(PayloadTooLarge, match="larger than 1 MiB"),
    ):
        client.upload_blob("0" * 64, FileBody(source, source.stat().st_size))


def test_an_error_answer_to_a_download_is_its_error(
    raw_server: Callable[[Handler], str], tmp_path: Path
) -> None:
    body = b'{"error": "not_found", "message": "fraud@3 has no file \'m.bin\'"}'

    def missing(connection: socket.socket) -> None:
        _read_head(connection)
        connection.sendall(_json_answer(b"404 Not Found", body))

    entry = {"path": "m.bin", "size": 10, "digest": "0" * 64}
    with _connection(raw_server(missing)) as client, pytest.raises(NotFound, match="no file"):
        download_version(client, "fraud", 3, [entry], tmp_path / "out", False)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_download_cut_short_leaves_nothing_behind(
    raw_server: Callable[[Handler], str], tmp_path: Path
) -> None:
    size = 10 * 1024 * 1024

    def die_midway(connection: socket.socket) -> None:
        head = _read_head(connection)
        assert b"x-shelf-verify: client" in head.lower()  # the client checks the digest
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        connection.sendall(b"\1" * (size // 3))

    entry = {"path": "m.bin", "size": size, "digest": "0" * 64}
    with (
        _connection(raw_server(die_midway)) as client,
        pytest.raises(IntegrityError, match="cut short"),
    ):
        download_version(client, "fraud", 1, [entry], tmp_path / "out", False)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_file_that_shrinks_while_it_is_sent_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 1000)
    body = FileBody(source, 5000)  # the size it had when it was hashed
    with pytest.raises(InvalidInput, match="shrank"):
        list(body.chunks())
    left, right = socket.socketpair()
    with left, right, pytest.raises(InvalidInput, match="shrank"):
        body.send_to(left.fileno())


def test_a_trailer_follows_the_file_both_ways(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"w" * 3_000_000)
    sent: list[int] = []
    body = FileBody(source, 3_000_000, sent.append, lambda: b"d" * 64, 64)
    assert b"".join(body.chunks()) == b"w" * 3_000_000 + b"d" * 64
    assert _sent_over_a_socket(body) == b"w" * 3_000_000 + b"d" * 64
    assert sum(sent) == 2 * 3_000_000  # both passes reported their progress


def test_where_sendfile_is_refused_the_file_is_read_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems (FUSE, a few network ones) refuse ``sendfile``: the rest of the file
    is then read and written, from wherever ``sendfile`` stopped."""
    calls: list[int] = []
    real_sendfile = os.sendfile

    def refuse_after_one_piece(out: int, fd: int, offset: int, count: int) -> int:
        calls.append(offset)
        if offset:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_sendfile(out, fd, offset, count)

    monkeypatch.setattr(os, "sendfile", refuse_after_one_piece)
    monkeypatch.setattr(socket_http, "PIECE", 1 << 20)
    data = os.urandom(3_000_000)
    source = tmp_path / "weights.bin"
    source.write_bytes(data)
    body = FileBody(source, len(data), trailer=lambda: b"d" * 64, trailer_length=64)
    assert _sent_over_a_socket(body) == data + b"d" * 64
    assert calls == [0, 1 << 20]


def _sent_over_a_socket(body: FileBody) -> bytes:
    """What ``body.send_to`` writes to a connected socket, read on the other end."""
    left, right = socket.socketpair()
    received = bytearray()

    def drain() -> None:
        while len(received) < body.length and (chunk := right.recv(1 << 20)):
            received.extend(chunk)

    with left, right:
        reader = threading.Thread(target=drain)
        reader.start()
        body.send_to(left.fileno())
        reader.join(timeout=30)
    return bytes(received)


def test_without_a_socket_of_its_own_the_body_goes_through_httpx(tmp_path: Path) -> None:
    """Over TLS or through a proxy (here: an injected transport) the same body is sent by
    httpx, file bytes then trailer, with the length declared up front."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(201, json={"digest": "d" * 64, "size": 5, "created": True})

    source = tmp_path / "w.bin"
    source.write_bytes(b"hello")
    connection = Connection(ClientSettings(url="https://shelf.example.com"))
    assert not connection.socket_transfers
    connection.close()
    connection._http = httpx.Client(
        base_url="https://shelf.example.com", transport=httpx.MockTransport(handler)
    )
    answer = connection.upload_blob_digest_last(
        FileBody(source, 5, trailer=lambda: b"d" * 64, trailer_length=64)
    )
    assert answer["created"]
    assert seen[0].content == b"hello" + b"d" * 64
    assert seen[0].headers["content-length"] == "69"
    assert seen[0].headers["x-shelf-size"] == "5"
