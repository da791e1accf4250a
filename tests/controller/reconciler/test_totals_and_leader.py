"""Delta consumption never loses or double-counts; exactly one reconciler holds the lock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from controller.config import ControllerSettings
from controller.plans import RolloutPlan
from controller.reconciler.judge import judge
from controller.reconciler.leader import LeaderLock
from controller.reconciler.loop import observed_json
from controller.reconciler.totals import ArmTotals, consume_deltas
from controller.rollouts import service
from controller.stats.sufficient import ArmStats
from controller.tables import ArmStatsDelta, Rollout, RolloutStratum
from registry.db.base import utcnow
from registry.db.session import Database
from tests.controller.factories import model_with_versions


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()


def add_delta(
    database: Database,
    rollout_id: int,
    arm: str,
    replica: str,
    seq: int,
    requests: int,
    errors: int,
    stratum: tuple[int, int] = (0, 0),
) -> None:
    stats = ArmStats()
    for i in range(requests):
        stats.record_response("5xx" if i < errors else "2xx", 0.01)
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        session.add(
            ArmStatsDelta(
                rollout_id=rollout_id,
                model_id=rollout.model_id,
                version_id=rollout.challenger_version_id,
                arm=arm,
                replica_id=replica,
                seq=seq,
                stats=stats.to_json(),
                stratum_step=stratum[0],
                stratum_block=stratum[1],
            )
        )


def test_deltas_are_merged_once_and_totals_survive_restarts(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        rollout_id = service.start_rollout(session, "fraud", 2, RolloutPlan(), "t").id
    add_delta(database, rollout_id, "champion", "g1", 1, 100, 1)
    add_delta(database, rollout_id, "challenger", "g1", 2, 10, 2)
    add_delta(database, rollout_id, "challenger", "g2", 1, 20, 0)
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        totals, merged = consume_deltas(session, rollout)
        rollout.observed = {"arms": totals.to_json()}
    assert merged == 3
    assert (totals.champion.requests, totals.challenger.requests) == (100, 30)
    add_delta(database, rollout_id, "challenger", "g1", 3, 5, 5)
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        totals, merged = consume_deltas(session, rollout)
        remaining = session.scalar(select(func.count()).select_from(ArmStatsDelta))
    assert merged == 1 and remaining == 0
    assert (totals.challenger.requests, totals.challenger.errors) == (35, 7)


def test_totals_are_kept_per_stratum_and_warm_ups_are_shown_not_judged(
    database: Database,
) -> None:
    model_with_versions(database)
    with database.session() as session:
        rollout_id = service.start_rollout(session, "fraud", 2, RolloutPlan(), "t").id
    add_delta(database, rollout_id, "champion", "g1", 1, 50, 0, stratum=(0, -1))  # warm-up
    add_delta(database, rollout_id, "challenger", "g1", 2, 10, 10, stratum=(0, -1))
    add_delta(database, rollout_id, "champion", "g1", 3, 90, 1, stratum=(0, 0))
    add_delta(database, rollout_id, "challenger", "g1", 4, 10, 0, stratum=(0, 0))
    add_delta(database, rollout_id, "champion", "g2", 1, 50, 1, stratum=(1, 0))
    add_delta(database, rollout_id, "challenger", "g2", 2, 50, 1, stratum=(1, 0))
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        totals, _ = consume_deltas(session, rollout)
        rollout.observed = observed_json(totals, judge(RolloutPlan(), totals), utcnow())
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        again = ArmTotals.load(session, rollout)  # a restarted reconciler reads them back
    strata, labels = again.judged()
    assert labels == ["step 1, block 1", "step 2, block 1"]
    assert [(a.requests, b.requests) for a, b in strata] == [(90, 10), (50, 50)]
    assert (again.champion.requests, again.challenger.requests) == (190, 70)  # shown: all


def test_a_retried_flush_cannot_be_counted_twice(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        rollout_id = service.start_rollout(session, "fraud", 2, RolloutPlan(), "t").id
    add_delta(database, rollout_id, "champion", "g1", 7, 1, 0)
    with pytest.raises(Exception, match=r"(?i)unique"):
        add_delta(database, rollout_id, "champion", "g1", 7, 1, 0)


def test_sqlite_leader_is_a_file_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    first, second = LeaderLock(db.engine, tmp_path), LeaderLock(db.engine, tmp_path)
    assert first.try_acquire() and first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_postgres_leader_is_an_advisory_lock_released_when_the_leader_dies(
    postgres_url: str,
) -> None:
    first_db, second_db = Database(postgres_url), Database(postgres_url)
    first, second = (
        LeaderLock(first_db.engine, Path("/tmp")),
        LeaderLock(second_db.engine, Path("/tmp")),
    )
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        # The leader's session dies (as when its process is killed): the standby takes over.
        with second_db.engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            )
            conn.commit()
        assert not first.try_acquire()  # notices it lost the lock and steps down
        assert second.try_acquire()
    finally:
        first.release()
        second.release()
        first_db.dispose()
        second_db.dispose()


def test_a_rollout_pooled_before_strata_continues_as_one_stratum(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        rollout_id = service.start_rollout(session, "fraud", 2, RolloutPlan(), "t").id
    old = ArmTotals({(0, 0): (ArmStats(requests=40), ArmStats(requests=4))})
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        rollout.observed = {"arms": old.to_json()}  # what a look before strata stored
    add_delta(database, rollout_id, "challenger", "g1", 1, 6, 0, stratum=(0, 3))
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        totals, merged = consume_deltas(session, rollout)
        stored = session.scalar(select(func.count()).select_from(RolloutStratum))
    assert merged == 1 and stored == 4  # two strata, two arms each
    assert (totals.champion.requests, totals.challenger.requests) == (40, 10)
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        again, _ = consume_deltas(session, rollout)  # nothing new: same totals, nothing added
    assert sorted(again.strata) == [(0, 0), (0, 3)] and again.challenger.requests == 10
