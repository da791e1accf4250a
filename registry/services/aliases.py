"""Aliases: movable names (``champion``…) for versions; every move is an audit event."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.base import utcnow
from registry.db.tables import Alias, AuditEvent, Model, ModelVersion
from registry.errors import InvalidInput, NotFound
from registry.names import Reference, check_alias
from registry.services import audit
from registry.services.lookup import get_model
from registry.services.versions import resolve


def set_alias(
    session: Session, name: str, alias: str, version_number: int, actor: str, reason: str = ""
) -> Alias:
    check_alias(alias)
    target = resolve(session, Reference(name, version=version_number))
    if target.status != "ready":
        raise InvalidInput(f"version {version_number} of {name!r} is {target.status}, not ready")
    model = target.model
    current = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
    previous = current.version.version if current is not None else None
    if current is None:
        current = Alias(model_id=model.id, name=alias, version_id=target.id, updated_by=actor)
        session.add(current)
    else:
        current.version_id = target.id
        current.updated_by = actor
        current.updated_at = utcnow()
    session.flush()
    current.version = target
    if previous != version_number:
        audit.record(
            session,
            "alias.set",
            actor,
            model,
            alias=alias,
            version=version_number,
            previous_version=previous,
            reason=reason,
        )
    return current


def delete_alias(session: Session, name: str, alias: str, actor: str) -> None:
    model = get_model(session, name)
    current = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
    if current is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    previous = current.version.version
    session.delete(current)
    session.flush()
    audit.record(session, "alias.deleted", actor, model, alias=alias, previous_version=previous)


def list_aliases(session: Session, model: Model) -> list[Alias]:
    return list(
        session.scalars(select(Alias).where(Alias.model_id == model.id).order_by(Alias.name))
    )


def previous_target(session: Session, model: Model, alias: str) -> ModelVersion | None:
    """The version the alias pointed at before its current target (for one-command rollback),
    skipping versions that are no longer ready."""
    current = session.scalar(select(Alias).where(Alias.model_id == model.id, Alias.name == alias))
    current_number = current.version.version if current is not None else None
    moves = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.model_id == model.id, AuditEvent.kind == "alias.set")
        .order_by(AuditEvent.id.desc())
    )
    for event in moves:
        if event.payload.get("alias") != alias:
            continue
        for number in (event.payload.get("previous_version"), event.payload.get("version")):
            if number is None or number == current_number:
                continue
            candidate = session.scalar(
                select(ModelVersion).where(
                    ModelVersion.model_id == model.id, ModelVersion.version == number
                )
            )
            if candidate is not None and candidate.status == "ready":
                return candidate
    return None
