"""The reconcile loop: for every active rollout, merge what the gateways measured, ask the
statistics for evidence, and advance, promote or roll back; then watch every champion
(``controller.watch``). Only the leader acts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import select

from controller.abn import Contender, decide_arms
from controller.config import ControllerSettings
from controller.plans import HOLD, Action, ActionKind, Position, RolloutPlan
from controller.reconciler.collect import collect
from controller.reconciler.judge import judge_all
from controller.reconciler.leader import LeaderLock
from controller.reconciler.totals import ArmTotals, consume_deltas
from controller.rollouts import service
from controller.rollouts.arms import ChallengerArm, challengers_of
from controller.routers.base import RouterError
from controller.routers.factory import router_for
from controller.stats import Report
from controller.tables import Rollout, RolloutObservation
from controller.vocabulary import RolloutState
from controller.watch import service as watch
from controller.webhooks.outbox import deliver_due
from registry.db.base import utcnow
from registry.db.session import Database
from registry.db.tables import Model, ModelVersion
from registry.errors import UpstreamError

log = logging.getLogger("shelf.reconciler")
ACTOR = "reconciler"

LEADER = Gauge("shelf_reconciler_leader", "1 while this process is the acting reconciler")
LOOKS = Counter("shelf_reconciler_looks_total", "Rollout evaluations performed")
TRANSITIONS = Counter("shelf_rollout_transitions_total", "Rollout transitions", ["to_state"])
STATE = Gauge("shelf_rollout_state", "1 for the state an active rollout is in", ["model", "state"])
WEIGHT = Gauge("shelf_rollout_challenger_weight_bp", "Challenger weight in basis points", ["model"])
STEP = Gauge("shelf_rollout_step", "Current canary step index", ["model"])
ROUTING_FAILURES = Counter(
    "shelf_router_failures_total", "Weights a router did not acknowledge (retried)"
)


class Reconciler:
    def __init__(
        self,
        settings: ControllerSettings,
        database: Database,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        lock_dir = settings.home
        self.lock = LeaderLock(database.engine, lock_dir)
        self.http = httpx.Client(timeout=httpx.Timeout(5.0))
        self.outbound = settings.outbound_policy()
        self.is_leader = False

    def tick(self) -> None:
        """One look at everything; safe to call at any rate."""
        self.is_leader = self.lock.try_acquire()
        LEADER.set(1 if self.is_leader else 0)
        if not self.is_leader:
            return
        self.route()  # a rollback from the API reaches the data plane before anything else
        with self.database.session() as session:
            ids = [r.id for r in service.active_rollouts(session)]
        for rollout_id in ids:
            try:
                self.reconcile(rollout_id)
            except Exception:
                log.exception("reconciling rollout %s failed; will retry", rollout_id)
        self.route()
        watch.look_all(self.database, self.settings, self.clock())
        try:
            with self.database.session() as session:
                deliver_due(session, self.http, outbound=self.outbound)
        except Exception:
            log.exception("webhook delivery failed; will retry")

    def reconcile(self, rollout_id: int) -> Action | None:
        """Merge what the gateways measured, judge it, and let the rollouts service act."""
        with self.database.session() as session:
            rollout = session.get(Rollout, rollout_id, with_for_update=True)
            if rollout is None or rollout.active_model_id is None:
                return None
            model = session.get(Model, rollout.model_id)
            assert model is not None
            plan = RolloutPlan.from_json(rollout.plan)
            try:
                collect(session, rollout, plan, self.http, self.clock())
            except UpstreamError as error:  # read at a later look; nothing is lost
                log.warning("metric source of rollout %s: %s", rollout.id, error)
            totals, _ = consume_deltas(session, rollout)
            arms = challengers_of(rollout)
            reports = judge_all(plan, totals, [a.arm for a in arms])
            lead = _lead(arms)
            report = reports[lead.arm]
            now = self.clock()
            samples = {a.arm: totals.arm(a.arm).requests for a in arms}
            versions = {a.arm: _version(session, a) for a in arms}
            contenders = {
                a.arm: Contender(
                    a.arm, versions[a.arm], reports[a.arm], samples[a.arm] - a.step_start_samples
                )
                for a in arms
                if a.in_play
            }
            position = Position(
                state=RolloutState(rollout.state),
                step_index=rollout.step_index,
                started_at=rollout.created_at,
                step_started_at=rollout.step_started_at or rollout.created_at,
                step_start_samples=rollout.step_start_samples,
            )
            action = decide_arms(plan, position, contenders, now, len(arms), rollout.harm_paused_at)
            if (
                service.needs_routing(rollout)
                and position.state != RolloutState.pending
                and action.kind not in (ActionKind.roll_back, ActionKind.pause_on_harm)
            ):
                action = HOLD  # the data plane has not applied the current step yet
            rollout.observed = observed_json(totals, report, now, reports)
            rollout.observed_at = now
            if action.kind.target_state is not None or action.kind == ActionKind.drop:
                target = action.kind.target_state or RolloutState(rollout.state)
                TRANSITIONS.labels(to_state=target.value).inc()
                log.info(
                    "rollout %s of %s: %s (%s)", rollout.id, model.name, action.kind, action.reason
                )
            service.apply(
                session, rollout, action, ACTOR, report, samples[lead.arm], now, reports, samples
            )
            after = {a.arm: a for a in challengers_of(rollout)}
            session.add(
                RolloutObservation(
                    rollout_id=rollout.id,
                    at=now,
                    state=rollout.state,
                    step_index=rollout.step_index,
                    challenger_weight_bp=rollout.challenger_weight_bp,
                    champion_requests=totals.champion.requests,
                    challenger_requests=samples[lead.arm],
                    evidence=report.model_dump(mode="json"),
                    challengers={
                        arm: {
                            "version": versions[arm],
                            "weight_bp": after[arm].weight_bp,
                            "status": after[arm].status,
                            "requests": samples[arm],
                            "evidence": reports[arm].model_dump(mode="json"),
                        }
                        for arm in reports
                    },
                )
            )
            LOOKS.inc()
            self._export(model.name, rollout)
            return action

    def route(self) -> None:
        """Sends every rollout's unacknowledged weights to its router: ended rollouts (a
        rollback above all) first, each in its own transaction so one slow data plane does
        not hold back another's acknowledgement."""
        with self.database.session() as session:
            pending = [
                (r.active_model_id is not None, r.id)
                for r in session.scalars(
                    select(Rollout).where(
                        Rollout.router.is_not(None), Rollout.routed_revision < Rollout.revision
                    )
                )
            ]
        for _, rollout_id in sorted(pending):
            with self.database.session() as session:
                rollout = session.get(Rollout, rollout_id, with_for_update=True)
                if rollout is None or not service.needs_routing(rollout):
                    continue
                desired = service.desired_weights(session, rollout)
                try:
                    ack = router_for(rollout.router, self.http, self.outbound).apply(desired)
                except RouterError as error:
                    ROUTING_FAILURES.inc()
                    log.warning("router of rollout %s failed: %s", rollout_id, error)
                    service.record_routing_failure(session, rollout, str(error))
                    continue
                service.record_routed(session, rollout, ack, self.clock())

    def _export(self, model: str, rollout: Rollout) -> None:
        for state in RolloutState:
            STATE.labels(model=model, state=state.value).set(1 if rollout.state == state else 0)
        WEIGHT.labels(model=model).set(rollout.challenger_weight_bp)
        STEP.labels(model=model).set(rollout.step_index)

    async def run(self, stop: asyncio.Event) -> None:
        """Look every ``reconciler_interval_s`` until ``stop`` is set, then step down."""
        interval = self.settings.reconciler_interval_s
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.tick)
                except Exception:
                    log.exception("reconciler tick failed; will retry")
                    self.lock.release()
                    self.is_leader = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        self.lock.release()
        LEADER.set(0)
        self.http.close()


def observed_json(
    totals: ArmTotals,
    report: Report,
    now: datetime,
    reports: dict[str, Report] | None = None,
) -> dict[str, Any]:
    """What the rollout row keeps of its latest look: the arms over all strata (shown; the
    strata themselves are ``RolloutStratum`` rows), the lead challenger's evidence and every
    challenger's (``challengers``, by arm)."""
    return {
        "arms": totals.to_json(),
        "evidence": report.model_dump(mode="json"),
        "challengers": {arm: r.model_dump(mode="json") for arm, r in (reports or {}).items()},
        "at": now.isoformat(),
    }


def _lead(arms: list[ChallengerArm]) -> ChallengerArm:
    """The challenger the single-challenger columns and the headline evidence follow: the
    first in play, else the first suspended, else the first."""
    return next(
        (a for a in arms if a.in_play),
        next((a for a in arms if a.status == "suspended"), arms[0]),
    )


def _version(session: Any, arm: ChallengerArm) -> int:
    version = session.get(ModelVersion, arm.version_id)
    return version.version if version is not None else 0
