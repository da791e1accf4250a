"""The start endpoint takes one challenger (``challenger``, as old clients send) or a list
(``challengers``), and bad lists get a clear 4xx body, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.config import Settings
from registry.db.session import Database
from shelf import migrate
from shelf.app import create_app
from tests.controller.factories import model_with_versions


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path)
    migrate.upgrade(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    model_with_versions(database, count=4)
    database.dispose()
    with TestClient(create_app(settings)) as client:
        yield client


def test_one_or_several_challengers_and_clear_errors(api: TestClient) -> None:
    url = "/v1/models/fraud/rollouts"
    for body, status, words in [
        ({}, 422, "exactly one"),
        ({"challenger": 2, "challengers": [3]}, 422, "exactly one"),
        ({"challengers": [2, 3, 2]}, 422, "repeated: 2"),
        ({"challengers": [2, 1]}, 422, "already the champion"),
        ({"challengers": [2, 3], "strategy": "shadow"}, 422, "canary strategy"),
        ({"challengers": [2, 3], "on_harm": "shrug"}, 422, "on_harm"),
        ({"challengers": [2, 3], "primary_metric": "accuracy"}, 422, "not one of the guardrails"),
    ]:
        refused = api.post(url, json=body)
        assert refused.status_code == status, (body, refused.text)
        assert {"error", "message"} <= set(refused.json()) and words in refused.text
    single = api.post(url, json={"challenger": 2, "on_harm": "pause", "review_timeout_s": 90})
    assert single.status_code == 201, single.text
    created = single.json()
    assert created["challenger_version"] == 2 and created["on_harm"] == "pause"
    assert [c["arm"] for c in created["challengers"]] == ["challenger"]
    assert created["plan"]["review_timeout_s"] == 90
    assert api.post("/v1/models/fraud/rollout/abort").status_code == 200
    several = api.post(url, json={"challengers": [2, 3, 4], "primary_metric": "latency"})
    assert several.status_code == 201, several.text
    listed = several.json()["challengers"]
    assert [(c["arm"], c["version"], c["status"]) for c in listed] == [
        ("challenger", 2, "active"),
        ("challenger-2", 3, "active"),
        ("challenger-3", 4, "active"),
    ]
    assert set(several.json()["arms"]) == {"champion", "challenger", "challenger-2", "challenger-3"}


def test_a_person_promotes_the_challenger_they_choose(api: TestClient) -> None:
    started = api.post("/v1/models/fraud/rollouts", json={"challengers": [2, 3]})
    assert started.status_code == 201, started.text
    wrong = api.post("/v1/models/fraud/rollout/promote", params={"version": 4})
    assert wrong.status_code == 422 and "in play: 2, 3" in wrong.json()["message"]
    chosen = api.post("/v1/models/fraud/rollout/promote", params={"version": 3})
    assert chosen.status_code == 200, chosen.text
    body = chosen.json()
    assert body["state"] == "promoted" and body["challenger_version"] == 3
    assert [c["status"] for c in body["challengers"]] == ["dropped", "promoted"]
    champion = api.get("/v1/models/fraud/versions/3").json()
    assert "champion" in champion["aliases"]
