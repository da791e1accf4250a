"""The routing poll's change check on SQLite: a poll with nothing committed since the last load
skips the load, and any commit (this process or another) is loaded by the next poll."""

from __future__ import annotations

import asyncio

from controller.config import ControllerSettings
from controller.gateway.routing import RoutingTableSource, SqliteChanges
from registry.db.session import Database
from registry.services import aliases
from tests.controller.factories import model_with_versions


def test_polls_load_only_after_a_commit(backend_settings: ControllerSettings) -> None:
    database = Database(backend_settings.resolved_database_url)
    writer = Database(backend_settings.resolved_database_url)  # another connection pool
    model_with_versions(database, "fraud", count=2, champion=1)
    source = RoutingTableSource(database, 0.25)

    async def scenario() -> None:
        assert await source.refresh()
        assert source.table["fraud"].champion.version == 1
        loads = source.loads
        for _ in range(3):
            assert await source.refresh()
        if database.is_sqlite:
            assert source.loads == loads  # nothing committed: no load
        else:
            assert source.loads == loads + 3  # PostgreSQL loads on every poll
        with writer.session() as session:
            aliases.set_alias(session, "fraud", "champion", 2, "tester")
        assert await source.refresh()
        assert source.table["fraud"].champion.version == 2
        assert await source.refresh()
        assert source.table["fraud"].champion.version == 2

    try:
        asyncio.run(scenario())
    finally:
        source.close()
        writer.dispose()
        database.dispose()


def test_only_sqlite_files_are_watched(backend_settings: ControllerSettings) -> None:
    database = Database(backend_settings.resolved_database_url)
    memory = Database("sqlite://")
    try:
        watched = SqliteChanges.of(database)
        assert (watched is not None) == database.is_sqlite
        if watched is not None:
            watched.close()
        assert SqliteChanges.of(memory) is None
    finally:
        memory.dispose()
        database.dispose()
