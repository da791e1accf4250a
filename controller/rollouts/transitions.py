"""Every change of a rollout's state goes through ``transition``: it updates the row, writes
the audit event carrying the evidence, queues the webhooks and tells the gateways, all in the
caller's transaction so that either all of it happens or none."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from controller.models import FINAL_STATES, Rollout, Webhook, WebhookDelivery
from registry.db.base import utcnow
from registry.db.models import Model, ModelVersion
from registry.services import audit

ROUTING_CHANNEL = "shelf_routing"


def notify_gateways(session: Session, model_name: str) -> None:
    """PostgreSQL NOTIFY (delivered on commit) so gateways reload at once; polling is the
    guarantee everywhere else."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :model)"),
            {"channel": ROUTING_CHANNEL, "model": model_name},
        )


def describe(session: Session, rollout: Rollout) -> dict[str, Any]:
    """The rollout as announced in audit events and webhooks."""
    model = session.get(Model, rollout.model_id)
    champion = session.get(ModelVersion, rollout.champion_version_id)
    challenger = session.get(ModelVersion, rollout.challenger_version_id)
    return {
        "rollout_id": rollout.id,
        "model": model.name if model else None,
        "champion_version": champion.version if champion else None,
        "challenger_version": challenger.version if challenger else None,
        "strategy": rollout.strategy,
        "state": rollout.state,
        "step_index": rollout.step_index,
        "challenger_weight_bp": rollout.challenger_weight_bp,
        "mirror": rollout.mirror,
    }


def queue_webhooks(session: Session, model_id: int, event: str, payload: dict[str, Any]) -> int:
    hooks = session.scalars(
        select(Webhook).where(or_(Webhook.model_id == model_id, Webhook.model_id.is_(None)))
    )
    count = 0
    for hook in hooks:
        session.add(WebhookDelivery(webhook_id=hook.id, event=event, payload=payload))
        count += 1
    return count


def transition(
    session: Session,
    rollout: Rollout,
    state: str,
    actor: str,
    reason: str,
    evidence: Any = None,
    event: str | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Move ``rollout`` to ``state`` (with column ``changes``) and announce it as ``event``
    (default ``rollout.<state>``); returns the audit payload."""
    previous = rollout.state
    for column, value in changes.items():
        setattr(rollout, column, value)
    rollout.state = state
    rollout.reason = reason
    rollout.revision += 1
    now = utcnow()
    rollout.updated_at = now
    if state in FINAL_STATES:
        rollout.active_model_id = None
        rollout.ended_at = now
        rollout.challenger_weight_bp = 0
        rollout.mirror = False
        rollout.resume_state = None
    session.flush()
    payload = {**describe(session, rollout), "from_state": previous, "reason": reason}
    if evidence is not None:
        payload["evidence"] = evidence
    model = session.get(Model, rollout.model_id)
    event = event or f"rollout.{state}"
    audit.record(session, event, actor, model, **payload)
    queue_webhooks(
        session,
        rollout.model_id,
        event,
        {"event": event, "actor": actor, "at": now.isoformat(), **payload},
    )
    if model is not None:
        notify_gateways(session, model.name)
    return payload
