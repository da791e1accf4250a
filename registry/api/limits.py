"""What one request may cost the API, enforced before routing, authentication or parsing.

A body declared too large is refused with 413 before a byte of it is read; a body without a
declared length is counted as it arrives and cut at the cap. Ordinary (JSON) bodies are
buffered up to ``max_body_bytes`` and their nesting depth checked on the raw bytes, so no
parser or serializer ever walks a document deeper than ``max_json_depth``. Uploads stream
through under their own cap (``max_upload_bytes``) and are never buffered. A client that stops
sending in the middle of a body is dropped after ``body_idle_timeout_s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.body import ReadInto, ReceiveInto, receive_into, with_receive_into
from registry.api.errors import error_body
from registry.api.idle_watchdog import IdleWatchdog
from registry.config import Settings
from registry.errors import InvalidInput, PayloadTooLarge, RequestTimeout, ShelfError
from registry.json_depth import exceeds_depth

# Routes whose bodies are blob content, streamed to the artifact store.
_UPLOADS = (("PUT", re.compile(r"^/v1/blobs/[^/]+$")), ("POST", re.compile(r"^/v1/blobs/?$")))


@dataclass(frozen=True)
class BodyLimits:
    max_body_bytes: int
    max_upload_bytes: int
    max_json_depth: int
    idle_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(
            settings.max_body_bytes,
            settings.max_upload_bytes,
            settings.max_json_depth,
            settings.body_idle_timeout_s,
        )


def is_upload(method: str, path: str) -> bool:
    return any(method == m and pattern.match(path) for m, pattern in _UPLOADS)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


class RequestLimits:
    """ASGI middleware applying :class:`BodyLimits` to every HTTP request."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = is_upload(scope["method"], scope["path"])
        cap = self.limits.max_upload_bytes if upload else self.limits.max_body_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            await _refuse(scope, receive, send, _too_large(cap, upload))
            return
        watchdog = IdleWatchdog(self.limits.idle_timeout_s)
        try:
            if upload:
                into = receive_into(scope)
                if into is not None:  # the declared length, checked above, bounds the body
                    scope = with_receive_into(scope, _watched(watchdog, into))
                await self.app(scope, _counted(watchdog, receive, cap), send)
                return
            try:
                body = await _read_body(watchdog, receive, cap)
            except (PayloadTooLarge, RequestTimeout) as exc:
                await _refuse(scope, receive, send, exc)
                return
        finally:
            watchdog.stop()
        if exceeds_depth(body, self.limits.max_json_depth):
            refused = InvalidInput(
                f"the JSON body nests deeper than {self.limits.max_json_depth} levels "
                "(SHELF_MAX_JSON_DEPTH)",
                max_json_depth=self.limits.max_json_depth,
            )
            await _refuse(scope, receive, send, refused)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(watchdog: IdleWatchdog, receive: Receive, cap: int) -> bytes:
    body = bytearray()
    while True:
        message = await watchdog.receive(receive)
        if message["type"] != "http.request":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > cap:
            raise _too_large(cap, upload=False)
        if not message.get("more_body", False):
            return bytes(body)


def _counted(watchdog: IdleWatchdog, receive: Receive, cap: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await watchdog.receive(receive)
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap:
                raise _too_large(cap, upload=True)
        return message

    return counted


def _watched(watchdog: IdleWatchdog, into: ReceiveInto) -> ReadInto:
    def arrived() -> float:
        return into.arrived

    async def watched(buffer: bytearray | memoryview) -> int:
        return await watchdog.wait(into(buffer), arrived=arrived)

    return watched


def _too_large(cap: int, upload: bool) -> PayloadTooLarge:
    what = "upload" if upload else "request body"
    setting = "SHELF_MAX_UPLOAD_BYTES" if upload else "SHELF_MAX_BODY_BYTES"
    return PayloadTooLarge(f"the {what} exceeds {cap} bytes ({setting})", limit=cap)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body once, then whatever the server says next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: ShelfError) -> None:
    """Answer with the error body and close: the rest of the request is never read."""
    response = JSONResponse(
        error_body(exc.code, exc.message, **exc.detail),
        status_code=exc.status_code,
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
