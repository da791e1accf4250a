"""An ASGI app served by uvicorn on a loopback port, on a thread of the test process."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def serving(app: Any, http: type, loop: str = "auto") -> Iterator[int]:
    """Serves ``app`` with the protocol class ``http``; yields the port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=http, loop=loop, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
