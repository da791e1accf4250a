from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.config import ControllerSettings
from registry.db.session import Database


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()
