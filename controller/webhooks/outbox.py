"""The webhook outbox: deliveries are queued in the transaction of the change they announce
(so no announcement is lost to a crash, and none is sent for a change that rolled back), then
sent by the reconciler as JSON, HMAC-SHA256 signed, retried with backoff.

Each delivery's outcome is its own: whatever one raises (an unreachable host, a URL the sender
cannot use, a host the outbound policy refuses) marks that delivery failed and due again later,
and never escapes to roll back the batch, which would forget the deliveries that did succeed
and send them again. Receivers still see at-least-once delivery (a crash after sending and
before the commit resends), so each carries ``X-Shelf-Delivery`` to deduplicate on."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from controller.tables import Webhook, WebhookDelivery
from registry.db.base import utcnow
from registry.outbound import OutboundDenied, OutboundPolicy

log = logging.getLogger("shelf.webhooks")

MAX_ATTEMPTS = 8
SIGNATURE_HEADER = "X-Shelf-Signature"


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, body), as GitHub-style receivers expect."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def queue(session: Session, model_id: int | None, event: str, payload: dict[str, Any]) -> int:
    """Adds a delivery for every webhook of the model and every model-wide one; returns how
    many. Sent only once the caller's transaction commits."""
    hooks = session.scalars(
        select(Webhook).where(or_(Webhook.model_id == model_id, Webhook.model_id.is_(None)))
    )
    count = 0
    for hook in hooks:
        session.add(WebhookDelivery(webhook_id=hook.id, event=event, payload=payload))
        count += 1
    return count


def backoff_s(attempts: int) -> float:
    return float(min(2**attempts, 300))


def check_resolved(url: str, outbound: OutboundPolicy) -> None:
    """OutboundDenied unless every address the URL's host resolves to is allowed: a name that
    was fine when the hook was registered may point at a metadata address today. (httpx resolves
    again when it connects; a name that changes between the two lookups is the residual risk,
    which an allow list of hosts closes.)"""
    parts = httpx.URL(url)
    host = parts.host
    if not outbound.allowed_host(host):
        raise OutboundDenied(f"the outbound policy does not allow {host!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for *_, sockaddr in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
        address = str(sockaddr[0])
        if not outbound.allowed_address(address):
            raise OutboundDenied(f"{host!r} resolves to {address}, which the policy does not allow")


def deliver_due(
    session: Session,
    client: httpx.Client,
    limit: int = 50,
    outbound: OutboundPolicy | None = None,
) -> int:
    """Try every delivery that is due; returns how many succeeded. With ``outbound``, a
    delivery to a host the policy refuses (at the time of sending) fails like any other."""
    now = utcnow()
    due = session.execute(
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.failed.is_(False),
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.id)
        .limit(limit)
    ).all()
    sent = 0
    for delivery, hook in due:
        body = orjson.dumps(delivery.payload)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            "X-Shelf-Event": delivery.event,
            "X-Shelf-Delivery": str(delivery.id),
        }
        delivery.attempts += 1
        try:
            if outbound is not None:
                check_resolved(hook.url, outbound)
            response = client.post(hook.url, content=body, headers=headers)
            ok = response.is_success
            error = "" if ok else f"HTTP {response.status_code}"
        except Exception as exc:  # any failure is this delivery's alone
            ok, error = False, f"{exc.__class__.__name__}: {exc}"[:500]
        if ok:
            delivery.delivered_at = utcnow()
            sent += 1
        else:
            delivery.last_error = error
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.failed = True
                log.warning(
                    "webhook %s to %s failed for good: %s",
                    delivery.id,
                    redacted(hook.url),
                    error,
                )
            else:
                delivery.next_attempt_at = utcnow() + timedelta(
                    seconds=backoff_s(delivery.attempts)
                )
    return sent


def redacted(url: str) -> str:
    """A URL fit for logs: the part before its path (user info dropped)."""
    try:
        parts = httpx.URL(url)
    except Exception:  # a URL that does not parse
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.host}"
