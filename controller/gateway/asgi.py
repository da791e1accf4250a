"""The few raw-ASGI pieces the gateway needs: JSON answers and bounded body reading.

The gateway is a lean ASGI app rather than a framework app: its hot path is one proxy route,
and skipping request/response objects and middleware stacks saves allocations per request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
# A whole answer, (status, headers, body), for whichever server writes it: the gateway's own
# (``controller.gateway.server``) writes it as bytes, the ASGI entry point sends it.
Reply = tuple[int, Headers, bytes]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")

# Hop-by-hop headers (RFC 9110 7.6.1) plus what the gateway sets itself.
REQUEST_SKIP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
RESPONSE_SKIP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"date",
        b"server",
    }
)


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BodyTooLarge as soon as it passes ``limit`` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyTooLarge
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_reply(send: Send, reply: Reply) -> None:
    await send_bytes(send, reply[0], reply[2], reply[1])


def json_reply(status: int, payload: Any, extra: Iterable[tuple[bytes, bytes]] = ()) -> Reply:
    body = orjson.dumps(payload)
    return status, [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), *extra], body


def error_reply(
    status: int, code: str, message: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> Reply:
    return json_reply(status, {"error": code, "message": message}, extra)


async def send_json(
    send: Send, status: int, payload: Any, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_reply(send, json_reply(status, payload, extra))


async def send_error(
    send: Send, status: int, code: str, message: str, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_reply(send, error_reply(status, code, message, extra))
