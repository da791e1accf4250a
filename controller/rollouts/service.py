"""Every change to a rollout: what users do (start, pause, resume, promote, abort, roll back)
and what the reconciler decides (:func:`apply`). This module is the one writer of rollout
state; each change goes through :func:`controller.rollouts.transitions.transition`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from controller.plans import Action, ActionKind, RolloutPlan
from controller.rollouts.arms import ChallengerArm, challengers_of, store, with_status
from controller.rollouts.transitions import notify_gateways, transition
from controller.routers.base import Acknowledgement, DesiredWeights, RouterSpec, ServedVersion
from controller.stats import Report
from controller.tables import ArmStatsDelta, Rollout, RolloutStratum
from controller.vocabulary import (
    ACTIVE_STATES,
    CHAMPION_ALIAS,
    MAX_CHALLENGERS,
    ChallengerStatus,
    RolloutState,
    Strategy,
    challenger_arm,
)
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
    challenger: int | Sequence[int],
    plan: RolloutPlan,
    actor: str,
    outbound: OutboundPolicy | None = None,
    router: RouterSpec | None = None,
) -> Rollout:
    """Starts the rollout of one challenger version or several (A/B/n), routed by the
    built-in gateway or by ``router``; with ``outbound`` every serving URL (and a webhook
    router's URL) must be allowed by it (they were registered under the policy of that time,
    which may have been tightened since)."""
    numbers = [challenger] if isinstance(challenger, int) else list(challenger)
    _check_challengers(numbers, plan, router)
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
    candidates = []
    for number in numbers:
        candidate = resolve(session, Reference(name, version=number))
        if candidate.id == champion.id:
            raise InvalidInput(f"version {number} is already the champion of {name!r}")
        if candidate.status != "ready":
            raise InvalidInput(f"version {number} of {name!r} is {candidate.status}, not ready")
        candidates.append(candidate)
    for version in (champion, *candidates):
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
        challenger_version_id=candidates[0].id,
        challengers=[
            ChallengerArm(challenger_arm(i), c.id).to_json() for i, c in enumerate(candidates)
        ],
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


def _check_challengers(numbers: list[int], plan: RolloutPlan, router: RouterSpec | None) -> None:
    if not numbers:
        raise InvalidInput("name at least one challenger version")
    if len(numbers) > MAX_CHALLENGERS:
        raise InvalidInput(
            f"{len(numbers)} challengers: a rollout compares at most {MAX_CHALLENGERS} at once"
        )
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise InvalidInput(
            "each challenger may be named once; repeated: " + ", ".join(map(str, duplicates))
        )
    if len(numbers) > 1:
        if plan.strategy != Strategy.canary:
            raise InvalidInput(
                f"several challengers need the canary strategy, not {plan.strategy} "
                "(they share the canary steps)"
            )
        if router is not None and router.kind != "gateway":
            raise InvalidInput(
                "several challengers need the built-in gateway: a webhook router takes one "
                "challenger's weight"
            )


def pause(session: Session, name: str, actor: str) -> Rollout:
    _, rollout = require_active(session, name)
    if rollout.state in (RolloutState.paused, RolloutState.paused_on_harm):
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
    if rollout.state == RolloutState.paused_on_harm:
        _resume_after_harm(session, rollout, actor)
        return rollout
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


def _resume_after_harm(session: Session, rollout: Rollout, actor: str) -> None:
    """A person reviewed the harm and lets the rollout go on: the suspended challengers
    return at the current step's weight, and the evidence starts afresh: the judged totals
    (and deltas not yet merged) are cleared, so nothing measured before now counts. What was
    measured stays in the audit trail (the pause event carries it) and the observations."""
    plan = RolloutPlan.from_json(rollout.plan)
    arms = challengers_of(rollout)
    state = RolloutState(rollout.resume_state or RolloutState.canary)
    weight = 0
    if state == RolloutState.canary and plan.steps:
        weight = plan.challenger_weight_bp(rollout.step_index, len(arms))
    resumed = [
        replace(
            a,
            status=ChallengerStatus.active if a.status == ChallengerStatus.suspended else a.status,
            weight_bp=weight
            if a.status in (ChallengerStatus.suspended, ChallengerStatus.active)
            else 0,
            reason="" if a.status == ChallengerStatus.suspended else a.reason,
            step_start_samples=0,
        )
        for a in arms
    ]
    session.execute(delete(RolloutStratum).where(RolloutStratum.rollout_id == rollout.id))
    session.execute(delete(ArmStatsDelta).where(ArmStatsDelta.rollout_id == rollout.id))
    now = utcnow()
    transition(
        session,
        rollout,
        state,
        actor,
        f"resumed by {actor} after review of the harm; evidence starts afresh",
        event="rollout.resumed",
        resume_state=None,
        harm_paused_at=None,
        observed=None,
        step_started_at=now,
        step_start_samples=0,
        mirror=state == RolloutState.shadowing,
        **store(rollout, resumed),
    )


def promote(
    session: Session,
    name: str,
    actor: str,
    reason: str = "",
    evidence: Report | None = None,
    rollout: Rollout | None = None,
    winner: str | None = None,
    details: dict[str, Any] | None = None,
) -> Rollout:
    """The challenger (``winner``, an arm; default the first in play) becomes champion: the
    alias moves and the rollout ends, in one commit. A challenger registered without a
    reference profile gets one captured from its rollout statistics, for the champion watch."""
    if rollout is None:
        _, rollout = require_active(session, name)
    arms = challengers_of(rollout)
    chosen = winner or next((a.arm for a in arms if a.in_play), None)
    if chosen is None:
        raise Conflict(f"the rollout of {name!r} has no challenger in play to promote")
    arms = [
        replace(a, status=ChallengerStatus.promoted)
        if a.arm == chosen
        else replace(
            a,
            status=ChallengerStatus.dropped if a.in_play else a.status,
            reason=a.reason or f"{chosen} was promoted",
        )
        for a in arms
    ]
    store(rollout, arms)
    challenger = session.get(ModelVersion, rollout.challenger_version_id)
    assert challenger is not None
    why = reason or f"promoted by {actor}"
    if challenger.reference_profile is None:
        captured = captured_profile(rollout.observed, chosen)
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
    transition(session, rollout, RolloutState.promoted, actor, why, evidence, details=details)
    return rollout


def promote_by_hand(session: Session, name: str, actor: str, version: int | None = None) -> Rollout:
    """A person promotes: challenger ``version`` (one still in play or suspended), or without
    one the first challenger in play."""
    _, rollout = require_active(session, name)
    if version is None:
        return promote(session, name, actor, rollout=rollout)
    eligible = [a for a in challengers_of(rollout) if a.in_play or a.status == "suspended"]
    for arm in eligible:
        candidate = session.get(ModelVersion, arm.version_id)
        if candidate is not None and candidate.version == version:
            return promote(session, name, actor, rollout=rollout, winner=arm.arm)
    numbers = [session.get(ModelVersion, a.version_id) for a in eligible]
    raise InvalidInput(
        f"version {version} is not a challenger in play in the rollout of {name!r}; in play: "
        + (", ".join(str(v.version) for v in numbers if v is not None) or "none")
    )


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
    reports: Mapping[str, Report] | None = None,
    samples: Mapping[str, int] | None = None,
) -> None:
    """Carries out what :func:`controller.abn.decide_arms` chose. ``evidence`` is the lead
    challenger's report, ``reports`` every challenger's (by arm); ``challenger_samples`` (and
    ``samples``, by arm) are where a new step's sample counts start."""
    reports = reports or {}
    samples = samples or {}
    step_start: dict[str, Any] = {"step_started_at": now, "step_start_samples": challenger_samples}
    arms = challengers_of(rollout)
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
            **step_start,
            **store(
                rollout,
                [replace(a, weight_bp=0, step_start_samples=samples.get(a.arm, 0)) for a in arms],
            ),
        )
    elif action.kind == ActionKind.set_step:
        moved = [
            replace(a, weight_bp=action.weight_bp, step_start_samples=samples.get(a.arm, 0))
            if a.in_play
            else a
            for a in arms
        ]
        transition(
            session,
            rollout,
            RolloutState.canary,
            actor,
            action.reason,
            evidence,
            mirror=False,
            step_index=action.step_index,
            **step_start,
            **store(rollout, moved),
        )
    elif action.kind == ActionKind.promote:
        model = session.get(Model, rollout.model_id)
        assert model is not None
        winner = action.arms[0] if action.arms else None
        chosen = reports.get(winner) if winner else None
        details = None
        if len(arms) > 1:
            details = {
                "winner": winner,
                "primary_metric": RolloutPlan.from_json(rollout.plan).primary(),
                "candidates": _arm_evidence(reports),
            }
        promote(
            session, model.name, actor, action.reason, chosen or evidence, rollout, winner, details
        )
    elif action.kind == ActionKind.roll_back:
        details = {"candidates": _arm_evidence(reports)} if len(arms) > 1 else None
        transition(
            session,
            rollout,
            RolloutState.rolled_back,
            actor,
            action.reason,
            _first(reports, action.arms) or evidence,
            details=details,
            **store(
                rollout, with_status(arms, action.arms, ChallengerStatus.dropped, action.reason)
            ),
        )
    elif action.kind == ActionKind.drop:
        transition(
            session,
            rollout,
            RolloutState(rollout.state),
            actor,
            f"dropped {', '.join(action.arms)}: {action.reason}",
            _first(reports, action.arms) or evidence,
            event="rollout.challenger_dropped",
            details={"dropped": list(action.arms), "candidates": _arm_evidence(reports)},
            **store(
                rollout, with_status(arms, action.arms, ChallengerStatus.dropped, action.reason)
            ),
        )
    elif action.kind == ActionKind.pause_on_harm:
        already = rollout.state == RolloutState.paused_on_harm
        resume_to = rollout.resume_state if rollout.state == RolloutState.paused else rollout.state
        transition(
            session,
            rollout,
            RolloutState.paused_on_harm,
            actor,
            f"paused on harm, waiting for review: {action.reason}",
            _first(reports, action.arms) or evidence,
            event="rollout.paused_on_harm",
            details={"suspended": list(action.arms), "candidates": _arm_evidence(reports)},
            resume_state=rollout.resume_state if already else resume_to,
            mirror=False,
            harm_paused_at=rollout.harm_paused_at if already else now,
            **store(
                rollout, with_status(arms, action.arms, ChallengerStatus.suspended, action.reason)
            ),
        )


def _first(reports: Mapping[str, Report], arms: tuple[str, ...]) -> Report | None:
    return next((reports[a] for a in arms if a in reports), None)


def _arm_evidence(reports: Mapping[str, Report]) -> dict[str, Any]:
    return {arm: report.model_dump(mode="json") for arm, report in reports.items()}


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
