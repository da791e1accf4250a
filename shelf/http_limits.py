"""HTTP/1.1 connection limits uvicorn does not enforce itself: the size and number of request
headers and the time a client may take to send them.

uvicorn's httptools protocol hands every byte to the parser, which gathers a header of any size
in memory before calling back: one 64 MB header occupied the event loop (shared by the API and
the gateway in ``shelf server``) for two seconds, and a client that never finishes its headers
held its connection open forever (slowloris). This protocol feeds the parser at most
``max_header_bytes`` of request head, answers 431 beyond that or beyond ``max_headers``
headers, and 408 when the head is not complete within ``header_timeout_s``. Idle keep-alive
connections and the connection cap stay with uvicorn (``timeout_keep_alive``,
``limit_concurrency``); body limits are the app's (``registry.api.limits``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class HeaderLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0


class _TooManyHeaders(Exception):
    pass


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: HeaderLimits  # set on the subclass ``protocol_with`` makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._head_timed_out
            )

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "request headers not received in time")

    def data_received(self, data: bytes) -> None:
        try:
            if not self._in_head:
                self._feed(data)
                return
            room = self.limits.max_header_bytes - self._head_bytes
            head, rest = data[:room], data[room:]
            self._head_bytes += len(head)
            self._feed(head)
            if self.transport.is_closing() or not rest:
                return
            if self._in_head:
                self._refuse(431, f"request head exceeds {self.limits.max_header_bytes} bytes")
            else:
                self._feed(rest)
        except _TooManyHeaders:
            self._refuse(431, f"more than {self.limits.max_headers} request headers")

    def _feed(self, data: bytes) -> None:
        """``HttpToolsProtocol.data_received``, except that a refusal raised by a parser
        callback comes through as itself instead of as a 400."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                raise _TooManyHeaders from None
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _TooManyHeaders  # stops the parser; surfaces as a parser error in _feed
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """uvicorn's ``on_body``, without copying a body piece that arrives while the previous
        one has been taken already (nearly always, for an upload). uvicorn appends each piece
        to a ``bytearray`` and ``receive()`` copies that into ``bytes`` again: two copies of
        every uploaded byte, and two fresh buffers for every message. Kept as the ``bytes``
        the parser made, the piece is handed on as it is (``bytes()`` of ``bytes`` is the
        object itself); a piece arriving on top of one not yet taken is appended as before."""
        cycle = self.cycle
        if cycle.body or type(body) is not bytes or cycle.response_complete:
            super().on_body(body)
            return
        if self.parser.should_upgrade() and self._should_upgrade():
            return
        cycle.body = body  # type: ignore[assignment]  # receive() takes bytes(cycle.body)
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


def protocol_with(limits: HeaderLimits, *mixins: type) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)``, which instantiates it per connection;
    ``mixins`` are other subclasses of uvicorn's httptools protocol, cooperating through
    ``super()``, that it should be as well. They come first, so they see every parser
    callback (``on_body`` here does not always call on)."""
    return type(
        "HttpToolsProtocolWithLimits", (*mixins, LimitedHttpToolsProtocol), {"limits": limits}
    )
