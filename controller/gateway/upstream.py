"""Calls to model servers: a lean HTTP/1.1 client with a keep-alive pool per origin.

Why not httpx: profiling the gateway under load showed httpcore's pool scanning every
connection on every request (``is_idle`` hundreds of thousands of times per second) and anyio
stream wrappers dominating the hot path, for under 1000 requests/s through the gateway. An
asyncio ``Protocol`` with the ``httptools`` parser (the one uvicorn uses) does the same job
in a few allocations per request. It speaks exactly what the gateway needs: one request at a
time per connection, bodies buffered (bounded by ``max_request_body_mb`` on the way in),
``Content-Length``, chunked and read-until-close responses, http and https.

Response bodies pass through unchanged (still content-encoded, if the server compressed
them); the gateway only looks inside uncompressed JSON. A request that fails on a reused
keep-alive connection before a single response byte arrived (the server closed the idle
connection as we wrote) is retried once on a fresh connection; nothing else is retried here
(the gateway may retry on the champion, see ``GatewayApp``).

The common case, an idle pooled connection, runs through callbacks only (:meth:`Upstream.send`):
the request is written, the parser's completion hands the answer to the caller's callback, and
no task or future is involved; a call that must wait for a connection, or retry on a fresh one,
runs as a coroutine (:meth:`Upstream.call`, also the API of callers that await).

Each new connection resolves the serving URL's host itself and connects only to addresses the
outbound policy allows (``registry.outbound``), to the very address it checked, so a name that
resolves to a metadata address is refused however it was registered.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httptools

from controller.gateway.asgi import RESPONSE_SKIP, Headers
from controller.gateway.outbox import Outbox
from registry.outbound import OutboundPolicy

STATUS_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
DEADLINE_TICK_S = 0.05  # how late at most a timed-out call learns it (less for short timeouts)


class UpstreamResponse:
    """One upstream call's outcome. A plain class rather than a dataclass: the compiled build
    makes it an extension type (``upstream.pxd``), so that the app reads its fields as struct
    members, and builds one per request without the dataclass's generated ``__init__``, which
    stays interpreted Python even there."""

    __slots__ = ("body", "error", "headers", "latency_s", "outcome", "received", "status")

    def __init__(
        self,
        outcome: str,  # "2xx" … "5xx", "timeout" or "connection_error"
        status: int,  # 0 when no response arrived
        headers: Headers,  # names lower-cased; without hop-by-hop, framing, date and server ones
        body: bytes,
        latency_s: float,
        error: str = "",
        received: bool = False,  # some response bytes arrived before the failure
    ) -> None:
        self.outcome = outcome
        self.status = status
        self.headers = headers
        self.body = body
        self.latency_s = latency_s
        self.error = error
        self.received = received

    def __repr__(self) -> str:
        return (
            f"UpstreamResponse({self.outcome!r}, {self.status}, {len(self.body)} bytes, "
            f"{self.latency_s * 1000:.1f} ms{', ' + self.error if self.error else ''})"
        )

    @property
    def failed(self) -> bool:
        return self.status == 0

    @property
    def unanswered(self) -> bool:
        """Refused, unreachable, or dropped before a single response byte: the request may
        be sent elsewhere without the client ever having seen a partial answer."""
        return self.status == 0 and self.outcome == CONNECTION_ERROR and not self.received


def status_class(status: int) -> str:
    index = status // 100
    return STATUS_CLASSES[index] if 0 <= index < len(STATUS_CLASSES) else "5xx"


def content_type(headers: Headers) -> bytes | None:
    """The content type of an uncompressed response (compressed bodies are not inspected)."""
    found: bytes | None = None
    for name, value in headers:
        if name == b"content-type":
            found = value
        elif name == b"content-encoding" and value.lower() != b"identity":
            return None
    return found


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    tls: bool
    host_header: bytes
    base_path: str  # the serving URL's own path, prefixed to every request path
    host_line: bytes = b""  # ``host: …\r\n``, built once

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.netloc.encode()
        path = parts.path.rstrip("/")
        return cls(parts.hostname, port, tls, host, path, b"host: " + host + b"\r\n")


Answered = Callable[["UpstreamResponse"], None]


class _Waiter(Protocol):
    """What a connection completes or fails: an ``asyncio.Future`` (a coroutine awaits it) or
    an :class:`_Exchange` (callbacks carry the answer on)."""

    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class OutboundRefused(ConnectionError):
    """Every address of the upstream's host is one the outbound policy denies."""


class _ConnectionLost(ConnectionError):
    def __init__(self, message: str, received: bool) -> None:
        super().__init__(message)
        self.received = received


class _Connection:
    """One keep-alive connection; the pool hands it to one request at a time. An
    ``asyncio.Protocol`` by its methods rather than by inheritance, so that the compiled build
    can make it an extension type (``upstream.pxd``), which cannot derive from a Python class."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._future: _Waiter | None = None
        self._finished = False  # the answer is complete; its waiter is told once parsing returns
        self._head_only = False
        self.status = 0
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.keep_alive = True
        self._received = False
        self._headers_done = False
        self._has_length = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def pause_writing(self) -> None:
        """Requests are written whole, one per connection at a time: nothing to hold back."""

    def resume_writing(self) -> None:
        pass

    def eof_received(self) -> None:
        """The server closed its side: the transport closes (``connection_lost`` follows)."""

    def data_received(self, data: bytes) -> None:
        # The waiter hears of a complete answer only once the parser has returned: its callback
        # may send the next request on this very connection.
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            error = _ConnectionLost("upstream tried to switch protocols", received=True)
        except httptools.HttpParserError as exc:
            error = _ConnectionLost(f"malformed response: {exc}", received=True)
        else:
            if self._finished:
                self._finished = False
                self._complete()
            return
        self.keep_alive = False
        if self._finished:  # an answer completed before the bad bytes still counts
            self._finished = False
            self._complete()
        self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        future = self._future
        if future is not None and not future.done():
            if self._headers_done and self._parser.get_status_code() and not self._has_length:
                future.set_result(None)  # a body delimited by the connection closing
            else:
                future.set_exception(
                    _ConnectionLost(str(exc or "upstream closed the connection"), self._received)
                )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in RESPONSE_SKIP:  # not passed on: dropped here rather than filtered later
            if name in _FRAMING:
                self._has_length = True
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        if self._head_only:
            self.keep_alive = False
            self._finished = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self._finished = True

    def _complete(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def _fail(self, exc: Exception) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_exception(exc)
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes, head_only: bool, waiter: _Waiter, outbox: Outbox) -> None:
        """Write a request (through ``outbox``, with the iteration's other writes); ``waiter``
        learns when its answer is complete, or that it failed."""
        assert self.transport is not None
        self.status = 0
        self.headers = []
        self.body = []
        self._received = False
        self._finished = False
        self._headers_done = False
        self._has_length = False  # until a content-length or transfer-encoding header
        self._head_only = head_only
        self._future = waiter
        outbox.write(self.transport, payload)

    def response(self, start: float) -> UpstreamResponse:
        """The answer just completed, timed from ``start``."""
        chunks = self.body
        status = self.status
        return UpstreamResponse(
            status_class(status),
            status,
            self.headers,
            chunks[0] if len(chunks) == 1 else b"".join(chunks),
            time.perf_counter() - start,
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Idle connections to one origin (LIFO, so few stay warm) and a cap on open ones."""

    def __init__(
        self,
        origin: Origin,
        limit: int,
        ssl_context: ssl.SSLContext | None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.origin = origin
        self._limit = limit
        self._ssl = ssl_context
        self._outbound = outbound
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()

    def take_idle(self) -> _Connection | None:
        """An idle open connection, without a coroutine (the common case under load)."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                connection.reused = True
                return connection
            self._open -= 1
        return None

    async def acquire(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> _Connection:
        connection = self.take_idle()
        if connection is not None:
            return connection
        if self._open >= self._limit:
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await asyncio.wait_for(waiter, timeout_s)
            except TimeoutError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            if handed is not None:
                handed.reused = True
                return handed
        self._open += 1
        try:
            connection = await asyncio.wait_for(self._connect(loop), timeout_s)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        return connection

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        origin = self.origin
        hosts: list[str] = [origin.host]
        if self._outbound is not None:
            infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
            hosts = [str(info[4][0]) for info in infos]
            hosts = [host for host in dict.fromkeys(hosts) if self._outbound.allowed_address(host)]
            if not hosts:
                raise OutboundRefused(f"the outbound policy allows no address of {origin.host}")
        error: OSError | None = None
        for host in hosts:
            try:
                _, protocol = await loop.create_connection(
                    lambda: cast(asyncio.Protocol, _Connection(loop)),  # one by its methods
                    host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl else None,
                )
                return cast(_Connection, protocol)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def release(self, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive:
            connection.close()
            self._open -= 1
            self._wake_one()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _wake_one(self) -> None:
        """A slot freed up: let a waiter open its own connection."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def _failure(exc: BaseException, start: float) -> UpstreamResponse:
    """The answer for a call that got none: a timeout, or a connection that failed."""
    latency = time.perf_counter() - start
    if isinstance(exc, TimeoutError):
        return UpstreamResponse(TIMEOUT, 0, [], b"", latency, "timeout")
    received = isinstance(exc, _ConnectionLost) and exc.received
    error = f"{type(exc).__name__}: {exc}"
    return UpstreamResponse(CONNECTION_ERROR, 0, [], b"", latency, error, received)


class _Exchange:
    """One call on an idle pooled connection, carried by callbacks: the connection completes or
    fails it, or the deadline sweep times it out, and ``on_done`` gets the answer. What a
    coroutine would do after its ``await``, without a task wake-up (the common case under
    load). A failure on the reused connection before any response byte is retried once on a
    fresh connection, as :meth:`Upstream.call` does, by a coroutine."""

    __slots__ = (
        "_connection",
        "_deadline",
        "_done",
        "_head_only",
        "_on_done",
        "_payload",
        "_pool",
        "_start",
        "_upstream",
    )

    def __init__(
        self,
        upstream: Upstream,
        pool: _Pool,
        connection: _Connection,
        payload: bytes,
        head_only: bool,
        start: float,
        deadline: float,
        on_done: Answered,
    ) -> None:
        self._upstream = upstream
        self._pool = pool
        self._connection = connection
        self._payload = payload
        self._head_only = head_only
        self._start = start
        self._deadline = deadline
        self._on_done = on_done
        self._done = False

    def done(self) -> bool:
        return self._done

    def _settle(self) -> bool:
        """Whether this is the first outcome (later ones are ignored); stops the deadline."""
        if self._done:
            return False
        self._done = True
        self._upstream._deadlines.pop(self, None)
        return True

    def set_result(self, result: None, /) -> None:
        if not self._settle():
            return
        connection = self._connection
        response = connection.response(self._start)
        self._pool.release(connection)
        self._on_done(response)

    def set_exception(self, exception: BaseException, /) -> None:
        if not self._settle():
            return
        upstream = self._upstream
        connection = self._connection
        if isinstance(exception, _ConnectionLost):
            self._pool.release(connection)
            if connection.reused and not exception.received:
                retry = upstream._exchange(
                    self._pool, self._payload, self._head_only, self._start, self._deadline, 1
                )
                upstream._spawn(retry, self._on_done)
                return
        else:
            connection.keep_alive = False
            self._pool.release(connection)
        self._on_done(_failure(exception, self._start))


class Upstream:
    def __init__(
        self, max_connections: int, timeout_s: float, outbound: OutboundPolicy | None = None
    ) -> None:
        self._limit = max_connections
        self._timeout_s = timeout_s
        self._outbound = outbound
        self._pools: dict[str, _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        # Calls waiting for an answer and their deadlines, checked every ``_tick_s`` while any
        # waits: cheaper per call than a timer armed and cancelled around each one.
        self._deadlines: dict[_Waiter, float] = {}
        self._tick_s = min(DEADLINE_TICK_S, timeout_s / 4)
        self._sweeper: asyncio.TimerHandle | None = None
        # The loop of the first call, kept: ``asyncio.get_running_loop()`` costs a getpid()
        # system call per call on Python 3.11 (its check for a fork).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[UpstreamResponse]] = set()  # calls run as coroutines
        self._outbox: Outbox | None = None  # with the loop

    def _pool(self, base_url: str) -> _Pool:
        pool = self._pools.get(base_url)
        if pool is None:
            origin = Origin.parse(base_url)
            if origin.tls and self._ssl is None:
                self._ssl = ssl.create_default_context()
            pool = self._pools[base_url] = _Pool(
                origin, self._limit, self._ssl if origin.tls else None, self._outbound
            )
        return pool

    @staticmethod
    def _payload(origin: Origin, method: str, path: str, headers: Headers, body: bytes) -> bytes:
        parts = [f"{method} {origin.base_path}{path} HTTP/1.1\r\n".encode(), origin.host_line]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if body or method not in BODYLESS_METHODS:
            parts.append(b"content-length: %d\r\n" % len(body))
        parts.append(b"\r\n")
        parts.append(body)
        return b"".join(parts)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._outbox = Outbox(loop)
        return loop

    def _writes(self) -> Outbox:
        """The requests' writes, made once per iteration of the running loop (``outbox``)."""
        self._running_loop()
        assert self._outbox is not None
        return self._outbox

    def send(
        self,
        method: str,
        base_url: str,
        path: str,
        headers: Headers,
        body: bytes,
        on_done: Answered,
    ) -> None:
        """``method`` ``base_url + path``; ``on_done`` gets the answer (or the failure) exactly
        once, from a callback of the event loop, or before this returns for a request that
        cannot be sent at all. On an idle pooled connection no task or future is involved;
        otherwise the call runs as a coroutine. On the event loop only."""
        start = time.perf_counter()
        try:
            pool = self._pools.get(base_url) or self._pool(base_url)
            payload = self._payload(pool.origin, method, path, headers, body)
        except ValueError as exc:
            on_done(_failure(exc, start))
            return
        head_only = method == "HEAD"
        deadline = start + self._timeout_s
        connection = pool.take_idle()
        if connection is None:
            self._spawn(self._exchange(pool, payload, head_only, start, deadline, 0), on_done)
            return
        exchange = _Exchange(self, pool, connection, payload, head_only, start, deadline, on_done)
        self._deadlines[exchange] = deadline
        if self._sweeper is None:
            loop = self._running_loop()
            self._sweeper = loop.call_later(self._tick_s, self._sweep, loop)
        connection.send(payload, head_only, exchange, self._outbox or self._writes())

    def _spawn(self, call: Coroutine[Any, Any, UpstreamResponse], on_done: Answered) -> None:
        """Run ``call`` as a task; ``on_done`` gets its answer (a connection error if the task
        is cancelled, as at shutdown)."""
        task = self._running_loop().create_task(call)
        self._tasks.add(task)

        def finished(task: asyncio.Task[UpstreamResponse]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                on_done(UpstreamResponse(CONNECTION_ERROR, 0, [], b"", 0.0, "cancelled"))
            else:
                on_done(task.result())

        task.add_done_callback(finished)

    async def call(
        self, method: str, base_url: str, path: str, headers: Headers, body: bytes
    ) -> UpstreamResponse:
        """``method`` ``base_url + path``; never raises for upstream failures."""
        start = time.perf_counter()
        try:
            pool = self._pools.get(base_url) or self._pool(base_url)
            payload = self._payload(pool.origin, method, path, headers, body)
        except ValueError as exc:
            return _failure(exc, start)
        deadline = start + self._timeout_s
        return await self._exchange(pool, payload, method == "HEAD", start, deadline, 0)

    async def _exchange(
        self,
        pool: _Pool,
        payload: bytes,
        head_only: bool,
        start: float,
        deadline: float,
        first_attempt: int,
    ) -> UpstreamResponse:
        """The call as a coroutine: waits for a connection if none is idle, and sends again
        once on a fresh connection when a reused one failed before any response byte."""
        loop = self._running_loop()
        try:
            for attempt in range(first_attempt, 2):
                connection = pool.take_idle() or await pool.acquire(
                    loop, max(deadline - time.perf_counter(), 0.001)
                )
                future: asyncio.Future[None] = loop.create_future()
                connection.send(payload, head_only, future, self._outbox or self._writes())
                self._deadlines[future] = deadline
                if self._sweeper is None:
                    self._sweeper = loop.call_later(self._tick_s, self._sweep, loop)
                try:
                    await future
                except _ConnectionLost as exc:
                    pool.release(connection)
                    if attempt == 0 and connection.reused and not exc.received:
                        continue
                    raise
                except BaseException:
                    connection.keep_alive = False
                    pool.release(connection)
                    raise
                finally:
                    del self._deadlines[future]
                response = connection.response(start)
                pool.release(connection)
                return response
            raise AssertionError("unreachable")
        except (TimeoutError, OSError, ValueError) as exc:
            return _failure(exc, start)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the calls past their deadline with TimeoutError; look again in a tick while
        any call waits."""
        self._sweeper = None
        now = time.perf_counter()
        deadlines = self._deadlines
        for waiter in [waiter for waiter, deadline in deadlines.items() if deadline <= now]:
            if not waiter.done():
                waiter.set_exception(TimeoutError())
        if deadlines and self._sweeper is None:
            self._sweeper = loop.call_later(self._tick_s, self._sweep, loop)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._loop = None
        self._outbox = None
