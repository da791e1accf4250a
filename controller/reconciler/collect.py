"""Statistics a metric source measured, written as the same delta rows gateways flush, so the
reconciler merges and judges them the same way (within strata, never counted twice).

Each look reads the counters over ``[until, now - lag]`` once that window is at least
``interval_s`` long: a window starts no earlier than the current step (the tail of a step that
just ended is left out rather than counted in the next), and is stamped with the stratum of its
midpoint. A delta's ``(replica_id, seq)`` is the source, the rollout, the arm and the window's
end, so a window is never counted twice even if the look that read it is retried."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import httpx
from sqlalchemy.orm import Session

from controller.metric_sources.prometheus import PrometheusSource, increments
from controller.metric_sources.queries import PrometheusQueries
from controller.plans import RolloutPlan
from controller.strata import stratum_clock
from controller.tables import ArmStatsDelta, Rollout
from controller.vocabulary import Arm, RolloutState
from registry.db.tables import ModelVersion

log = logging.getLogger("shelf.reconciler")
MEASURED_STATES = (RolloutState.shadowing, RolloutState.canary)


def collect(
    session: Session, rollout: Rollout, plan: RolloutPlan, client: httpx.Client, now: datetime
) -> int:
    """Reads one window of the plan's metric source if one is due; returns the rows added.
    Raises UpstreamError when Prometheus cannot answer (the window is read at a later look)."""
    if plan.metrics is None or rollout.state not in MEASURED_STATES:
        return 0
    queries = PrometheusQueries.model_validate(plan.metrics)
    step_start = rollout.step_started_at or rollout.created_at
    start = max(rollout.metrics_until or step_start, step_start)
    end = now - timedelta(seconds=queries.lag_s)
    if (end - start).total_seconds() < queries.interval_s:
        return 0
    source = PrometheusSource(queries, client)
    clock = stratum_clock(
        rollout.state, rollout.step_index, rollout.step_started_at, rollout.created_at, rollout.plan
    )
    step, block = clock.at((start.timestamp() + end.timestamp()) / 2.0)
    added = 0
    for arm, version_id in (
        (Arm.champion, rollout.champion_version_id),
        (Arm.challenger, rollout.challenger_version_id),
    ):
        version = session.get(ModelVersion, version_id)
        assert version is not None
        stats = increments(
            source.reading(version.version, start.timestamp()),
            source.reading(version.version, end.timestamp()),
        )
        if stats.is_empty():
            continue
        session.add(
            ArmStatsDelta(
                rollout_id=rollout.id,
                model_id=rollout.model_id,
                version_id=version_id,
                arm=arm,
                replica_id=f"prometheus-{rollout.id}-{arm}",
                seq=int(end.timestamp() * 1000),
                stats=stats.to_json(),
                stratum_step=step,
                stratum_block=block,
            )
        )
        added += 1
    rollout.metrics_until = end
    session.flush()
    return added
