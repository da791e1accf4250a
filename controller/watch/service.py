"""The champion watch's operations: the leader's look at every champion (with the bake-window
rollback), reading a champion's report, acknowledging alarms, and the Prometheus gauges."""

from __future__ import annotations

import logging
from datetime import datetime

from prometheus_client import Gauge
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.config import ControllerSettings
from controller.rollouts import service as rollouts
from controller.stats.watch_report import STATUSES, WatchReport
from controller.tables import ChampionObservation, ChampionWatch
from controller.vocabulary import CHAMPION_ALIAS, DEFAULT_CHAMPION_BLOCK_S
from controller.watch.policy import policy_of
from controller.watch.watcher import ACTOR, ChampionLook
from registry.db.session import Database
from registry.db.tables import Alias, Model, ModelVersion
from registry.errors import NotFound
from registry.services import audit
from registry.services.lookup import get_model

log = logging.getLogger("shelf.watch")

STATUS = Gauge("shelf_champion_status", "1 for the status a champion is in", ["model", "status"])
STATISTIC = Gauge(
    "shelf_champion_check_log_e_value",
    "A champion check's detector statistic (log e-value); alarms at shelf_champion_check_threshold",
    ["model", "check", "against"],
)
THRESHOLD = Gauge(
    "shelf_champion_check_threshold",
    "Log e-value at which a champion check alarms (its share of the weekly false-alarm budget)",
    ["model", "check", "against"],
)


def champions(session: Session) -> list[int]:
    """Ids of the models that have a champion."""
    return list(session.scalars(select(Alias.model_id).where(Alias.name == CHAMPION_ALIAS)))


def look(
    session: Session, model: Model, settings: ControllerSettings, now: datetime
) -> WatchReport | None:
    """One look at ``model``'s champion: judge its closed blocks, update its status, announce
    changes and, inside the bake window with ``on_decay: rollback``, go back to the previous
    champion when a decay check against its reference alarms."""
    champion = rollouts.champion_of(session, model)
    if champion is None:
        return None
    policy = policy_of(session, model)
    current = ChampionLook(
        session,
        model,
        champion,
        policy,
        settings.champion_block_s,
        now,
        flush_interval_s=settings.gateway_flush_interval_s,
    )
    row, report = current.run()
    decay = current.bake_decay
    if decay and policy.on_decay == "rollback" and row.previous_version_id is not None:
        previous = session.get(ModelVersion, row.previous_version_id)
        if previous is not None and previous.status == "ready":
            evidence = [c.model_dump(mode="json") for c in report.checks if c.state == "alarm"]
            reason = (
                f"champion watch: {model.name} v{champion.version} decayed against "
                f"v{previous.version}'s reference inside its bake window ({report.reason})"
            )
            rollouts.rollback(
                session, model.name, ACTOR, to_version=previous.version, reason=reason
            )
            audit.record(
                session,
                "champion.bake_rollback",
                ACTOR,
                model,
                from_version=champion.version,
                to_version=previous.version,
                reason=reason,
                evidence=evidence,
            )
            log.warning("%s", reason)
    export(report)
    return report


def look_all(database: Database, settings: ControllerSettings, now: datetime) -> None:
    """A look at every champion, each in its own transaction."""
    with database.session() as session:
        ids = champions(session)
    for model_id in ids:
        try:
            with database.session() as session:
                model = session.get(Model, model_id)
                if model is not None:
                    look(session, model, settings, now)
        except Exception:
            log.exception("champion watch of model %s failed; will retry", model_id)


def report_of(session: Session, name: str, now: datetime) -> WatchReport:
    """The model's champion watch as it stands (no blocks judged)."""
    model = get_model(session, name)
    champion = rollouts.champion_of(session, model)
    row = session.get(ChampionWatch, model.id)
    if champion is None:
        raise NotFound(f"model {name!r} has no champion to watch")
    if row is None or row.version_id != champion.id:
        raise NotFound(f"the champion watch of {name!r} has not looked at v{champion.version} yet")
    policy = policy_of(session, model)
    block_s = float(row.detectors.get("block_s", DEFAULT_CHAMPION_BLOCK_S))
    return ChampionLook(session, model, champion, policy, block_s, now).report(row)


def history(session: Session, name: str, limit: int) -> list[ChampionObservation]:
    """The current champion's latest judged blocks, oldest first."""
    model = get_model(session, name)
    row = session.get(ChampionWatch, model.id)
    if row is None:
        return []
    rows = session.scalars(
        select(ChampionObservation)
        .where(
            ChampionObservation.model_id == model.id,
            ChampionObservation.version_id == row.version_id,
        )
        .order_by(ChampionObservation.block.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


def export(report: WatchReport) -> None:
    for status in STATUSES:
        STATUS.labels(model=report.model, status=status).set(1 if report.status == status else 0)
    for check in report.checks:
        labels = {"model": report.model, "check": check.check, "against": check.against}
        STATISTIC.labels(**labels).set(check.statistic)
        THRESHOLD.labels(**labels).set(check.threshold)
