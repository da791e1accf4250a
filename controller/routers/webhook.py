"""A router for any data plane: the desired weights POSTed as signed JSON to a URL, which
answers 2xx once the data plane applies them (see examples/nginx_router.py for nginx)."""

from __future__ import annotations

import httpx
import orjson

from controller.routers.base import Acknowledgement, DesiredWeights, RouterError
from controller.webhooks.outbox import SIGNATURE_HEADER, check_resolved, sign
from registry.outbound import OutboundPolicy

EVENT = "router.weights"


class WebhookRouter:
    kind = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        client: httpx.Client,
        timeout_s: float,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.client = client
        self.timeout_s = timeout_s
        self.outbound = outbound

    def apply(self, desired: DesiredWeights) -> Acknowledgement:
        body = orjson.dumps(desired.to_json())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            "X-Shelf-Event": EVENT,
        }
        try:
            if self.outbound is not None:
                check_resolved(self.url, self.outbound)  # where the name points now
            response = self.client.post(
                self.url, content=body, headers=headers, timeout=self.timeout_s
            )
        except Exception as exc:  # whatever fails, the data plane did not confirm
            raise RouterError(f"{exc.__class__.__name__}: {exc}"[:500]) from None
        if not response.is_success:
            raise RouterError(f"HTTP {response.status_code}: {response.text[:300]}")
        return Acknowledgement(desired.revision, desired.challenger_weight_bp)
