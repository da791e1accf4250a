from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.config import ControllerSettings
from registry.db.session import Database
from tests.controller.webhooks.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def database(backend_settings: ControllerSettings) -> Iterator[Database]:
    db = Database(backend_settings.resolved_database_url)
    yield db
    db.dispose()
