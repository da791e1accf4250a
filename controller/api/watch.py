"""Champion-watch endpoints: a champion's status and evidence over time, acknowledging its
alarms, its model's watch policy, and every champion's status at a glance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from controller.api.schemas import WatchOut, WatchPoint, WatchPolicyIn, WatchStatusOut
from controller.tables import ChampionWatch
from controller.watch import service
from controller.watch.policy import policy_of, set_policy
from controller.watch.watcher import acknowledge
from registry.api.deps import AppContext, caller, context, requires
from registry.api.params import ModelName
from registry.auth import Principal
from registry.config import Role
from registry.db.base import utcnow
from registry.db.tables import Model, ModelVersion
from registry.services.lookup import get_model

router = APIRouter(prefix="/v1", tags=["champion watch"])


def _watch_out(ctx: AppContext, name: str, limit: int) -> WatchOut:
    with ctx.database.session() as session:
        report = service.report_of(session, name, utcnow())
        points = [
            WatchPoint(block=o.block, at=o.at, status=o.status, summary=o.summary)
            for o in service.history(session, name, limit)
        ]
        return WatchOut(report=report, history=points)


@router.get("/models/{name}/watch", response_model=WatchOut)
def watch(
    name: ModelName,
    history: int = Query(default=0, ge=0, le=10_000, description="Latest judged blocks"),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> WatchOut:
    return _watch_out(ctx, name, history)


@router.post("/models/{name}/watch/ack", response_model=WatchOut)
def ack(
    name: ModelName,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> WatchOut:
    """Clears the champion's alarms and re-arms its detectors (audited)."""
    with ctx.database.session() as session:
        acknowledge(session, get_model(session, name), who.name)
    return _watch_out(ctx, name, 0)


@router.get("/models/{name}/watch/policy")
def policy(
    name: ModelName, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> dict[str, Any]:
    with ctx.database.session() as session:
        return policy_of(session, get_model(session, name)).model_dump()


@router.put("/models/{name}/watch/policy")
def put_policy(
    name: ModelName,
    body: WatchPolicyIn,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> dict[str, Any]:
    with ctx.database.session() as session:
        model = get_model(session, name)
        changes = body.model_dump(exclude_unset=True)
        return set_policy(session, model, changes, who.name).model_dump()


@router.get("/watch", response_model=list[WatchStatusOut])
def statuses(ctx: AppContext = Depends(context), _: Principal = Depends(caller)) -> list[Any]:
    """Every watched champion's status."""
    with ctx.database.session() as session:
        rows = session.execute(
            select(ChampionWatch, Model.name, ModelVersion.version)
            .join(Model, Model.id == ChampionWatch.model_id)
            .join(ModelVersion, ModelVersion.id == ChampionWatch.version_id)
            .order_by(Model.name)
        ).all()
        return [
            WatchStatusOut(
                model=name,
                version=version,
                status=row.status,
                since=row.status_since,
                reason=row.reason,
            )
            for row, name, version in rows
        ]
