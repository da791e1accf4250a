"""Once tokens are configured every request needs one, and writes need the role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.config import Settings, TokenSpec
from shelf import migrate
from shelf.app import create_app
from tests.registry.api_helpers import register, sha

TOKENS = {role: f"{role}-token-{'x' * 20}" for role in ("read", "publish", "deploy", "admin")}


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path,
        tokens=[TokenSpec(name=f"{r}-bot", role=r, token=t) for r, t in TOKENS.items()],  # type: ignore[arg-type]
    )
    migrate.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_request_needs_a_token(api: TestClient) -> None:
    response = api.get("/v1/models")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert api.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/v1/models", headers=auth("read")).status_code == 200
    assert api.get("/healthz").status_code == 200


def test_writes_need_their_role_and_the_audit_names_the_token(api: TestClient) -> None:
    data = b"weights"
    denied = api.put(f"/v1/blobs/{sha(data)}", content=data, headers=auth("read"))
    assert denied.status_code == 403 and "publish" in denied.json()["message"]
    register(api, "fraud", {"m": data}, headers=auth("publish"))
    alias = {"version": 1}
    assert (
        api.put(
            "/v1/models/fraud/aliases/champion", json=alias, headers=auth("publish")
        ).status_code
        == 403
    )
    assert (
        api.put("/v1/models/fraud/aliases/champion", json=alias, headers=auth("deploy")).status_code
        == 200
    )
    events = api.get("/v1/models/fraud/events", headers=auth("read")).json()["items"]
    assert [(e["kind"], e["actor"]) for e in events[:2]] == [
        ("alias.set", "deploy-bot"),
        ("version.registered", "publish-bot"),
    ]
