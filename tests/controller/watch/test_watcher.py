"""The champion watch against a real database: blocks judged in order, status changes audited
and announced, alarms held until acknowledged, shelf life, and the bake-window rollback."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from controller.config import ControllerSettings
from controller.stats.sufficient import ArmStats
from controller.tables import (
    ArmStatsDelta,
    ChampionObservation,
    ChampionWatch,
    Webhook,
    WebhookDelivery,
)
from controller.vocabulary import CHAMPION_STEP
from controller.watch import service
from controller.watch.policy import set_policy
from controller.watch.watcher import acknowledge
from registry.db.session import Database
from registry.db.tables import AuditEvent, Model
from registry.errors import InvalidInput
from registry.services import aliases
from registry.services.blobs import record_blob
from registry.services.versions import FileEntry, VersionSpec, register_version

BLOCK_S = 60.0
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
PROFILE = {
    "samples": 100_000,
    "class_frequencies": {"a": 0.3, "b": 0.7},
    "accuracy": 0.9,
    "labels": 50_000,
    "error_rate": 0.0,
}


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()


@pytest.fixture
def settings(backend_settings: ControllerSettings) -> ControllerSettings:
    return backend_settings.model_copy(update={"champion_block_s": BLOCK_S})


def add(database: Database, name: str, number: int, **spec: Any) -> int:
    with database.session() as session:
        content = f"{name}-{number}".encode()
        digest = hashlib.sha256(content).hexdigest()
        record_blob(session, digest, len(content))
        files = [FileEntry("m.bin", len(content), digest)]
        return register_version(session, name, files, VersionSpec(**spec), "tester").id


def block_at(moment: datetime) -> int:
    return int(moment.timestamp() // BLOCK_S)


def traffic(rng: np.random.Generator, share_a: float, accuracy: float, n: int = 2000) -> ArmStats:
    stats = ArmStats()
    a = int(rng.binomial(n, share_a))
    stats.requests = n
    stats.predicted = {"a": a, "b": n - a}
    stats.labels = n // 2
    stats.correct = int(rng.binomial(n // 2, accuracy))
    return stats


def put(database: Database, name: str, version_id: int, first: int, blocks: list[ArmStats]) -> None:
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == name))
        assert model is not None
        for i, stats in enumerate(blocks):
            session.add(
                ArmStatsDelta(
                    rollout_id=None,
                    model_id=model.id,
                    version_id=version_id,
                    arm="champion",
                    replica_id="test",
                    seq=first * 1000 + i + version_id * 10**9,
                    stats=stats.to_json(),
                    stratum_step=CHAMPION_STEP,
                    stratum_block=first + i,
                )
            )


def look(database: Database, settings: ControllerSettings, name: str, now: datetime) -> Any:
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == name))
        assert model is not None
        return service.look(session, model, settings, now)


def events(database: Database, kind: str) -> list[dict[str, Any]]:
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.kind == kind))
        return [dict(r.payload) for r in rows]


def test_a_class_shift_turns_the_champion_drifting_until_acknowledged(
    database: Database, settings: ControllerSettings
) -> None:
    rng = np.random.default_rng(1)
    version = add(database, "fraud", 1, reference_profile=PROFILE)
    with database.session() as session:
        aliases.set_alias(session, "fraud", "champion", 1, "tester")
        session.add(Webhook(model_id=None, url="http://127.0.0.1:9/h", secret="s", created_by="t"))
    assert look(database, settings, "fraud", T0).status == "fresh"
    first = block_at(T0)
    put(database, "fraud", version, first, [traffic(rng, 0.3, 0.9) for _ in range(60)])
    report = look(database, settings, "fraud", T0 + timedelta(minutes=61))
    assert report.status == "fresh", report.reason
    put(database, "fraud", version, first + 60, [traffic(rng, 0.36, 0.9) for _ in range(60)])
    report = look(database, settings, "fraud", T0 + timedelta(minutes=121))
    assert report.status == "drifting"
    alarms = {(c.check, c.against) for c in report.checks if c.state == "alarm"}
    assert ("class:a", "reference") in alarms and ("class:a", "baseline") in alarms
    assert "class:a vs reference" in report.reason
    (event,) = events(database, "champion.drifting")
    assert event["evidence"] and event["version"] == 1
    with database.session() as session:
        announced = [d.event for d in session.scalars(select(WebhookDelivery))]
        judged = session.scalar(
            select(ChampionObservation.block).order_by(ChampionObservation.block.desc()).limit(1)
        )
    assert announced == ["champion.drifting"]
    assert judged == first + 119
    # The detector re-armed; the status holds until acknowledged, then the watch goes on.
    put(database, "fraud", version, first + 120, [traffic(rng, 0.3, 0.9) for _ in range(10)])
    assert look(database, settings, "fraud", T0 + timedelta(minutes=131)).status == "drifting"
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == "fraud"))
        assert model is not None
        acknowledge(session, model, "oncall")
    put(database, "fraud", version, first + 130, [traffic(rng, 0.3, 0.9) for _ in range(30)])
    report = look(database, settings, "fraud", T0 + timedelta(minutes=161))
    assert report.status == "fresh"
    assert all(c.state == "ok" for c in report.checks)
    assert events(database, "champion.acknowledged")[0]["cleared"]
    assert len(events(database, "champion.fresh")) == 1  # the status change after the ack


def test_accuracy_decay_on_late_labels_is_decay_not_drift(
    database: Database, settings: ControllerSettings
) -> None:
    rng = np.random.default_rng(2)
    version = add(database, "credit", 1, reference_profile=PROFILE)
    with database.session() as session:
        aliases.set_alias(session, "credit", "champion", 1, "tester")
    look(database, settings, "credit", T0)
    blocks = [traffic(rng, 0.3, 0.84, n=1000) for _ in range(120)]
    put(database, "credit", version, block_at(T0), blocks)
    report = look(database, settings, "credit", T0 + timedelta(minutes=121))
    assert report.status == "decayed"
    assert any(c.check == "accuracy" and c.state == "alarm" for c in report.checks)
    # Acknowledged once the model is mended: no evidence of the decay is carried over, not
    # even the labels held for blocks whose late labels may still come.
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == "credit"))
        assert model is not None
        acknowledge(session, model, "oncall")
        watch = session.get(ChampionWatch, model.id)
        assert watch is not None and not watch.detectors["label_windows"]
    mended = [traffic(rng, 0.3, 0.9, n=1000) for _ in range(5)]
    put(database, "credit", version, block_at(T0) + 120, mended)
    report = look(database, settings, "credit", T0 + timedelta(minutes=126))
    assert report.status == "fresh", report.reason


def test_a_champion_past_its_shelf_life_is_stale(
    database: Database, settings: ControllerSettings
) -> None:
    add(database, "old", 1, data_window_end=T0 - timedelta(days=100))
    with database.session() as session:
        aliases.set_alias(session, "old", "champion", 1, "tester")
        model = session.scalar(select(Model).where(Model.name == "old"))
        assert model is not None
        with pytest.raises(InvalidInput, match="invalid duration"):
            set_policy(session, model, {"max_data_age": "ninety days"}, "tester")
    assert look(database, settings, "old", T0).status == "fresh"  # no shelf life set
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == "old"))
        assert model is not None
        set_policy(session, model, {"max_data_age": "90d"}, "tester")
    report = look(database, settings, "old", T0 + timedelta(minutes=1))
    assert report.status == "stale"
    assert report.stale_at == T0 - timedelta(days=10)
    assert "older than max_data_age 90d" in report.reason
    assert len(events(database, "champion.stale")) == 1


@pytest.mark.parametrize("on_decay", ["rollback", "alert"])
def test_decay_inside_the_bake_window_rolls_back_when_the_policy_says_so(
    database: Database, settings: ControllerSettings, on_decay: str
) -> None:
    rng = np.random.default_rng(3)
    add(database, "risk", 1, reference_profile=PROFILE)
    v2 = add(database, "risk", 2)
    with database.session() as session:
        aliases.set_alias(session, "risk", "champion", 1, "tester")
        model = session.scalar(select(Model).where(Model.name == "risk"))
        assert model is not None
        set_policy(session, model, {"on_decay": on_decay, "bake_window": "3h"}, "tester")
    look(database, settings, "risk", T0)
    with database.session() as session:
        aliases.set_alias(session, "risk", "champion", 2, "tester")
    look(database, settings, "risk", T0 + timedelta(minutes=1))  # v2's watch begins
    put(database, "risk", v2, block_at(T0) + 1, [traffic(rng, 0.3, 0.8, 1000) for _ in range(60)])
    report = look(database, settings, "risk", T0 + timedelta(minutes=62))
    assert any(c.against == "previous" and c.state == "alarm" for c in report.checks)
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == "risk"))
        assert model is not None
        champion = service.rollouts.champion_of(session, model)
        assert champion is not None
        watch = session.get(ChampionWatch, model.id)
        assert watch is not None and watch.previous_version_id is not None
    if on_decay == "rollback":
        assert champion.version == 1
        (event,) = events(database, "champion.bake_rollback")
        assert event["from_version"] == 2 and event["to_version"] == 1 and event["evidence"]
    else:
        assert champion.version == 2 and report.status == "decayed"
        assert events(database, "champion.bake_rollback") == []


def test_each_check_alarms_at_its_share_of_the_weekly_budget_and_old_states_upgrade(
    database: Database, settings: ControllerSettings
) -> None:
    """Half the budget for the reference's four checks, half reserved for the first period's;
    a state stored by the per-bet CUSUM detectors before is upgraded and the watch goes on."""
    rng = np.random.default_rng(4)
    version = add(database, "legacy", 1, reference_profile=PROFILE)
    with database.session() as session:
        aliases.set_alias(session, "legacy", "champion", 1, "tester")
    report = look(database, settings, "legacy", T0)
    blocks_per_week = 7 * 24 * 60
    for check in report.checks:
        assert check.threshold == pytest.approx(math.log(blocks_per_week * 8 / 0.01))
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == "legacy"))
        assert model is not None
        row = session.get(ChampionWatch, model.id)
        assert row is not None
        old = {k: v for k, v in row.detectors.items() if k not in ("weights", "shares", "log_r")}
        old["cusum"] = {k: [0.0] * len(r) for k, r in row.detectors["log_r"].items()}
        row.detectors = old
    put(database, "legacy", version, block_at(T0), [traffic(rng, 0.4, 0.9) for _ in range(20)])
    report = look(database, settings, "legacy", T0 + timedelta(minutes=21))
    assert report.status == "drifting"
    assert {c.check for c in report.checks if c.state == "alarm"} >= {"class:a", "class:b"}
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == "legacy"))
        assert model is not None
        row = session.get(ChampionWatch, model.id)
        assert row is not None
        assert "cusum" not in row.detectors
        assert sum(row.detectors["weights"].values()) == pytest.approx(0.5)
