"""A version promoted without a reference profile gets one from its own rollout statistics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.config import ControllerSettings
from controller.rollouts import service
from controller.stats.sufficient import ArmStats
from controller.tables import Rollout
from controller.watch.capture import profile_from_stats
from registry.db.session import Database
from registry.db.tables import ModelVersion
from registry.profiles import parse_profile
from tests.controller.gateway.harness import register, start_rollout


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()


def arm(requests: int) -> ArmStats:
    stats = ArmStats()
    for i in range(requests):
        if i % 50 == 0:
            stats.record_response("5xx", None)
        else:
            stats.record_response("2xx", 0.02, "fraud" if i % 4 == 0 else "ok", 0.9)
    for i in range(100):
        stats.record_label(i % 10 != 0)
    return stats


def test_profile_from_statistics_is_a_valid_profile() -> None:
    assert profile_from_stats(arm(50)) is None  # too little to say anything
    profile = profile_from_stats(arm(1000))
    assert profile is not None and parse_profile(profile) == profile
    assert profile["source"] == "rollout"
    assert profile["class_frequencies"]["fraud"] == pytest.approx(240 / 980)
    assert profile["accuracy"] == pytest.approx(0.9)
    assert profile["error_rate"] == pytest.approx(0.02)


def test_promotion_captures_the_challengers_profile_when_it_has_none(database: Database) -> None:
    champion, challenger = register(database, "cap", "http://127.0.0.1:9", "http://127.0.0.1:8")
    rollout_id = start_rollout(database, "cap", champion, challenger, weight_bp=5000)
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        rollout.observed = {
            "arms": {"champion": arm(1000).to_json(), "challenger": arm(800).to_json()}
        }
    with database.session() as session:
        service.promote(session, "cap", "tester")
    with database.session() as session:
        version = session.get(ModelVersion, challenger)
        assert version is not None and version.reference_profile is not None
        assert version.reference_profile["samples"] == 800
        assert version.reference_profile["source"] == "rollout"
