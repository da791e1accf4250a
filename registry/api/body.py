"""Request bodies read into the app's own buffers, where the server offers it.

The API's server (``shelf/body_into.py``) puts ``RECEIVE_INTO`` in the scope's extensions of a
request with a ``Content-Length``: the kernel then reads the body straight into buffers the
app reuses, instead of into new ``bytes`` per message (two copies of every byte and a dozen
Python calls per message, on the event loop). Any other ASGI server leaves it out and the body
comes through ``receive()`` as usual; both give the same bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from starlette.requests import Request
from starlette.types import Scope

from registry.storage.base import Buffer
from registry.storage.buffers import PartBuffers

RECEIVE_INTO = "shelf.receive_into"
ReadInto = Callable[[bytearray | memoryview], Awaitable[int]]


class ReceiveInto(Protocol):
    """``await receive_into(buffer)`` fills ``buffer`` with the body and returns how many bytes
    it holds: its length, or fewer at the end of the body (0 once it is over)."""

    async def __call__(self, buffer: bytearray | memoryview) -> int: ...

    @property
    def arrived(self) -> float:
        """The event loop's time when the latest part of the body arrived."""
        ...


def receive_into(scope: Scope) -> ReceiveInto | None:
    """The server's ``RECEIVE_INTO``, as the server gave it (before the app wraps it)."""
    extension: ReceiveInto | None = scope.get("extensions", {}).get(RECEIVE_INTO)
    return extension


def read_into(scope: Scope) -> ReadInto | None:
    """``RECEIVE_INTO`` as the route gets it: the server's, or a wrapper of it."""
    extension: ReadInto | None = scope.get("extensions", {}).get(RECEIVE_INTO)
    return extension


def with_receive_into(scope: Scope, read_into: ReadInto) -> Scope:
    """``scope`` with its ``RECEIVE_INTO`` replaced (wrapped in a timeout, say)."""
    return {**scope, "extensions": {**scope["extensions"], RECEIVE_INTO: read_into}}


class RequestBody:
    """One request's body, read in order: ``pieces`` up to a length, then ``rest``. Used as a
    context manager: the buffers it reads into go back to ``buffers`` when it closes (kept
    from one upload to the next, a fresh 4 MiB buffer costs a page fault per page)."""

    def __init__(self, request: Request, buffers: PartBuffers) -> None:
        self._read_into = read_into(request.scope)
        self._stream = request.stream()
        self._pool = buffers
        self._buffers: tuple[bytearray, bytearray] | None = None
        self._left = b""  # what the stream gave beyond ``pieces``' limit

    def __enter__(self) -> RequestBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._buffers is not None:
            for buffer in self._buffers:
                self._pool.give(buffer)
            self._buffers = None

    async def pieces(self, limit: int | None = None) -> AsyncIterator[Buffer]:
        """The body (its first ``limit`` bytes) in pieces. Offered ``RECEIVE_INTO``, each
        piece is one of two buffers of the pool's size, filled in turn: every piece but the
        last fills its buffer, and stays valid until the one after the next is asked for, so
        the caller can work on one while the next fills. Otherwise, the messages as
        received."""
        if self._read_into is None:
            async for piece in self._limited(limit):
                yield piece
            return
        if self._buffers is None:
            self._buffers = (self._pool.take(), self._pool.take())
        buffers = self._buffers
        turn, left = 0, limit
        while left is None or left > 0:
            buffer = memoryview(buffers[turn])
            if left is not None and left < len(buffer):
                buffer = buffer[:left]
            turn ^= 1
            filled = await self._read_into(buffer)
            if filled:
                yield buffer[:filled]
            if filled < len(buffer):
                return
            if left is not None:
                left -= filled

    async def rest(self, most: int) -> bytes:
        """What follows ``pieces``, up to ``most`` bytes (more are not read)."""
        if self._read_into is not None:
            tail = bytearray(most)
            return bytes(tail[: await self._read_into(tail)])
        rest = bytearray(self._left)
        async for chunk in self._stream:
            if len(rest) >= most:
                break
            rest += chunk
        return bytes(rest[:most])

    async def _limited(self, limit: int | None) -> AsyncIterator[bytes]:
        left = limit
        async for chunk in self._stream:
            if left is not None and len(chunk) >= left:
                if left:
                    yield chunk[:left]
                self._left = chunk[left:]
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
