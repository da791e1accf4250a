"""The gateway's own HTTP/1.1 server: an ``asyncio.Protocol`` on the ``httptools`` parser that
hands a proxied request straight to :meth:`GatewayApp.answer` and writes the answer it calls
back with as one ``bytes``.

Why not uvicorn: with the gateway's proxy path made lean, profiling it under wrk (py-spy,
concurrency 16) put most of what remained in uvicorn's per-request machinery: an ASGI scope
dict, a request/response cycle object, ``receive``/``send`` coroutines and message dicts, header
re-encoding, and two writes per response. The gateway needs none of it on its hot path: every
request body is read whole anyway (bounded by ``max_request_body_mb``) and every answer is
whole. The gateway's own endpoints (``/healthz``, ``/metrics``, ``/v1/feedback``…) still go
through the ASGI app, over a small adapter here, so they keep one implementation.

The protocol keeps what uvicorn gave the gateway (docs/security.md, "Limits"): keep-alive with
an idle timeout; pipelined requests answered one at a time, in order (reading pauses while
too many wait, and while the client does not read its answers); ``Expect: 100-continue``; the
request head bounded in size (431), header count (431) and time (408); bodies beyond the limit
refused with 413 as soon as their length is known, before they are read; a connection cap
(503 beyond it); malformed requests 400. :class:`GatewayServer` runs the app's startup, serves
until ``should_exit``, then drains: it stops accepting, closes idle connections, lets requests
being answered finish (their connections close after the answer), and runs the app's
shutdown, which waits for in-flight calls and flushes the statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast
from urllib.parse import unquote

import httptools

from controller.gateway.app import GatewayApp
from controller.gateway.asgi import Headers, Message, Reply
from controller.gateway.outbox import Outbox
from controller.gateway.shadow import ShadowCopy

log = logging.getLogger(__name__)

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NOTED = frozenset({b"content-length", b"expect"})  # request headers the server acts on
MAX_PIPELINED = 16  # parsed requests waiting behind the one being answered; reading pauses
DRAIN_S = 10.0  # how long shutdown waits for connections still answering
MAX_TICK_S = 1.0  # the longest the server goes without refreshing its clock, date, deadlines
MIN_TICK_S = 0.01  # however short a timeout: a tick more often would keep the loop busy


@dataclass(frozen=True)
class ServerLimits:
    """The connection limits (docs/security.md, "Limits"); the body limit is the app's
    (``max_request_body_mb``)."""

    max_connections: int = 4096
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0

    @property
    def tick_s(self) -> float:
        """How often the server's clock and the connections' deadlines are checked: a tenth
        of the shortest timeout (between 10 ms and 1 s), so a deadline is kept to within a
        tenth. Each tick wakes an idle gateway: ten a second were much of its CPU (profiled)."""
        shortest = min(self.header_timeout_s, self.keep_alive_timeout_s)
        return max(MIN_TICK_S, min(MAX_TICK_S, shortest / 10))


def plain_reply(status: int, message: str) -> Reply:
    body = message.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    return status, headers, body


class _Request:
    """A parsed request waiting for its answer. A plain class (an extension type compiled,
    ``server.pxd``), as ``UpstreamResponse`` is, for the same reason: one per request."""

    __slots__ = ("body", "headers", "keep_alive", "method", "refusal", "target")

    def __init__(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        body: bytes,
        keep_alive: bool,
        refusal: Reply | None = None,  # answered by the server itself, then the connection closes
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.refusal = refusal


class _TooManyHeaders(Exception):
    pass


class GatewayProtocol:
    """One client connection. An ``asyncio.Protocol`` by its methods rather than by
    inheritance, so that the compiled build can make it an extension type (``server.pxd``),
    which cannot derive from a Python class."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.app = server.app
        self.limits = server.limits
        self.max_body = server.app.max_body
        self.loop = asyncio.get_running_loop()
        outbox = server.outbox
        assert outbox is not None, "the server makes its outbox before it accepts connections"
        self.outbox = outbox  # every write and close of the connection, in order
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        # the request being parsed
        self._target = b""
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._declared = 0  # the content-length header's value
        self._expects = False  # expect: 100-continue
        self._in_head = True
        self._head_bytes = 0
        self._refusing = False  # a refusal is queued: the rest of the input is ignored
        self._wants_continue = False
        # the requests parsed and not answered yet, the first being answered when ``_busy``
        self._pending: deque[_Request] = deque()
        self._busy = False
        self._answering: _Request | None = None  # the request whose answer is awaited
        self._in_next = False  # ``_next`` is running: a nested call leaves the work to it
        self._own: asyncio.Task[None] | None = None  # an own endpoint's answer, through ASGI
        self._on_answer = self._answered
        self._reading_paused = False
        self._writing_paused = False
        self._close_when_done = False
        # Deadlines on the server's clock (0: none), checked by its sweep: cheaper per
        # request than a timer armed and cancelled around every request head.
        self._head_deadline = 0.0
        self._idle_deadline = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        self.server.connections.add(self)
        self._head_deadline = self.server.now + self.limits.header_timeout_s

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self._pending.clear()

    def eof_received(self) -> None:
        """The client closed its side: the transport closes (``connection_lost`` follows)."""

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._next()

    def data_received(self, data: bytes) -> None:
        if self._refusing:
            return
        self._idle_deadline = 0.0
        try:
            if not self._in_head:
                self.parser.feed_data(data)
                return
            room = self.limits.max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                self.parser.feed_data(data)
                return
            self._head_bytes += room
            self.parser.feed_data(data[:room])
            if self._refusing:
                return
            if self._in_head:
                limit = self.limits.max_header_bytes
                self._refuse(plain_reply(431, f"request head exceeds {limit} bytes"))
            else:
                self.parser.feed_data(data[room:])
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                self._refuse(plain_reply(431, f"more than {self.limits.max_headers} headers"))
            else:
                log.exception("gateway request parsing failed")
                self._refuse(plain_reply(400, "Invalid HTTP request received."))
        except httptools.HttpParserUpgrade:
            # The request was parsed; the gateway upgrades to nothing, so it answers it and
            # then closes the connection, whose further bytes belong to another protocol.
            self._refusing = True
            if self._pending:
                self._pending[-1].keep_alive = False
            self._next()
        except httptools.HttpParserError:
            self._refuse(plain_reply(400, "Invalid HTTP request received."))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._target = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._declared = 0
        self._expects = False
        self._in_head = True
        if not self._head_deadline:
            self._head_deadline = self.server.now + self.limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if len(headers) >= self.limits.max_headers:
            raise _TooManyHeaders  # stops the parser; comes back as a callback error
        name = name.lower()
        if name in _NOTED:
            if name == b"content-length":
                self._declared = int(value) if value.isdigit() else 0
            else:
                self._expects = value.lower() == b"100-continue"
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_deadline = 0.0
        if len(self.server.connections) > self.limits.max_connections:
            self._refuse(plain_reply(503, "Service Unavailable"))
        elif self._declared > self.max_body:
            self._refuse(self.app.too_large())  # before a byte of the body is read
        elif self._expects:
            if self._busy or self._pending:
                self._wants_continue = True  # once the answers ahead of it are written
            else:
                assert self.transport is not None
                self.outbox.write(self.transport, CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._refusing:
            return
        self._body_size += len(body)
        if self._body_size > self.max_body:
            self._refuse(self.app.too_large())
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._refusing:
            return
        body = self._body
        self._pending.append(
            _Request(
                self.parser.get_method().decode("ascii"),
                self._target,
                self._headers,
                body[0] if len(body) == 1 else b"".join(body),
                self.parser.should_keep_alive(),
            )
        )
        if self._busy:
            if len(self._pending) > MAX_PIPELINED and not self._reading_paused:
                self._reading_paused = True
                assert self.transport is not None
                self.transport.pause_reading()
        else:
            self._next()

    # -- answering -------------------------------------------------------------------------

    def _next(self) -> None:
        """Answer the requests waiting, in order, one at a time: each is handed to the app with
        a callback (:meth:`_answered`), which writes its answer and comes back here for the
        next. No task per request or per connection: the app answers from its upstream's
        parser callback (a task wake-up per request was measurable, profiled)."""
        if self._busy or self._in_next:
            return  # the answer in progress, or the loop below, takes the next request
        self._in_next = True
        try:
            while not self._busy:
                request = self._take()
                if request is None:
                    return
                self._start(request)  # may be answered at once: then the loop goes on
        finally:
            self._in_next = False

    def _take(self) -> _Request | None:
        """The next request to answer, if one can be answered now (then ``_busy``)."""
        pending = self._pending
        transport = self.transport
        if self._writing_paused or transport is None or transport.is_closing():
            return None
        if not pending:
            if self._close_when_done:
                self.outbox.close(transport)
            elif self._wants_continue:
                self._wants_continue = False
                self.outbox.write(transport, CONTINUE)
            elif self._in_head and self._head_bytes == 0:
                self._idle_deadline = self.server.now + self.limits.keep_alive_timeout_s
            return None
        if self._reading_paused and len(pending) <= MAX_PIPELINED // 2:
            self._reading_paused = False
            transport.resume_reading()
        request = pending[0]
        if request.refusal is not None:
            pending.clear()
            self._write(request.refusal, request.method, False)
            return None
        self._busy = True
        return request

    def _start(self, request: _Request) -> None:
        """Hand ``request`` to the app (a model's path) or to its ASGI entry (its own
        endpoints); :meth:`_answered` gets the answer."""
        self._answering = request
        target = request.target
        if target[:1] != b"/":  # absolute-form, or authority-form (CONNECT) and ``*``
            try:
                url = httptools.parse_url(target)
                path, query = url.path or b"/", url.query or b""
            except httptools.HttpParserInvalidURLError:
                path, query = target, b""  # not a path: the app answers 400
        else:
            path, _, query = target.partition(b"?")
        decoded = path.decode("latin-1")
        if self.app.is_reserved(unquote(decoded) if "%" in decoded else decoded):
            self._own = self.loop.create_task(self._own_endpoint(request, path, query))
            return
        try:
            self.app.answer(
                request.method,
                path,
                query,
                request.headers,
                request.body,
                self.client[0] if self.client else None,
                self._on_answer,
            )
        except Exception:
            log.exception("gateway request failed")
            self._answered(plain_reply(500, "Internal Server Error"), None)

    def _answered(self, reply: Reply, copy: ShadowCopy | None) -> None:
        """The app's answer to the request being answered: written, then the shadow copy is
        handed back to be mirrored, then the next request is taken."""
        request = self._answering
        if request is None:
            return  # answered already
        self._answering = None
        self._finish(request, reply)
        if copy is not None:
            self.app.mirror(copy)
        self._next()

    async def _own_endpoint(self, request: _Request, path: bytes, query: bytes) -> None:
        self._answered(await self._asgi_reply(request, path, query), None)

    async def _asgi_reply(self, request: _Request, path: bytes, query: bytes) -> Reply:
        """One of the gateway's own endpoints, through its ASGI app."""
        started: list[Message] = []
        chunks: list[bytes] = []
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if delivered:
                await asyncio.Future()  # a disconnect is never reported: nobody waits for one
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": self.client,
            "server": self.server.address,
        }
        try:
            await self.app(scope, receive, send)
            if not started:
                raise RuntimeError("the gateway app sent no response")
            body = b"".join(chunks)
            headers = [
                item for item in started[0].get("headers", []) if item[0] != b"content-length"
            ]
            headers.append((b"content-length", b"%d" % len(body)))
            return started[0]["status"], headers, body
        except Exception:
            log.exception("gateway request failed")
            return plain_reply(500, "Internal Server Error")

    def _finish(self, request: _Request, reply: Reply) -> None:
        if self._pending and self._pending[0] is request:
            self._pending.popleft()
        self._busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._write(reply, request.method, request.keep_alive and not self._close_when_done)

    def _write(self, reply: Reply, method: str, keep_alive: bool) -> None:
        """The whole answer in one write; the connection closes after it unless kept alive.
        Both through the outbox: made with the iteration's other writes (``outbox``)."""
        transport = self.transport
        assert transport is not None
        status, headers, body = reply
        parts = [
            STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
            self.server.date_header,
        ]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if method != "HEAD":
            parts.append(body)
        self.outbox.write(transport, b"".join(parts))
        if not keep_alive:
            self.outbox.close(transport)

    def _refuse(self, reply: Reply) -> None:
        """Answer ``reply`` after whatever is being answered, then close: the rest of the input
        cannot be trusted to start a request."""
        self._refusing = True
        self._head_deadline = 0.0
        method = "GET"
        with contextlib.suppress(httptools.HttpParserError):
            method = self.parser.get_method().decode("ascii", "replace")
        self._pending.append(_Request(method, b"", [], b"", False, reply))
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._next()

    # -- timers and shutdown ---------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Enforce the header and keep-alive deadlines (the server's sweep calls this)."""
        if self._head_deadline and now >= self._head_deadline:
            self._head_deadline = 0.0
            if self._in_head and not self._refusing:
                self._refuse(plain_reply(408, "request headers not received in time"))
        elif self._idle_deadline and now >= self._idle_deadline:
            self._idle_deadline = 0.0
            if self.transport is not None and not self._busy and not self._pending:
                self.outbox.close(self.transport)

    def shutdown(self) -> None:
        """Close now if idle, else after the answer being written."""
        self._close_when_done = True
        if self.transport is not None and not self._busy:
            self.outbox.close(self.transport)

    @property
    def answering(self) -> bool:
        return self._busy


def _date_header() -> bytes:
    return b"date: %s\r\n" % email.utils.formatdate(usegmt=True).encode()


class GatewayServer:
    """Serves a :class:`GatewayApp` on ``host:port`` (or on given listening sockets) until
    ``should_exit``; ``started`` once it listens. The interface ``shelf.runner`` drives."""

    def __init__(self, app: GatewayApp, host: str, port: int, limits: ServerLimits) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits
        self.connections: set[GatewayProtocol] = set()
        self.started = False
        self._should_exit = False
        self._exit: asyncio.Event | None = None  # set with should_exit, to wake the serve loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self.date_header = _date_header()
        self.now = time.monotonic()  # the clock of the connections' deadlines, per tick
        self.address: tuple[str, int] | None = None
        self.outbox: Outbox | None = None  # the connections' writes, made once per iteration

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        """Stop serving (from any thread): the serve loop wakes at once, not at its next tick."""
        self._should_exit = value
        if value and self._loop is not None and self._exit is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: serving is over
                self._loop.call_soon_threadsafe(self._exit.set)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.outbox = Outbox(loop)
        self._exit = exit_ = asyncio.Event()
        self._loop = loop
        try:
            await self.app.startup()
        except Exception:
            log.exception("gateway failed to start")
            return

        def protocol() -> asyncio.Protocol:
            return cast(asyncio.Protocol, GatewayProtocol(self))  # one by its methods

        try:
            if sockets:
                server = await loop.create_server(protocol, sock=sockets[0], backlog=2048)
            else:
                server = await loop.create_server(protocol, self.host, self.port, backlog=2048)
        except OSError as exc:
            log.error("gateway cannot listen on %s:%s: %s", self.host, self.port, exc)
            await self.app.shutdown()
            return
        name = server.sockets[0].getsockname()
        self.address = (str(name[0]), int(name[1]))
        self.started = True
        tick_s = self.limits.tick_s
        try:
            while not self._should_exit:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exit_.wait(), tick_s)
                self.date_header = _date_header()
                self.now = now = time.monotonic()
                for connection in list(self.connections):
                    connection.expire(now)
        finally:
            await self._drain(server)

    async def _drain(self, server: asyncio.AbstractServer) -> None:
        server.close()
        for connection in list(self.connections):
            connection.shutdown()
        deadline = time.monotonic() + DRAIN_S
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await self.app.shutdown()
