"""Writes held until the event loop has run the callbacks of its current iteration, then made in
one burst.

Why: on loopback, a write to a peer asleep in ``epoll_wait`` wakes it on the spot, and on a
virtual machine that wake-up (an inter-processor interrupt) is the costliest part of the system
call. Profiled under wrk at concurrency 16 (``perf``), waking readers was a tenth of the
gateway's CPU, and its system time per request twice nginx's. A write made while the gateway
reads the rest of the iteration's requests and answers wakes the model server or the client
once per request; made together after them, the first write of the burst wakes the peer and the
others find it awake. The gateway's system time per request fell by about a quarter
(docs/gateway.md, "Performance").

Nothing waits longer than the iteration: the flush is the first callback the loop runs next,
before it polls again. Everything a connection writes or closes goes through one outbox, so its
bytes keep their order and a close comes after them.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Outbox:
    """Held writes and closes of one event loop's transports, flushed in order once the loop
    has run its current callbacks."""

    __slots__ = ("_held", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: list[tuple[asyncio.WriteTransport, bytes | None]] = []
        self._scheduled = False

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        """``transport.write(data)`` once the loop's current callbacks have run."""
        self._held.append((transport, data))
        if not self._scheduled:
            self._schedule()

    def close(self, transport: asyncio.WriteTransport) -> None:
        """``transport.close()`` after the writes held for it (which it still sends)."""
        self._held.append((transport, None))
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        """The flush, once per iteration: the first hold of an iteration asks for it."""
        self._scheduled = True
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Make the held writes and closes now; those for a transport already closing are
        dropped, as its peer is gone or going."""
        held, self._held = self._held, []
        self._scheduled = False
        for transport, data in held:
            if transport.is_closing():
                continue
            try:
                if data is None:
                    transport.close()
                else:
                    transport.write(data)
            except Exception:  # one broken transport must not cost the others their writes
                log.exception("gateway write failed")
                transport.abort()

    def __len__(self) -> int:
        return len(self._held)
