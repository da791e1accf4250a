"""Starting and controlling rollouts through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from controller.config import ControllerSettings
from controller.plans import RolloutPlan
from controller.rollouts import service
from controller.tables import Rollout, Webhook, WebhookDelivery
from registry.db.session import Database
from registry.db.tables import AuditEvent
from registry.errors import Conflict, InvalidInput, NotFound
from registry.services.lookup import get_model
from tests.controller.factories import add_version, model_with_versions

PLAN = RolloutPlan(steps=(10, 100), min_samples=10, min_step_duration_s=0)


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()


def champion(database: Database, name: str = "fraud") -> int | None:
    with database.session() as session:
        version = service.champion_of(session, get_model(session, name))
        return version.version if version else None


def events(database: Database, prefix: str) -> list[AuditEvent]:
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [e for e in rows if e.kind.startswith(prefix)]


def test_start_needs_a_champion_a_ready_challenger_and_serving_urls(database: Database) -> None:
    model_with_versions(database, champion=None)
    with database.session() as session, pytest.raises(Conflict, match="no champion"):
        service.start_rollout(session, "fraud", 2, PLAN, "alice")
    model_with_versions(database, name="other")
    with database.session() as session:
        with pytest.raises(InvalidInput, match="already the champion"):
            service.start_rollout(session, "other", 1, PLAN, "alice")
        with pytest.raises(NotFound):
            service.start_rollout(session, "other", 9, PLAN, "alice")
        add_version(session, "other", b"no-url", None)
    with database.session() as session, pytest.raises(InvalidInput, match="serving URL"):
        service.start_rollout(session, "other", 4, PLAN, "alice")


def test_one_active_rollout_per_model(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, PLAN, "alice")
    with database.session() as session, pytest.raises(Conflict, match="already has an active"):
        service.start_rollout(session, "fraud", 3, PLAN, "bob")
    with database.session() as session:
        service.abort(session, "fraud", "alice")
    with database.session() as session:
        assert service.start_rollout(session, "fraud", 3, PLAN, "bob").state == "pending"


def test_the_database_enforces_one_active_rollout(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        first = service.start_rollout(session, "fraud", 2, PLAN, "alice")
        model_id, champion_id = first.model_id, first.champion_version_id
    with pytest.raises(Exception, match=r"(?i)unique"), database.session() as session:
        session.add(
            Rollout(
                model_id=model_id,
                active_model_id=model_id,
                champion_version_id=champion_id,
                challenger_version_id=champion_id,
                strategy="canary",
                plan={},
                created_by="x",
            )
        )
        session.flush()


def test_pause_resume_promote_and_audit(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, PLAN, "alice")
    with database.session() as session:
        assert service.pause(session, "fraud", "bob").state == "paused"
    with database.session() as session:
        assert service.resume(session, "fraud", "bob").state == "pending"
    with database.session() as session:
        promoted = service.promote(session, "fraud", "carol")
        assert promoted.state == "promoted" and promoted.active_model_id is None
    assert champion(database) == 2
    kinds = [(e.kind, e.actor) for e in events(database, "rollout.")]
    assert kinds == [
        ("rollout.started", "alice"),
        ("rollout.paused", "bob"),
        ("rollout.resumed", "bob"),
        ("rollout.promoted", "carol"),
    ]
    with database.session() as session, pytest.raises(NotFound):
        service.pause(session, "fraud", "bob")


def test_rollback_during_a_rollout_keeps_the_champion(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, PLAN, "alice")
    with database.session() as session:
        result = service.rollback(session, "fraud", "oncall")
    assert result["champion_version"] == 1 and result["ended_rollout_id"] is not None
    assert champion(database) == 1
    with database.session() as session:
        assert service.latest_rollout(session, get_model(session, "fraud")).state == "rolled_back"  # type: ignore[union-attr]
    assert events(database, "model.rolled_back")[0].actor == "oncall"


def test_rollback_after_promotion_returns_to_the_previous_champion(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, PLAN, "alice")
    with database.session() as session:
        service.promote(session, "fraud", "alice")
    assert champion(database) == 2
    with database.session() as session:
        result = service.rollback(session, "fraud", "oncall")
    assert result == {
        "model": "fraud",
        "champion_version": 1,
        "previous_champion_version": 2,
        "ended_rollout_id": None,
    }
    with database.session() as session:
        service.rollback(session, "fraud", "oncall", to_version=3)
    assert champion(database) == 3


def test_transitions_queue_webhooks_for_the_model_and_global_hooks(database: Database) -> None:
    model_with_versions(database)
    model_with_versions(database, name="other")
    with database.session() as session:
        fraud = get_model(session, "fraud")
        other = get_model(session, "other")
        session.add_all(
            [
                Webhook(
                    model_id=None, url="http://127.0.0.1:1/all", secret="s" * 16, created_by="t"
                ),
                Webhook(
                    model_id=other.id, url="http://127.0.0.1:1/o", secret="s" * 16, created_by="t"
                ),
            ]
        )
        assert fraud.id != other.id
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, PLAN, "alice")
    with database.session() as session:
        deliveries = list(session.scalars(select(WebhookDelivery)))
    assert [d.event for d in deliveries] == ["rollout.started"]
    assert deliveries[0].payload["model"] == "fraud"
    assert deliveries[0].payload["challenger_version"] == 2


def test_a_sampled_shadow_is_stored_announced_and_routed(database: Database) -> None:
    from controller.gateway.routing import load_routes

    model_with_versions(database)
    plan = RolloutPlan(strategy="shadow", steps=(), mirror_percent=25, shadow_min_samples=10)
    with database.session() as session:
        rollout = service.start_rollout(session, "fraud", 2, plan, "alice")
        assert rollout.mirror_bp == 2500
        assert service.desired_weights(session, rollout).mirror_percent == 25.0
    started = events(database, "rollout.")[-1]
    assert started.payload["mirror_percent"] == 25.0
    with database.session() as session:
        route = load_routes(session)["fraud"]
    assert route.mirror_bp == 2500 and route.to_json()["mirror_percent"] == 25.0
