"""Webhook endpoints: announce rollout transitions to other systems."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from controller.api.schemas import WebhookCreate, WebhookOut
from controller.webhooks import service
from registry.api.deps import AppContext, context, requires
from registry.api.params import RowId
from registry.auth import Principal
from registry.config import Role

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def webhook_out(registered: service.RegisteredWebhook, reveal: bool = False) -> WebhookOut:
    hook = registered.hook
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        model=registered.model,
        created_at=hook.created_at,
        created_by=hook.created_by,
        secret=hook.secret if reveal else None,
    )


@router.post("", response_model=WebhookOut, status_code=201)
def create(
    body: WebhookCreate,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.admin)),
) -> WebhookOut:
    """The response is the only time the signing secret is shown."""
    with ctx.database.session() as session:
        created = service.create(
            session, body.url, body.model, body.secret, who.name, ctx.settings.outbound_policy()
        )
        return webhook_out(created, reveal=True)


@router.get("", response_model=list[WebhookOut])
def list_hooks(
    ctx: AppContext = Depends(context), _: Principal = Depends(requires(Role.admin))
) -> list[WebhookOut]:
    with ctx.database.session() as session:
        return [webhook_out(registered) for registered in service.list_all(session)]


@router.delete("/{webhook_id}", status_code=204)
def delete(
    webhook_id: RowId,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.admin)),
) -> None:
    with ctx.database.session() as session:
        service.delete(session, webhook_id, who.name)
