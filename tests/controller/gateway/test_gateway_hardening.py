"""Issue 10, findings 7 and 12 at the gateway: paths are forwarded safely, serving URLs are
shown only to callers with a token, and upstream connections obey the outbound policy."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from controller.config import ControllerSettings
from controller.gateway.asgi import Receive, Scope, Send, send_json
from registry.config import TokenSpec
from registry.db.session import Database
from tests.controller.gateway.harness import (
    Gateway,
    ServerThread,
    gateway_settings,
    register,
    running_gateway,
)

pytestmark = pytest.mark.e2e


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """An upstream that answers with the request target it received."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    await send_json(send, 200, {"target": target})


@pytest.fixture
def echo_server() -> Iterator[ServerThread]:
    server = ServerThread(echo).start()
    yield server
    server.stop()


def raw_get(gateway: Gateway, target: str) -> tuple[int, dict[str, Any]]:
    """GET ``target`` byte for byte (httpx would normalise dot segments before sending)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.server.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "target",
    [
        "/gw/../../etc/passwd",
        "/gw/./x",
        "/gw/..",
        "/gw/%2e%2e/%2e%2e/etc/passwd",
        "/gw/.%2E/x",
        "/gw/a/%2e/b",
        "/gw/..%2f..%2fetc",
        "/gw/a%5c..%5cb",
        "/v2/models/gw/../../../admin",
        "/v2/models/gw/%2E%2E/x",
        "/%2e%2e/gw/x",
    ],
)
def test_dot_segments_and_hidden_separators_are_refused(
    backend_settings: ControllerSettings,
    database: Database,
    echo_server: ServerThread,
    target: str,
) -> None:
    register(database, "gw", echo_server.url + "/base")
    with running_gateway(gateway_settings(backend_settings), database) as gateway:
        gateway.wait_for(lambda r: "gw" in r)
        status, body = raw_get(gateway, target)
    assert status == 400, body
    assert body["error"] == "bad_request"


def test_the_upstream_path_is_built_from_the_raw_path(
    backend_settings: ControllerSettings, database: Database, echo_server: ServerThread
) -> None:
    register(database, "gw", echo_server.url + "/base")
    register(database, "a.b", echo_server.url + "/dots")
    expected = {
        "/%67w/x": "/base/x",
        "/gw/x": "/base/x",
        "/gw": "/base/",
        "/gw/a%20b/c%2Fd?q=%2e%2e": None,  # an encoded / inside a segment is refused
        "/gw/a%20b/c?q=1&r=..": "/base/a%20b/c?q=1&r=..",
        "/gw/..hidden/x.": "/base/..hidden/x.",
        "/a.b/v1/x": "/dots/v1/x",
        "/v2/models/gw/infer": "/base/v2/models/gw/infer",
        "/v2/models/%67w/infer": "/base/v2/models/%67w/infer",
    }
    with running_gateway(gateway_settings(backend_settings), database) as gateway:
        gateway.wait_for(lambda r: "gw" in r and "a.b" in r)
        for target, upstream in expected.items():
            status, body = raw_get(gateway, target)
            if upstream is None:
                assert status == 400, (target, body)
            else:
                assert (status, body) == (200, {"target": upstream}), target


READ = TokenSpec(name="reader", role="read", token="reader-token-0123456789")  # type: ignore[arg-type]


def test_routes_show_serving_urls_only_to_callers_with_a_token(
    backend_settings: ControllerSettings, database: Database, echo_server: ServerThread
) -> None:
    register(database, "gw", echo_server.url + "/base")
    settings = gateway_settings(backend_settings, tokens=[READ])
    with running_gateway(settings, database) as gateway:
        gateway.wait_for(lambda r: "gw" in r)
        anonymous = httpx.get(f"{gateway.url}/v1/routes").json()
        assert anonymous["urls_shown"] is False
        assert anonymous["models"]["gw"]["champion"]["url"] is None
        assert anonymous["models"]["gw"]["champion"]["version"] == 1
        assert echo_server.url not in httpx.get(f"{gateway.url}/v1/routes").text
        wrong = httpx.get(f"{gateway.url}/v1/routes", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        shown = httpx.get(
            f"{gateway.url}/v1/routes", headers={"Authorization": f"Bearer {READ.token}"}
        ).json()
        assert shown["models"]["gw"]["champion"]["url"] == echo_server.url + "/base"
        # the data plane itself still needs no token
        assert httpx.get(f"{gateway.url}/gw/x").json() == {"target": "/base/x"}


def test_upstream_connections_obey_the_outbound_policy(
    backend_settings: ControllerSettings, database: Database, echo_server: ServerThread
) -> None:
    """A name that resolves to a denied address is refused when the gateway connects."""
    register(database, "gw", echo_server.url.replace("127.0.0.1", "localhost") + "/base")
    strict = gateway_settings(backend_settings, outbound_deny=["127.0.0.0/8", "::1"])
    with running_gateway(strict, database) as gateway:
        gateway.wait_for(lambda r: "gw" in r)
        refused = httpx.get(f"{gateway.url}/gw/x")
        assert refused.status_code == 502
        assert "outbound policy" in refused.json()["message"]
    with running_gateway(gateway_settings(backend_settings), database) as gateway:
        gateway.wait_for(lambda r: "gw" in r)
        assert httpx.get(f"{gateway.url}/gw/x").json() == {"target": "/base/x"}
