from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry.config import Settings
from registry.db.session import Database


@pytest.fixture
def database(backend_settings: Settings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()
