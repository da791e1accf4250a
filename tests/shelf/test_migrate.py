"""Migrations run up and down on SQLite and PostgreSQL, and match the ORM models exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import controller.tables  # noqa: F401
from registry.db.base import Base
from registry.db.session import make_engine
from shelf import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_to_head_and_downgrade_to_base(database_url: str) -> None:
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head_revision()
    assert _tables(database_url) == set(Base.metadata.tables)
    migrate.downgrade(database_url, "base")
    assert migrate.current(database_url) is None
    assert _tables(database_url) == set()
    migrate.upgrade(database_url)
    assert migrate.current(database_url) == migrate.head_revision()


def test_models_and_migrations_agree(database_url: str) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_observations_stored_as_summaries_become_reports_and_back(database_url: str) -> None:
    """Revision 0002 rewrites evidence that looks stored before it into the Report schema."""
    from sqlalchemy import text

    from controller.stats import Report

    migrate.upgrade(database_url, "0001")
    summary = {
        "error_rate": {
            "verdict": "harm",
            "p_value": 0.001,
            "ci_low": 0.01,
            "ci_high": 0.05,
            "effect": 0.03,
            "margin": 0.005,
        },
        "accuracy": {
            "verdict": "continue",
            "p_value": None,
            "ci_low": None,
            "ci_high": None,
            "effect": None,
            "margin": 0.01,
        },
    }
    engine = make_engine(database_url)
    now = "2026-11-28 10:00:00+00:00"
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO models (id, name, description, created_at, created_by, "
                    "next_version) VALUES (1, 'fraud', '', :now, 't', 3)"
                ),
                {"now": now},
            )
            for version in (1, 2):
                connection.execute(
                    text(
                        "INSERT INTO model_versions (id, model_id, version, status, description,"
                        " tags, manifest_digest, total_size, file_count, created_at, created_by)"
                        " VALUES (:v, 1, :v, 'ready', '', '{}', :d, 0, 0, :now, 't')"
                    ),
                    {"v": version, "d": "0" * 64, "now": now},
                )
            connection.execute(
                text(
                    "INSERT INTO rollouts (id, model_id, champion_version_id, "
                    "challenger_version_id, strategy, state, step_index, challenger_weight_bp, "
                    "mirror, plan, alpha, reason, revision, step_start_samples, created_at, "
                    "updated_at, created_by) VALUES (1, 1, 1, 2, 'canary', 'rolled_back', 0, 0,"
                    " false, '{}', 0.04, '', 1, 0, :now, :now, 't')"
                ),
                {"now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO rollout_observations (rollout_id, at, state, step_index, "
                    "challenger_weight_bp, champion_requests, challenger_requests, evidence) "
                    "VALUES (1, :now, 'canary', 0, 100, 900, 100, :evidence)"
                ),
                {"now": now, "evidence": json.dumps(summary)},
            )
        migrate.upgrade(database_url)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT evidence FROM rollout_observations")).scalar()
            mirror_bp = connection.execute(text("SELECT mirror_bp FROM rollouts")).scalar()
        assert mirror_bp == 10_000  # 0007: a rollout from before mirrored every request
        report = Report.model_validate(json.loads(stored) if isinstance(stored, str) else stored)
        assert report.verdict == "harm"
        harm = report.guardrail("error_rate")
        assert harm is not None and (harm.p_value, harm.effect, harm.n_champion) == (
            0.001,
            0.03,
            900,
        )
        assert harm.alpha == pytest.approx(0.02)
        accuracy = report.guardrail("accuracy")
        assert accuracy is not None and accuracy.worse == "lower"
        migrate.downgrade(database_url, "0001")
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT evidence FROM rollout_observations")).scalar()
        assert (json.loads(stored) if isinstance(stored, str) else stored) == summary
    finally:
        engine.dispose()


def test_existing_rollouts_list_their_one_challenger_after_0006(database_url: str) -> None:
    """Revision 0006 keeps existing rollouts as they were: their challenger becomes the first
    (and only) entry of ``challengers``, with its weight and an outcome-consistent status."""
    from sqlalchemy import text

    migrate.upgrade(database_url, "0005")
    engine = make_engine(database_url)
    now = "2026-11-28 10:00:00+00:00"
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO models (id, name, description, created_at, created_by, "
                    "next_version) VALUES (1, 'fraud', '', :now, 't', 3)"
                ),
                {"now": now},
            )
            for version in (1, 2):
                connection.execute(
                    text(
                        "INSERT INTO model_versions (id, model_id, version, status, description,"
                        " tags, manifest_digest, total_size, file_count, created_at, created_by)"
                        " VALUES (:v, 1, :v, 'ready', '', '{}', :d, 0, 0, :now, 't')"
                    ),
                    {"v": version, "d": "0" * 64, "now": now},
                )
            for rollout_id, state, weight in ((1, "promoted", 0), (2, "canary", 2500)):
                connection.execute(
                    text(
                        "INSERT INTO rollouts (id, model_id, champion_version_id, "
                        "challenger_version_id, strategy, state, step_index, "
                        "challenger_weight_bp, mirror, plan, alpha, reason, revision, "
                        "step_start_samples, created_at, updated_at, created_by) VALUES "
                        "(:id, 1, 1, 2, 'canary', :state, 1, :weight, false, '{}', 0.05, '', 1, "
                        ":start, :now, :now, 't')"
                    ),
                    {
                        "id": rollout_id,
                        "state": state,
                        "weight": weight,
                        "start": 700 * rollout_id,
                        "now": now,
                    },
                )
        migrate.upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT challengers FROM rollouts ORDER BY id")).all()
        listed = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
        assert listed == [
            [
                {
                    "arm": "challenger",
                    "version_id": 2,
                    "weight_bp": 0,
                    "status": "promoted",
                    "reason": "",
                    "step_start_samples": 700,
                }
            ],
            [
                {
                    "arm": "challenger",
                    "version_id": 2,
                    "weight_bp": 2500,
                    "status": "active",
                    "reason": "",
                    "step_start_samples": 1400,
                }
            ],
        ]
        with engine.begin() as connection:
            connection.execute(text("UPDATE rollouts SET state = 'paused_on_harm' WHERE id = 2"))
        migrate.downgrade(database_url, "0005")
        with engine.connect() as connection:
            state = connection.execute(
                text("SELECT state, resume_state FROM rollouts WHERE id = 2")
            )
            assert tuple(state.one()) == ("paused", "canary")
    finally:
        engine.dispose()
