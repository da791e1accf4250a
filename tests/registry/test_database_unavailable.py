"""An unreachable database is a 503 with a clear body, not a 500 (issue 10, requirement 4)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from registry.config import Settings
from shelf.app import create_app
from tests.conftest import free_port


def test_the_api_answers_503_while_the_database_cannot_be_reached(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/shelf"
    with TestClient(create_app(Settings(home=tmp_path, database_url=nowhere))) as api:
        for method, path in (("GET", "/v1/models"), ("GET", "/v1/events")):
            response = api.request(method, path)
            assert response.status_code == 503, response.text
            assert response.json() == {
                "error": "database_unavailable",
                "message": "the metadata database is unreachable; retry shortly",
                "detail": {"retry_after_s": 5},
            }
            assert response.headers["retry-after"] == "5"
