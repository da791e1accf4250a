"""The audit trail: one model's events, or every event."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from registry.api.deps import AppContext, caller, context
from registry.api.paging import PAGE_MAX, page_token_value
from registry.api.params import ModelName, PageToken
from registry.api.schemas import (
    EventOut,
    EventPage,
)
from registry.auth import Principal
from registry.db.tables import Model
from registry.services import audit
from registry.services.lookup import get_model

router = APIRouter(prefix="/v1", tags=["events"])


@router.get("/models/{name}/events", response_model=EventPage)
def get_model_events(
    name: ModelName,
    limit: int = Query(100, ge=1, le=PAGE_MAX),
    page_token: PageToken = None,
    kind: list[str] = Query(default=[]),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> EventPage:
    with ctx.database.session() as session:
        model = get_model(session, name)
        rows = audit.list_events(session, model, limit + 1, page_token_value(page_token), kind)
        items = [EventOut.of(r, model.name) for r in rows[:limit]]
    return EventPage(
        items=items, next_page_token=str(rows[limit - 1].id) if len(rows) > limit else None
    )


@router.get("/events", response_model=EventPage)
def get_events(
    limit: int = Query(100, ge=1, le=PAGE_MAX),
    page_token: PageToken = None,
    kind: list[str] = Query(default=[]),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> EventPage:
    with ctx.database.session() as session:
        rows = audit.list_events(session, None, limit + 1, page_token_value(page_token), kind)
        names = dict(session.execute(select(Model.id, Model.name)).all())
        items = [
            EventOut.of(r, names.get(r.model_id) if r.model_id else None) for r in rows[:limit]
        ]
    return EventPage(
        items=items, next_page_token=str(rows[limit - 1].id) if len(rows) > limit else None
    )
