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

from controller.config import ControllerSettings
from controller.plans import HOLD, Action, ActionKind, Position, RolloutPlan, decide
from controller.reconciler.collect import collect
from controller.reconciler.judge import judge
from controller.reconciler.leader import LeaderLock
from controller.reconciler.totals import ArmTotals, consume_deltas
from controller.rollouts import service
from controller.routers.base import RouterError
from controller.routers.factory import router_for
from controller.stats import Report
from controller.tables import Rollout, RolloutObservation
from controller.vocabulary import RolloutState
from controller.watch import service as watch
from controller.webhooks.outbox import deliver_due
from registry.db.base import utcnow
from registry.db.session import Database
from registry.db.tables import Model
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
            report = judge(plan, totals)
            now = self.clock()
            champion, challenger = totals.champion, totals.challenger
            samples = challenger.requests
            position = Position(
                state=RolloutState(rollout.state),
                step_index=rollout.step_index,
                started_at=rollout.created_at,
                step_started_at=rollout.step_started_at or rollout.created_at,
                step_start_samples=rollout.step_start_samples,
            )
            action = decide(plan, position, report.verdict, report.reason, samples, now)
            if (
                service.needs_routing(rollout)
                and position.state != RolloutState.pending
                and action.kind != ActionKind.roll_back
            ):
                action = HOLD  # the data plane has not applied the current step yet
            rollout.observed = observed_json(totals, report, now)
            rollout.observed_at = now
            if action.kind.target_state is not None:
                TRANSITIONS.labels(to_state=action.kind.target_state.value).inc()
                log.info(
                    "rollout %s of %s: %s (%s)", rollout.id, model.name, action.kind, action.reason
                )
            service.apply(session, rollout, action, ACTOR, report, samples, now)
            session.add(
                RolloutObservation(
                    rollout_id=rollout.id,
                    at=now,
                    state=rollout.state,
                    step_index=rollout.step_index,
                    challenger_weight_bp=rollout.challenger_weight_bp,
                    champion_requests=champion.requests,
                    challenger_requests=challenger.requests,
                    evidence=report.model_dump(mode="json"),
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


def observed_json(totals: ArmTotals, report: Report, now: datetime) -> dict[str, Any]:
    """What the rollout row keeps of its latest look: the arms over all strata (shown; the
    strata themselves are ``RolloutStratum`` rows) and the evidence."""
    return {
        "arms": totals.to_json(),
        "evidence": report.model_dump(mode="json"),
        "at": now.isoformat(),
    }
