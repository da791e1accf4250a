"""A/B/n and pause on harm through the rollouts service and the reconciler, on SQLite and
PostgreSQL: starting several challengers, dropping one, promoting the chosen one, pausing on
harm, resuming with fresh evidence, the review timeout, and what gateways route."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from controller.config import ControllerSettings
from controller.gateway.routing import load_routes
from controller.plans import RolloutPlan
from controller.reconciler.loop import Reconciler
from controller.rollouts import service
from controller.rollouts.arms import challengers_of
from controller.stats.sufficient import ArmStats
from controller.tables import ArmStatsDelta, Rollout, RolloutStratum, Webhook, WebhookDelivery
from registry.db.base import utcnow
from registry.db.session import Database
from registry.db.tables import AuditEvent
from registry.errors import InvalidInput
from registry.services.lookup import get_model
from tests.controller.factories import model_with_versions

PLAN = RolloutPlan(
    steps=(10, 50), min_samples=50, min_step_duration_s=0, guardrails=("error_rate",)
)


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()


@pytest.fixture
def reconciler(backend_settings: ControllerSettings, database: Database) -> Iterator[Reconciler]:
    loop = Reconciler(backend_settings, database)
    yield loop
    loop.close()


def events(database: Database, kind: str) -> list[AuditEvent]:
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.kind == kind))
        return list(rows)


def traffic(database: Database, rollout_id: int, seq: int, **errors_by_arm: int) -> None:
    """300 requests per arm in the rollout's current step, ``errors_by_arm`` of them failed."""
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        versions = {a.arm: a.version_id for a in challengers_of(rollout)}
        versions["champion"] = rollout.champion_version_id
        for offset, (arm, version_id) in enumerate(sorted(versions.items())):
            stats = ArmStats()
            failed = errors_by_arm.get(arm.replace("-", "_"), 0)
            for i in range(300):
                stats.record_response("5xx" if i < failed else "2xx", 0.01)
            session.add(
                ArmStatsDelta(
                    rollout_id=rollout_id,
                    model_id=rollout.model_id,
                    version_id=version_id,
                    arm=arm,
                    replica_id="test",
                    seq=seq * 10 + offset,
                    stats=stats.to_json(),
                    stratum_step=rollout.step_index,
                    stratum_block=0,
                )
            )


def rollout_of(database: Database, rollout_id: int) -> Rollout:
    with database.session() as session:
        row = session.get(Rollout, rollout_id)
        assert row is not None
        session.expunge(row)
        return row


def test_start_refuses_too_many_repeated_or_champion_challengers(database: Database) -> None:
    model_with_versions(database, count=6)
    with database.session() as session:
        for versions, message in [
            ([2, 3, 4, 5, 6], "at most 4"),
            ([2, 3, 2], "repeated: 2"),
            ([2, 1], "already the champion"),
            ([], "at least one"),
        ]:
            with pytest.raises(InvalidInput, match=message):
                service.start_rollout(session, "fraud", versions, PLAN, "alice")
        with pytest.raises(InvalidInput, match="canary strategy"):
            service.start_rollout(session, "fraud", [2, 3], RolloutPlan(strategy="shadow"), "a")
        started = service.start_rollout(session, "fraud", [2, 3, 4], PLAN, "alice")
        assert [a.arm for a in challengers_of(started)] == [
            "challenger",
            "challenger-2",
            "challenger-3",
        ]


def test_a_harmful_challenger_is_dropped_and_the_best_of_the_rest_promoted(
    database: Database, reconciler: Reconciler
) -> None:
    model_with_versions(database, count=4)
    # Within 5 points is non-inferior: v2 (1 % errors) and v4 (none) both qualify, v4 is best.
    plan = RolloutPlan(
        **{
            **PLAN.to_json(),
            "guardrail_options": {"error_rate": {"margin": 0.05, "tolerance": 0.05}},
        }
    )
    with database.session() as session:
        rollout_id = service.start_rollout(session, "fraud", [2, 3, 4], plan, "alice").id
    reconciler.reconcile(rollout_id)  # pending -> step 1: 10 % each
    assert [a.weight_bp for a in challengers_of(rollout_of(database, rollout_id))] == [1000] * 3
    with database.session() as session:
        routes = load_routes(session)["fraud"]
    assert [(a.name, a.index, a.weight_bp, a.bucket_start) for a in routes.challengers] == [
        ("challenger", 1, 1000, 0),
        ("challenger-2", 2, 1000, 3333),
        ("challenger-3", 3, 1000, 6666),
    ]
    traffic(database, rollout_id, 1, challenger_2=90)  # v3 fails 30 % of its requests
    reconciler.reconcile(rollout_id)
    row = rollout_of(database, rollout_id)
    assert row.state == "canary"
    status = {a.arm: (a.status, a.weight_bp) for a in challengers_of(row)}
    assert status["challenger-2"] == ("dropped", 0)
    dropped = events(database, "rollout.challenger_dropped")
    assert dropped and dropped[0].payload["dropped"] == ["challenger-2"]
    assert dropped[0].payload["evidence"]["verdict"] == "harm"
    with database.session() as session:
        routes = load_routes(session)["fraud"]
    assert [a.weight_bp for a in routes.challengers] == [1000, 0, 1000]
    # The rest advance (to 25 %: the cap for three challengers) and, once non-inferior,
    # the one with the lower error rate is promoted.
    for look in range(2, 40):
        row = rollout_of(database, rollout_id)
        if row.state != "canary":
            break
        traffic(database, rollout_id, look, challenger=3)
        reconciler.reconcile(rollout_id)
    row = rollout_of(database, rollout_id)
    assert row.state == "promoted", row.reason
    assert "best by error_rate: challenger-3 (v4)" in row.reason
    with database.session() as session:
        champion = service.champion_of(session, get_model(session, "fraud"))
        assert champion is not None and champion.version == 4
    promoted = events(database, "rollout.promoted")[0].payload
    assert promoted["winner"] == "challenger-3" and promoted["primary_metric"] == "error_rate"
    assert set(promoted["candidates"]) == {"challenger", "challenger-2", "challenger-3"}
    final = {a.arm: a.status for a in challengers_of(rollout_of(database, rollout_id))}
    assert final == {
        "challenger": "dropped",  # in play, non-inferior, not the best
        "challenger-2": "dropped",
        "challenger-3": "promoted",
    }
    steps = events(database, "rollout.canary")
    assert steps[-1].payload["challengers"][0]["weight_bp"] == 2500


def test_pause_on_harm_waits_for_review_then_resumes_with_fresh_evidence(
    database: Database, reconciler: Reconciler
) -> None:
    model_with_versions(database)
    pausing = RolloutPlan(
        steps=(10, 50), min_samples=50, min_step_duration_s=0, guardrails=("error_rate",),
        on_harm="pause",
    )  # fmt: skip
    with database.session() as session:
        session.add(
            Webhook(model_id=None, url="http://127.0.0.1:1/hook", secret="s" * 16, created_by="t")
        )
        rollout_id = service.start_rollout(session, "fraud", 2, pausing, "alice").id
    reconciler.reconcile(rollout_id)
    traffic(database, rollout_id, 1, challenger=90)
    reconciler.reconcile(rollout_id)
    row = rollout_of(database, rollout_id)
    assert (row.state, row.challenger_weight_bp, row.resume_state) == (
        "paused_on_harm",
        0,
        "canary",
    )
    assert row.harm_paused_at is not None and "error_rate" in row.reason
    assert challengers_of(row)[0].status == "suspended"
    with database.session() as session:
        announced = session.scalars(select(WebhookDelivery.event)).all()
        assert "rollout.paused_on_harm" in announced
        assert load_routes(session)["fraud"].weight_bp == 0  # users are protected at once
    paused = events(database, "rollout.paused_on_harm")[0].payload
    assert paused["evidence"]["verdict"] == "harm" and paused["suspended"] == ["challenger"]
    reconciler.reconcile(rollout_id)  # held: no second pause, no rollback
    assert rollout_of(database, rollout_id).state == "paused_on_harm"
    with database.session() as session:
        service.resume(session, "fraud", "bob")
    row = rollout_of(database, rollout_id)
    assert (row.state, row.challenger_weight_bp, row.harm_paused_at) == ("canary", 1000, None)
    with database.session() as session:
        strata = session.scalar(
            select(func.count())
            .select_from(RolloutStratum)
            .where(RolloutStratum.rollout_id == rollout_id)
        )
    assert strata == 0 and row.observed is None  # the harmful data no longer counts
    reconciler.reconcile(rollout_id)
    assert rollout_of(database, rollout_id).state == "canary"  # fresh evidence: no harm yet
    resumed = events(database, "rollout.resumed")[0]
    assert "fresh" in resumed.payload["reason"] and resumed.actor == "bob"


def test_a_pause_on_harm_nobody_reviews_rolls_back(
    database: Database, reconciler: Reconciler
) -> None:
    model_with_versions(database)
    pausing = RolloutPlan(
        steps=(10, 50), min_samples=50, min_step_duration_s=0, guardrails=("error_rate",),
        on_harm="pause", review_timeout_s=60,
    )  # fmt: skip
    with database.session() as session:
        rollout_id = service.start_rollout(session, "fraud", 2, pausing, "alice").id
    reconciler.reconcile(rollout_id)
    traffic(database, rollout_id, 1, challenger=90)
    reconciler.reconcile(rollout_id)
    assert rollout_of(database, rollout_id).state == "paused_on_harm"
    reconciler.clock = lambda: utcnow() + timedelta(seconds=61)
    reconciler.reconcile(rollout_id)
    row = rollout_of(database, rollout_id)
    assert row.state == "rolled_back" and "no review within 60s" in row.reason
    assert events(database, "rollout.rolled_back")[0].actor == "reconciler"


def test_manual_rollback_ends_a_rollout_paused_on_harm(
    database: Database, reconciler: Reconciler
) -> None:
    model_with_versions(database)
    with database.session() as session:
        rollout_id = service.start_rollout(
            session, "fraud", [2, 3], RolloutPlan(**{**PLAN.to_json(), "on_harm": "pause"}), "a"
        ).id
    reconciler.reconcile(rollout_id)
    traffic(database, rollout_id, 1, challenger_2=90)
    reconciler.reconcile(rollout_id)
    row = rollout_of(database, rollout_id)
    # A/B/n with pause: the harmful challenger at 0, the other held at its weight.
    assert row.state == "paused_on_harm"
    assert [(a.status, a.weight_bp) for a in challengers_of(row)] == [
        ("active", 1000),
        ("suspended", 0),
    ]
    with database.session() as session:
        service.rollback(session, "fraud", "carol")
    row = rollout_of(database, rollout_id)
    assert row.state == "rolled_back" and row.challenger_weight_bp == 0
    assert all(a.weight_bp == 0 for a in challengers_of(row))
