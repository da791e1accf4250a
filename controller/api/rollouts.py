"""Rollout endpoints: start, status, pause/resume/promote/abort, rollback, history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.api.schemas import (
    ArmSummary,
    ChallengerLook,
    ChallengerOut,
    ObservationOut,
    RollbackRequest,
    RolloutCreate,
    RolloutOut,
    RouterStatus,
)
from controller.plans import DEFAULT_STEPS, RolloutPlan
from controller.rollouts import service
from controller.rollouts.arms import challengers_of
from controller.stats import ArmStats, Report
from controller.tables import Rollout, RolloutObservation
from controller.vocabulary import ARMS, Strategy
from registry.api.deps import AppContext, caller, context, requires
from registry.api.params import ModelName, RowId
from registry.auth import Principal
from registry.config import Role
from registry.db.tables import Model, ModelVersion
from registry.errors import NotFound
from registry.names import MAX_NUMBER
from registry.services.lookup import get_model

router = APIRouter(prefix="/v1", tags=["rollouts"])


def rollout_out(session: Session, row: Rollout, model: str) -> RolloutOut:
    champion = session.get(ModelVersion, row.champion_version_id)
    challenger = session.get(ModelVersion, row.challenger_version_id)
    assert champion is not None and challenger is not None
    observed = row.observed or {}
    arms = observed.get("arms", {})
    evidence = observed.get("evidence")
    per_arm = observed.get("challengers") or {}
    challengers = []
    for arm in challengers_of(row):
        version = session.get(ModelVersion, arm.version_id)
        assert version is not None
        found = per_arm.get(arm.arm)
        challengers.append(
            ChallengerOut(
                arm=arm.arm,
                version=version.version,
                weight_bp=arm.weight_bp,
                status=arm.status,
                reason=arm.reason,
                evidence=Report.model_validate(found) if found else None,
            )
        )
    review_timeout = float(row.plan.get("review_timeout_s", 3600.0))
    names = [*ARMS, *(c.arm for c in challengers if c.arm not in ARMS)]
    return RolloutOut(
        id=row.id,
        model=model,
        champion_version=champion.version,
        challenger_version=challenger.version,
        challengers=challengers,
        on_harm=row.plan.get("on_harm", "rollback"),
        harm_paused_at=row.harm_paused_at,
        review_deadline=(
            row.harm_paused_at + timedelta(seconds=review_timeout) if row.harm_paused_at else None
        ),
        strategy=row.strategy,
        state=row.state,
        resume_state=row.resume_state,
        step_index=row.step_index,
        steps=list(row.plan.get("steps", [])),
        challenger_weight_bp=row.challenger_weight_bp,
        mirror=row.mirror,
        mirror_percent=row.mirror_bp / 100,
        plan=row.plan,
        reason=row.reason,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
        observed_at=row.observed_at,
        evidence=Report.model_validate(evidence) if evidence else None,
        router=router_status(row),
        arms={arm: ArmSummary.of(ArmStats.from_json(arms.get(arm, {}))) for arm in names},
    )


def router_status(row: Rollout) -> RouterStatus | None:
    if row.router is None:
        return None
    return RouterStatus(
        kind=row.router.get("kind", "webhook"),
        url=row.router.get("url"),
        acknowledged_revision=row.routed_revision,
        acknowledged_weight_bp=row.routed_weight_bp,
        acknowledged_at=row.routed_at,
        pending=service.needs_routing(row),
        last_error=row.routing_error,
    )


def plan_of(body: RolloutCreate) -> RolloutPlan:
    steps = tuple(body.steps) if body.steps is not None else DEFAULT_STEPS
    return RolloutPlan(
        strategy=body.strategy,
        steps=() if body.strategy == Strategy.shadow and body.steps is None else steps,
        min_samples=body.min_samples,
        min_step_duration_s=body.min_step_duration_s,
        shadow_min_samples=body.shadow_min_samples or body.min_samples,
        shadow_duration_s=(
            body.shadow_duration_s
            if body.shadow_duration_s is not None
            else body.min_step_duration_s
        ),
        mirror_percent=body.mirror_percent,
        max_duration_s=body.max_duration_s,
        on_timeout=body.on_timeout,
        alpha=body.alpha,
        guardrails=tuple(body.guardrails),
        guardrail_options=body.guardrail_options,
        time_block_s=body.time_block_s,
        warmup_s=body.warmup_s,
        metrics=body.metrics.model_dump() if body.metrics is not None else None,
        on_harm=body.on_harm,
        review_timeout_s=body.review_timeout_s,
        primary_metric=body.primary_metric,
    )


@router.post("/models/{name}/rollouts", response_model=RolloutOut, status_code=201)
def start(
    name: ModelName,
    body: RolloutCreate,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> RolloutOut:
    plan = plan_of(body)  # InvalidInput (422) for a plan the reconciler could not judge
    with ctx.database.session() as session:
        row = service.start_rollout(
            session,
            name,
            body.versions(),
            plan,
            who.name,
            ctx.settings.outbound_policy(),
            body.router,
        )
        return rollout_out(session, row, name)


@router.get("/models/{name}/rollouts", response_model=list[RolloutOut])
def history(
    name: ModelName,
    limit: int = Query(20, ge=1, le=200),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> list[RolloutOut]:
    with ctx.database.session() as session:
        return [rollout_out(session, r, name) for r in service.list_rollouts(session, name, limit)]


@router.get("/models/{name}/rollout", response_model=RolloutOut)
def status(
    name: ModelName, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> RolloutOut:
    """The active rollout of the model, or its most recent one."""
    with ctx.database.session() as session:
        model = get_model(session, name)
        row = service.active_rollout(session, model) or service.latest_rollout(session, model)
        if row is None:
            raise NotFound(f"model {name!r} has never had a rollout")
        return rollout_out(session, row, name)


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut)
def by_id(
    rollout_id: RowId, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> RolloutOut:
    with ctx.database.session() as session:
        row = session.get(Rollout, rollout_id)
        if row is None:
            raise NotFound(f"rollout {rollout_id} not found")
        model = session.get(Model, row.model_id)
        assert model is not None
        return rollout_out(session, row, model.name)


@router.get("/rollouts/{rollout_id}/observations", response_model=list[ObservationOut])
def observations(
    rollout_id: RowId,
    limit: int = Query(10_000, ge=1, le=100_000),
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> list[ObservationOut]:
    """Every look the reconciler took: weights and evidence over time."""
    with ctx.database.session() as session:
        rows = session.scalars(
            select(RolloutObservation)
            .where(RolloutObservation.rollout_id == rollout_id)
            .order_by(RolloutObservation.id)
            .limit(limit)
        )
        return [
            ObservationOut(
                at=r.at,
                state=r.state,
                step_index=r.step_index,
                challenger_weight_bp=r.challenger_weight_bp,
                champion_requests=r.champion_requests,
                challenger_requests=r.challenger_requests,
                evidence=Report.model_validate(r.evidence),
                challengers=(
                    {
                        arm: ChallengerLook.model_validate(look)
                        for arm, look in r.challengers.items()
                    }
                    if r.challengers
                    else None
                ),
            )
            for r in rows
        ]


def _control(action: str) -> Callable[..., RolloutOut]:
    operations = {
        "pause": service.pause,
        "resume": service.resume,
        "abort": service.abort,
    }

    def endpoint(
        name: ModelName,
        ctx: AppContext = Depends(context),
        who: Principal = Depends(requires(Role.deploy)),
    ) -> RolloutOut:
        with ctx.database.session() as session:
            row = operations[action](session, name, who.name)
            return rollout_out(session, row, name)

    endpoint.__name__ = f"{action}_rollout"
    endpoint.__doc__ = f"{action.capitalize()} the model's active rollout."
    return endpoint


@router.post("/models/{name}/rollout/promote", response_model=RolloutOut, name="promote_rollout")
def promote_rollout(
    name: ModelName,
    version: int | None = Query(
        None,
        ge=1,
        le=MAX_NUMBER,
        description="The challenger to promote (A/B/n); default the first",
    ),
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> RolloutOut:
    """Promote the model's active rollout: its challenger ``version``, or the first in play."""
    with ctx.database.session() as session:
        row = service.promote_by_hand(session, name, who.name, version)
        return rollout_out(session, row, name)


for _action in ("pause", "resume", "abort"):
    router.add_api_route(
        f"/models/{{name}}/rollout/{_action}",
        _control(_action),
        methods=["POST"],
        response_model=RolloutOut,
        name=f"{_action}_rollout",
    )


@router.post("/models/{name}/rollback")
def rollback(
    name: ModelName,
    body: RollbackRequest | None = None,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.deploy)),
) -> dict[str, object]:
    """Incident button: end any active rollout, champion back to the previous one (or ``to``)."""
    request = body or RollbackRequest()
    with ctx.database.session() as session:
        return service.rollback(session, name, who.name, request.to, request.reason)
