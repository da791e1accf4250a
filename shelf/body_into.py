"""Request bodies received straight into the app's own buffers (an ASGI extension).

An upload of a gigabyte arrives as thousands of socket reads. Through uvicorn's httptools
protocol each read is copied from the event loop's read buffer into a new ``bytes``, the parser
copies the body part into another, and each part then travels through the parser's callback,
``receive()`` and the app's middleware as a message of its own: two copies of every byte and a
dozen Python calls per 256 KiB, on the one thread that also receives. ``perf`` put them at a
sixth of the API's CPU during an upload, the largest cost after hashing and the kernel's own.

For a request with a ``Content-Length``, this protocol adds ``scope["extensions"][RECEIVE_INTO]``
(``registry.api.body`` says what the app may do with it): ``await receive_into(buffer)`` fills
``buffer`` with the body and returns how many bytes it holds, fewer than its length only at the
end of the body (0 once the body is over). Bytes the
parser has already passed on come first; for the rest the connection is switched to a
``BufferedProtocol`` that has the kernel read into ``buffer`` directly (uvloop and asyncio both
support it), exactly up to the declared length, and switches back to HTTP parsing when the body
ends, so keep-alive and pipelined requests are unaffected. Reading pauses whenever no buffer is
waiting: a slow app holds the client back through TCP, as with ``receive()``.

An app uses either ``receive()`` or ``receive_into`` for the body, not both. When it answers
before the whole body has arrived, the rest is read and dropped, as uvicorn does, so the
connection can carry the next request; a client that goes away raises ``ClientDisconnect``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from registry.api.body import RECEIVE_INTO

# Body bytes read and dropped at a time after the app has answered early.
_DRAIN_BUFFER = 256 * 1024


class ReceiveIntoProtocol(HttpToolsProtocol):
    """A mixin for ``protocol_with``: offers ``receive_into`` to requests with a length."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body: _DirectBody | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body = None

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return  # an upgrade: no cycle for this request
        length = _declared_length(self.headers)
        if length:
            self._body = _DirectBody(self, cycle, length)
            extensions: dict[str, object] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
            extensions[RECEIVE_INTO] = self._body

    def on_body(self, body: bytes) -> None:
        direct = self._body
        if direct is not None:
            direct.parsed += len(body)
            direct.arrived = self.loop.time()
        super().on_body(body)

    def on_response_complete(self) -> None:
        body = self._body
        if body is not None and body.reader is not None:
            body.reader.drain()
        super().on_response_complete()


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    length = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit() or length is not None:
                return None
            length = int(text)
    return length


class _DirectBody:
    """One request's body: what the parser passed on, then what ``_BodyReader`` reads.
    Called, it is ``registry.api.body.ReceiveInto``."""

    def __init__(self, protocol: ReceiveIntoProtocol, cycle: RequestResponseCycle, length: int):
        self.protocol = protocol
        self.cycle = cycle
        self.length = length
        self.parsed = 0  # body bytes the parser has passed on (into ``cycle.body``)
        self.arrived = protocol.loop.time()  # when the latest part of the body came
        self.reader: _BodyReader | None = None

    async def __call__(self, buffer: bytearray | memoryview) -> int:
        cycle = self.cycle
        view = memoryview(buffer).cast("B")
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        filled = self._take_parsed(view)
        if filled == len(view) or not cycle.more_body:
            return filled
        if cycle.disconnected or cycle.response_complete:
            raise ClientDisconnect()
        if self.reader is None:
            self.reader = _BodyReader(self, self.length - self.parsed)
        return filled + await self.reader.read_into(view[filled:])

    def _take_parsed(self, view: memoryview) -> int:
        pending = self.cycle.body
        if not pending:
            return 0
        taken = min(len(pending), len(view))
        view[:taken] = pending[:taken]
        self.cycle.body = pending[taken:]
        return taken

    def finished(self) -> None:
        """The whole body has been read: back to parsing HTTP, with a parser for the next
        request (the old one still expects the body it never saw)."""
        protocol = self.protocol
        protocol.parser = httptools.HttpRequestParser(protocol)
        protocol.on_message_complete()


class _BodyReader(asyncio.BufferedProtocol):
    """Stands in for the HTTP protocol on the transport while a body is read into buffers."""

    def __init__(self, body: _DirectBody, remaining: int) -> None:
        self._body = body
        self._protocol = body.protocol
        self._transport = body.cycle.transport
        self._remaining = remaining
        self._target: memoryview | None = None
        self._filled = 0
        self._waiter: asyncio.Future[int] | None = None
        self._scratch: bytearray | None = None  # set while dropping the rest of the body
        self._switch_to(self, reading=False)  # ``read_into`` starts reading into its buffer

    def _switch_to(self, protocol: asyncio.BaseProtocol, reading: bool) -> None:
        # uvloop picks its read callbacks when reading starts: stop, swap, start again.
        flow = self._protocol.flow
        flow.pause_reading()
        self._transport.set_protocol(protocol)
        if reading:
            flow.resume_reading()

    async def read_into(self, view: memoryview) -> int:
        loop = asyncio.get_running_loop()
        self._target, self._filled = view, 0
        self._waiter = waiter = loop.create_future()
        self._protocol.flow.resume_reading()
        try:
            return await waiter
        finally:
            if self._target is view:  # cancelled (the idle timeout): keep nothing coming
                self._target, self._waiter = None, None
                if self._remaining:
                    self._protocol.flow.pause_reading()

    def drain(self) -> None:
        """The app has answered: drop the rest of the body, so the next request parses."""
        if not self._remaining:
            return
        self._scratch = bytearray(min(self._remaining, _DRAIN_BUFFER))
        waiter, self._target, self._waiter = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientDisconnect())

    def get_buffer(self, sizehint: int) -> memoryview:
        target = self._target
        if target is None:
            scratch = self._scratch
            assert scratch is not None, "reading resumed with no buffer to read into"
            return memoryview(scratch)[: self._remaining]
        return target[self._filled : self._filled + self._remaining]

    def buffer_updated(self, nbytes: int) -> None:
        self._remaining -= nbytes
        self._body.arrived = self._protocol.loop.time()
        target = self._target
        if target is not None:
            self._filled += nbytes
            if self._filled == len(target) or not self._remaining:
                self._deliver(self._filled)
        if not self._remaining:
            self._switch_to(self._protocol, reading=True)
            self._body.finished()

    def _deliver(self, filled: int) -> None:
        waiter = self._waiter
        self._target, self._waiter = None, None
        if self._remaining:
            self._protocol.flow.pause_reading()
        if waiter is not None and not waiter.done():
            waiter.set_result(filled)

    def eof_received(self) -> None:
        self._protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        waiter, self._target, self._waiter = self._waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ClientDisconnect())
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()
