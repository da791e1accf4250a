"""What admins do to webhooks: register one (for a model or every model), list, delete.
Each change is an audit event."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.tables import Webhook
from registry.db.tables import Model
from registry.errors import NotFound
from registry.services import audit
from registry.services.lookup import get_model


@dataclass(frozen=True)
class RegisteredWebhook:
    """A webhook row with the name of its model (``None``: every model)."""

    hook: Webhook
    model: str | None


def create(
    session: Session, url: str, model: str | None, secret: str | None, actor: str
) -> RegisteredWebhook:
    """Registers ``url``; without ``secret`` a signing secret is generated."""
    target = get_model(session, model) if model else None
    hook = Webhook(
        model_id=target.id if target else None,
        url=url,
        secret=secret or secrets.token_urlsafe(32),
        created_by=actor,
    )
    session.add(hook)
    session.flush()
    audit.record(session, "webhook.created", actor, target, webhook_id=hook.id, url=hook.url)
    return RegisteredWebhook(hook, model)


def list_all(session: Session) -> list[RegisteredWebhook]:
    names = dict(session.execute(select(Model.id, Model.name)).tuples().all())
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
