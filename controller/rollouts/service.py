"""Every change to a rollout: what users do (start, pause, resume, promote, abort, roll back)
and what the reconciler decides (:func:`apply`). This module is the one writer of rollout
state; each change goes through :func:`controller.rollouts.transitions.transition`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from controller.plans import Action, ActionKind, RolloutPlan
from controller.rollouts.transitions import notify_gateways, transition
from controller.routers.base import Acknowledgement, DesiredWeights, RouterSpec, ServedVersion
from controller.stats import Report
from controller.tables import Rollout
from controller.vocabulary import ACTIVE_STATES, CHAMPION_ALIAS, RolloutState
from controller.watch.capture import captured_profile
from registry.db.base import utcnow
from registry.db.tables import Alias, Model, ModelVersion
from registry.errors import Conflict, InvalidInput, NotFound
from registry.names import Reference
from registry.outbound import OutboundPolicy
from registry.services import aliases, audit
from registry.services.lookup import get_model
from registry.services.versions import resolve


def champion_of(session: Session, model: Model) -> ModelVersion | None:
    row = session.scalar(
        select(Alias).where(Alias.model_id == model.id, Alias.name == CHAMPION_ALIAS)
    )
    return row.version if row is not None else None


def active_rollout(session: Session, model: Model, lock: bool = False) -> Rollout | None:
    query = select(Rollout).where(Rollout.active_model_id == model.id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def require_active(session: Session, name: str) -> tuple[Model, Rollout]:
    model = get_model(session, name)
    rollout = active_rollout(session, model, lock=True)
    if rollout is None:
        raise NotFound(f"model {name!r} has no active rollout")
    return model, rollout


def latest_rollout(session: Session, model: Model) -> Rollout | None:
    return session.scalar(
        select(Rollout).where(Rollout.model_id == model.id).order_by(Rollout.id.desc()).limit(1)
    )


def start_rollout(
    session: Session,
    name: str,
    challenger: int,
    plan: RolloutPlan,
    actor: str,
    outbound: OutboundPolicy | None = None,
    router: RouterSpec | None = None,
) -> Rollout:
    """Starts the rollout, routed by the built-in gateway or by ``router``; with ``outbound``
    both serving URLs (and a webhook router's URL) must be allowed by it (they were registered
    under the policy of that time, which may have been tightened since)."""
    if plan.metrics is not None and (router is None or router.kind != "webhook"):
        raise InvalidInput(
            "a metric source reads traffic Shelf's gateway does not see: it needs a webhook "
            "router (with the built-in gateway, Shelf measures the traffic itself)"
        )
    if router is not None and router.kind == "webhook":
        if not (router.url and router.secret):
            raise InvalidInput("a webhook router needs a url and a secret (16 characters or more)")
        if outbound is not None:
            outbound.check_url(router.url, "router URL")
    model = get_model(session, name)
    champion = champion_of(session, model)
    if champion is None:
        raise Conflict(
            f"model {name!r} has no champion to compare against: "
            f"run 'shelf alias set {name} champion VERSION' first"
        )
    candidate = resolve(session, Reference(name, version=challenger))
    if candidate.id == champion.id:
        raise InvalidInput(f"version {challenger} is already the champion of {name!r}")
    if candidate.status != "ready":
        raise InvalidInput(f"version {challenger} of {name!r} is {candidate.status}, not ready")
    for version in (champion, candidate):
        if not version.serving_url:
            raise InvalidInput(
                f"{name}@{version.version} has no serving URL; register it with --serving-url"
            )
        if outbound is not None:
            outbound.check_url(version.serving_url, f"{name}@{version.version}'s serving URL")
    if active_rollout(session, model) is not None:
        raise Conflict(f"model {name!r} already has an active rollout; abort it first")
    now = utcnow()
    rollout = Rollout(
        model_id=model.id,
        active_model_id=model.id,
        champion_version_id=champion.id,
        challenger_version_id=candidate.id,
        strategy=plan.strategy,
        mirror_bp=plan.mirror_bp,
        state=RolloutState.pending,
        plan=plan.to_json(),
        alpha=plan.alpha,
        step_started_at=now,
        created_at=now,
        updated_at=now,
        created_by=actor,
        router=router.model_dump() if router is not None and router.kind != "gateway" else None,
    )
    try:
        with session.begin_nested():
            session.add(rollout)
            session.flush()
    except DBIntegrityError:
        raise Conflict(f"model {name!r} already has an active rollout; abort it first") from None
    transition(
        session,
        rollout,
        RolloutState.pending,
        actor,
        f"started by {actor}",
        event="rollout.started",
    )
    return rollout


def pause(session: Session, name: str, actor: str) -> Rollout:
    _, rollout = require_active(session, name)
    if rollout.state == RolloutState.paused:
        return rollout
    transition(
        session,
        rollout,
        RolloutState.paused,
        actor,
        f"paused by {actor}",
        resume_state=rollout.state,
    )
    return rollout


def resume(session: Session, name: str, actor: str) -> Rollout:
    _, rollout = require_active(session, name)
    if rollout.state != RolloutState.paused:
        raise Conflict(f"the rollout of {name!r} is {rollout.state}, not paused")
    transition(
        session,
        rollout,
        RolloutState(rollout.resume_state or RolloutState.pending),
        actor,
        f"resumed by {actor}",
        event="rollout.resumed",
        resume_state=None,
    )
    return rollout


def promote(
    session: Session,
    name: str,
    actor: str,
    reason: str = "",
    evidence: Report | None = None,
    rollout: Rollout | None = None,
) -> Rollout:
    """The challenger becomes champion: the alias moves and the rollout ends, in one commit.
    A challenger registered without a reference profile gets one captured from its rollout
    statistics, for the champion watch."""
    if rollout is None:
        _, rollout = require_active(session, name)
    challenger = session.get(ModelVersion, rollout.challenger_version_id)
    assert challenger is not None
    why = reason or f"promoted by {actor}"
    if challenger.reference_profile is None:
        captured = captured_profile(rollout.observed)
        if captured is not None:
            challenger.reference_profile = captured
            audit.record(
                session,
                "version.profile_captured",
                actor,
                challenger.model,
                version=challenger.version,
                rollout_id=rollout.id,
                samples=captured["samples"],
            )
    aliases.set_alias(
        session,
        name,
        CHAMPION_ALIAS,
        challenger.version,
        actor,
        reason=f"rollout {rollout.id}: {why}",
    )
    transition(session, rollout, RolloutState.promoted, actor, why, evidence)
    return rollout


def abort(session: Session, name: str, actor: str) -> Rollout:
    _, rollout = require_active(session, name)
    transition(session, rollout, RolloutState.aborted, actor, f"aborted by {actor}")
    return rollout


def roll_back_rollout(
    session: Session,
    rollout: Rollout,
    actor: str,
    reason: str,
    evidence: Report | None = None,
) -> None:
    transition(session, rollout, RolloutState.rolled_back, actor, reason, evidence)


def rollback(
    session: Session, name: str, actor: str, to_version: int | None = None, reason: str = ""
) -> dict[str, Any]:
    """The incident button: end any active rollout and send all traffic to the previous
    champion (or ``to_version``). Returns what happened."""
    model = get_model(session, name)
    rollout = active_rollout(session, model, lock=True)
    why = reason or f"manual rollback by {actor}"
    ended = None
    if rollout is not None:
        roll_back_rollout(session, rollout, actor, why)
        ended = rollout.id
    current = champion_of(session, model)
    target: ModelVersion | None
    if to_version is not None:
        target = resolve(session, Reference(name, version=to_version))
    elif rollout is not None:
        target = current  # the rollout never promoted: its champion is the one to go back to
    else:
        target = aliases.previous_target(session, model, CHAMPION_ALIAS)
        if target is None:
            raise Conflict(f"{name!r} has no previous champion to roll back to; use --to VERSION")
    if target is None:
        raise Conflict(f"{name!r} has no champion; use --to VERSION")
    if current is None or target.id != current.id:
        aliases.set_alias(session, name, CHAMPION_ALIAS, target.version, actor, reason=why)
    audit.record(
        session,
        "model.rolled_back",
        actor,
        model,
        to_version=target.version,
        from_version=current.version if current else None,
        rollout_id=ended,
        reason=why,
    )
    notify_gateways(session, model.name)
    return {
        "model": name,
        "champion_version": target.version,
        "previous_champion_version": current.version if current else None,
        "ended_rollout_id": ended,
    }


def list_rollouts(session: Session, name: str, limit: int) -> list[Rollout]:
    model = get_model(session, name)
    return list(
        session.scalars(
            select(Rollout)
            .where(Rollout.model_id == model.id)
            .order_by(Rollout.id.desc())
            .limit(limit)
        )
    )


def active_rollouts(session: Session) -> list[Rollout]:
    return list(
        session.scalars(
            select(Rollout).where(Rollout.state.in_(ACTIVE_STATES)).order_by(Rollout.id)
        )
    )


def apply(
    session: Session,
    rollout: Rollout,
    action: Action,
    actor: str,
    evidence: Report,
    challenger_samples: int,
    now: datetime,
) -> None:
    """Carries out what :func:`controller.plans.decide` chose; ``challenger_samples`` is where
    a new step's sample count starts."""
    step_start: dict[str, Any] = {"step_started_at": now, "step_start_samples": challenger_samples}
    if action.kind == ActionKind.hold:
        return
    if action.kind == ActionKind.start_shadow:
        transition(
            session,
            rollout,
            RolloutState.shadowing,
            actor,
            action.reason,
            evidence,
            mirror=True,
            challenger_weight_bp=0,
            **step_start,
        )
    elif action.kind == ActionKind.set_step:
        transition(
            session,
            rollout,
            RolloutState.canary,
            actor,
            action.reason,
            evidence,
            mirror=False,
            step_index=action.step_index,
            challenger_weight_bp=action.weight_bp,
            **step_start,
        )
    elif action.kind == ActionKind.promote:
        model = session.get(Model, rollout.model_id)
        assert model is not None
        promote(session, model.name, actor, action.reason, evidence, rollout)
    elif action.kind == ActionKind.roll_back:
        roll_back_rollout(session, rollout, actor, action.reason, evidence)


def needs_routing(rollout: Rollout) -> bool:
    """Whether the rollout's data plane has yet to acknowledge its latest change."""
    return rollout.router is not None and rollout.routed_revision < rollout.revision


def desired_weights(session: Session, rollout: Rollout) -> DesiredWeights:
    """What the data plane should do now. After promotion the challenger is the champion; after
    a rollback or an abort the champion takes all the traffic."""
    model = session.get(Model, rollout.model_id)
    champion = session.get(ModelVersion, rollout.champion_version_id)
    challenger = session.get(ModelVersion, rollout.challenger_version_id)
    assert model is not None and champion is not None and challenger is not None
    if rollout.state == RolloutState.promoted:
        champion, challenger = challenger, None
    elif rollout.state in (RolloutState.rolled_back, RolloutState.aborted):
        challenger = None
    return DesiredWeights(
        model=model.name,
        rollout_id=rollout.id,
        revision=rollout.revision,
        state=rollout.state,
        champion=ServedVersion(champion.version, champion.serving_url or ""),
        challenger=(
            ServedVersion(challenger.version, challenger.serving_url or "") if challenger else None
        ),
        challenger_weight_bp=rollout.challenger_weight_bp if challenger else 0,
        mirror=rollout.mirror if challenger else False,
        mirror_percent=rollout.mirror_bp / 100,
    )


def record_routed(session: Session, rollout: Rollout, ack: Acknowledgement, now: datetime) -> None:
    """The data plane serves revision ``ack.revision``. A step counts from now, not from the
    decision: until the data plane applied it, traffic was still split the old way."""
    first = rollout.routed_revision < ack.revision
    rollout.routed_revision = max(rollout.routed_revision, ack.revision)
    rollout.routed_weight_bp = ack.challenger_weight_bp
    rollout.routed_at = now
    rollout.routing_error = ""
    if first and rollout.active_model_id is not None and rollout.revision == ack.revision:
        rollout.step_started_at = now


def record_routing_failure(session: Session, rollout: Rollout, error: str) -> None:
    rollout.routing_error = error[:1000]
