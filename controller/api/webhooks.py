"""Webhook endpoints: announce rollout transitions to other systems."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends
from sqlalchemy import select

from controller.api.schemas import WebhookCreate, WebhookOut
from controller.models import Webhook
from registry.api.deps import AppContext, context, requires
from registry.auth import Principal
from registry.config import Role
from registry.db.models import Model
from registry.errors import NotFound
from registry.services import audit
from registry.services.models import get_model

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", response_model=WebhookOut, status_code=201)
def create(
    body: WebhookCreate,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.admin)),
) -> WebhookOut:
    """The response is the only time the signing secret is shown."""
    with ctx.database.session() as session:
        model = get_model(session, body.model) if body.model else None
        hook = Webhook(
            model_id=model.id if model else None,
            url=body.url,
            secret=body.secret or secrets.token_urlsafe(32),
            created_by=who.name,
        )
        session.add(hook)
        session.flush()
        audit.record(session, "webhook.created", who.name, model, webhook_id=hook.id, url=hook.url)
        return WebhookOut.of(hook, body.model, reveal=True)


@router.get("", response_model=list[WebhookOut])
def list_hooks(
    ctx: AppContext = Depends(context), _: Principal = Depends(requires(Role.admin))
) -> list[WebhookOut]:
    with ctx.database.session() as session:
        names = dict(session.execute(select(Model.id, Model.name)).tuples().all())
        return [
            WebhookOut.of(h, names.get(h.model_id) if h.model_id else None)
            for h in session.scalars(select(Webhook).order_by(Webhook.id))
        ]


@router.delete("/{webhook_id}", status_code=204)
def delete(
    webhook_id: int,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.admin)),
) -> None:
    with ctx.database.session() as session:
        hook = session.get(Webhook, webhook_id)
        if hook is None:
            raise NotFound(f"webhook {webhook_id} not found")
        session.delete(hook)
        audit.record(session, "webhook.deleted", who.name, None, webhook_id=webhook_id)
