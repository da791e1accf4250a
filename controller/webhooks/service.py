"""What admins do to webhooks: register one (for a model or every model), list, delete.
Each change is an audit event.

A webhook URL is often a credential in itself (a chat hook's path, ``user:password@``), and the
audit trail is readable by every token, so ``webhook.created`` records only the URL's scheme
and host (``redacted_url``); the full URL is shown to admins only, by listing webhooks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.tables import Webhook
from registry.db.tables import Model
from registry.errors import InvalidInput, NotFound
from registry.outbound import OutboundPolicy
from registry.services import audit
from registry.services.lookup import get_model


@dataclass(frozen=True)
class RegisteredWebhook:
    """A webhook row with the name of its model (``None``: every model)."""

    hook: Webhook
    model: str | None


def redacted_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no user info, path, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def check_webhook_url(url: str, outbound: OutboundPolicy) -> str:
    """``url`` if the sender can deliver to it: a well-formed http(s) URL without whitespace or
    control characters, that httpx parses, to a host the outbound policy allows."""
    outbound.check_url(url, "webhook URL")
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidInput(f"webhook URL {url!r} is not a valid URL: {exc}") from None
    return url


def create(
    session: Session,
    url: str,
    model: str | None,
    secret: str | None,
    actor: str,
    outbound: OutboundPolicy,
) -> RegisteredWebhook:
    """Registers ``url``; without ``secret`` a signing secret is generated."""
    check_webhook_url(url, outbound)
    target = get_model(session, model) if model else None
    hook = Webhook(
        model_id=target.id if target else None,
        url=url,
        secret=secret or secrets.token_urlsafe(32),
        created_by=actor,
    )
    session.add(hook)
    session.flush()
    audit.record(
        session, "webhook.created", actor, target, webhook_id=hook.id, url=redacted_url(hook.url)
    )
    return RegisteredWebhook(hook, model)


def list_all(session: Session) -> list[RegisteredWebhook]:
    names = dict(session.execute(select(Model.id, Model.name)).all())
    return [
        RegisteredWebhook(hook, names.get(hook.model_id) if hook.model_id else None)
        for hook in session.scalars(select(Webhook).order_by(Webhook.id))
    ]


def delete(session: Session, webhook_id: int, actor: str) -> None:
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} not found")
    session.delete(hook)
    audit.record(session, "webhook.deleted", actor, None, webhook_id=webhook_id)
