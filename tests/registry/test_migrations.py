"""Migrations run up and down on SQLite and PostgreSQL, and match the ORM models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import controller.models  # noqa: F401
from registry.db import migrate
from registry.db.base import Base
from registry.db.session import make_engine


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
