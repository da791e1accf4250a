"""The audit trail: every change is an event with who, when and what."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.tables import AuditEvent, Model


def record(
    session: Session, kind: str, actor: str, model: Model | None, /, **payload: Any
) -> AuditEvent:
    event = AuditEvent(
        kind=kind, actor=actor, model_id=model.id if model else None, payload=payload
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    model: Model | None,
    limit: int,
    before_id: int | None = None,
    kinds: list[str] | None = None,
) -> list[AuditEvent]:
    """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if model is not None:
        query = query.where(AuditEvent.model_id == model.id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if kinds:
        query = query.where(AuditEvent.kind.in_(kinds))
    return list(session.scalars(query))
