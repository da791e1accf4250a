"""How a rollout's state changes: ``transition`` updates the row, writes the audit event
carrying the evidence, queues the webhooks and tells the gateways, all in the caller's
transaction so that either all of it happens or none.

Only :mod:`controller.rollouts.service` calls it: the service is the one writer of rollout
state, for the API and the reconciler alike."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from controller.rollouts.arms import challengers_of, store
from controller.stats import Report
from controller.tables import Rollout
from controller.vocabulary import FINAL_STATES, ROUTING_CHANNEL, RolloutState
from controller.webhooks import outbox
from registry.db.base import utcnow
from registry.db.tables import Model, ModelVersion
from registry.services import audit


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
    challengers = []
    for arm in challengers_of(rollout):
        version = session.get(ModelVersion, arm.version_id)
        challengers.append(
            {
                "arm": arm.arm,
                "version": version.version if version else None,
                "weight_bp": arm.weight_bp,
                "status": arm.status,
            }
        )
    return {
        "rollout_id": rollout.id,
        "model": model.name if model else None,
        "champion_version": champion.version if champion else None,
        "challenger_version": challenger.version if challenger else None,
        "challengers": challengers,
        "strategy": rollout.strategy,
        "state": rollout.state,
        "step_index": rollout.step_index,
        "challenger_weight_bp": rollout.challenger_weight_bp,
        "mirror": rollout.mirror,
        "mirror_percent": rollout.mirror_bp / 100,
    }


def transition(
    session: Session,
    rollout: Rollout,
    state: RolloutState,
    actor: str,
    reason: str,
    evidence: Report | None = None,
    event: str | None = None,
    details: dict[str, Any] | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Move ``rollout`` to ``state`` (with column ``changes``) and announce it as ``event``
    (default ``rollout.<state>``), with ``details`` (e.g. every challenger's evidence) in the
    announcement; returns the audit payload."""
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
        rollout.harm_paused_at = None
        arms = [replace(a, weight_bp=0) for a in challengers_of(rollout)]
        store(rollout, arms)
        rollout.challenger_weight_bp = 0
    session.flush()
    payload = {**describe(session, rollout), "from_state": previous, "reason": reason}
    payload.update(details or {})
    if evidence is not None:
        payload["evidence"] = evidence.model_dump(mode="json")
    model = session.get(Model, rollout.model_id)
    event = event or f"rollout.{state.value}"
    audit.record(session, event, actor, model, **payload)
    outbox.queue(
        session,
        rollout.model_id,
        event,
        {"event": event, "actor": actor, "at": now.isoformat(), **payload},
    )
    if model is not None:
        notify_gateways(session, model.name)
    return payload
