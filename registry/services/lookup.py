"""Models: the named containers of versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from registry.db.tables import Model
from registry.errors import NotFound
from registry.names import check_model_name
from registry.services import audit


def get_model(session: Session, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == check_model_name(name)))
    if model is None:
        raise NotFound(f"model {name!r} not found", model=name)
    return model


def get_or_create_model(session: Session, name: str, actor: str) -> Model:
    """Concurrent first registrations of one name both succeed: the loser of the insert race
    reads the winner's row (a savepoint keeps the outer transaction usable)."""
    check_model_name(name)
    existing = session.scalar(select(Model).where(Model.name == name))
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            model = Model(name=name, created_by=actor, description="", next_version=1)
            session.add(model)
            session.flush()
    except DBIntegrityError:
        return get_model(session, name)
    audit.record(session, "model.created", actor, model, name=name)
    return model


def list_models(session: Session, limit: int, after_name: str | None = None) -> list[Model]:
    query = select(Model).order_by(Model.name).limit(limit)
    if after_name is not None:
        query = query.where(Model.name > after_name)
    return list(session.scalars(query))
