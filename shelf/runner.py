"""Serve several ASGI apps from one process and one event loop (the all-in-one `shelf server`),
with background jobs beside them, and stop all of it together on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from shelf.http_limits import HeaderLimits, protocol_with


@dataclass(frozen=True)
class Listener:
    name: str
    app: Any
    host: str
    port: int
    max_connections: int = 1000
    header_limits: HeaderLimits = field(default_factory=HeaderLimits)
    keep_alive_timeout_s: int = 5
    # More of uvicorn's httptools protocol, mixed in under the header limits.
    protocol_mixins: tuple[type, ...] = ()
    sock: socket.socket | None = None  # already bound (a worker's inherited socket)
    # A server of its own instead of uvicorn (the gateway's): built from this listener, driven
    # like ``uvicorn.Server`` (``serve(sockets)``, ``started``, ``should_exit``), no signals.
    server: Callable[[Listener], Any] | None = None


class _SharedSignalServer(uvicorn.Server):
    """Leaves signal handling to the runner, which stops every server at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _config(listener: Listener) -> uvicorn.Config:
    return uvicorn.Config(
        listener.app,
        host=listener.host,
        port=listener.port,
        loop="uvloop",
        http=protocol_with(listener.header_limits, *listener.protocol_mixins),
        limit_concurrency=listener.max_connections,
        timeout_keep_alive=listener.keep_alive_timeout_s,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


async def serve(
    listeners: Sequence[Listener],
    jobs: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Runs until a signal arrives; each job gets an event that is set when it should stop."""
    stop = asyncio.Event()
    servers = [
        listener.server(listener) if listener.server else _SharedSignalServer(_config(listener))
        for listener in listeners
    ]

    def request_stop() -> None:
        stop.set()
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop)
    tasks = [
        asyncio.create_task(
            server.serve([listener.sock] if listener.sock else None), name=f"serve-{listener.name}"
        )
        for server, listener in zip(servers, listeners, strict=True)
    ]
    tasks += [asyncio.create_task(job(stop), name="job") for job in jobs or []]

    async def announce() -> None:
        while not all(server.started for server in servers):
            if any(t.done() for t in tasks):
                return
            await asyncio.sleep(0.02)
        if on_started is not None:
            on_started()

    watcher = asyncio.create_task(announce())
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    request_stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    watcher.cancel()
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    failed = [s for s in servers if not s.started]
    if failed and not stop.is_set():
        raise RuntimeError("a listener could not start (is its port in use?)")


def run(
    listeners: Sequence[Listener],
    jobs: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    import uvloop

    uvloop.run(serve(listeners, jobs, on_started))
