"""The one place that turns a rollout's router spec into a router."""

from __future__ import annotations

from typing import Any

import httpx

from controller.routers.base import Router, RouterSpec
from controller.routers.gateway import GatewayRouter
from controller.routers.webhook import WebhookRouter
from registry.outbound import OutboundPolicy


def router_for(
    spec: dict[str, Any] | None, client: httpx.Client, outbound: OutboundPolicy | None = None
) -> Router:
    parsed = RouterSpec.model_validate(spec or {})
    if parsed.kind == "webhook":
        assert parsed.url is not None and parsed.secret is not None  # checked at start
        return WebhookRouter(parsed.url, parsed.secret, client, parsed.timeout_s, outbound)
    return GatewayRouter()
