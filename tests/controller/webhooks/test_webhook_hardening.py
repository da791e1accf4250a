"""Issue 10, findings 5, 6 and 12: webhook URLs are secrets, are validated when registered, go
only where the outbound policy allows, and one bad hook never makes another be sent twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from controller.plans import RolloutPlan
from controller.rollouts import service
from controller.tables import Webhook, WebhookDelivery
from controller.webhooks.outbox import deliver_due
from registry.config import Settings, TokenSpec
from registry.db.session import Database
from registry.outbound import OutboundPolicy
from shelf import migrate
from shelf.app import create_app
from tests.controller.factories import model_with_versions
from tests.controller.webhooks.receiver import SECRET, Receiver, make_due

TOKENS = {role: f"{role}-token-{'x' * 20}" for role in ("read", "admin")}


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


def test_the_audit_trail_shows_read_tokens_no_more_of_a_webhook_url_than_its_host(
    api: TestClient,
) -> None:
    url = "https://bot:hunter2@127.0.0.1:8443/services/T000/B000/s3cr3tpath?token=abc#frag"
    created = api.post("/v1/webhooks", json={"url": url}, headers=auth("admin"))
    assert created.status_code == 201, created.text
    events = api.get("/v1/events", params={"kind": "webhook.created"}, headers=auth("read"))
    assert events.status_code == 200
    (event,) = events.json()["items"]
    assert event["payload"]["url"] == "https://127.0.0.1:8443"
    for secret in ("hunter2", "bot:", "s3cr3tpath", "token=abc", "services"):
        assert secret not in events.text
    assert api.get("/v1/webhooks", headers=auth("read")).status_code == 403
    (listed,) = api.get("/v1/webhooks", headers=auth("admin")).json()
    assert listed["url"] == url  # admins still see what they registered


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook\r\nX-Injected: 1",
        "http://127.0.0.1:9/ho ok",
        "http://127.0.0.1:9/hook\t",
        "http://127.0.0.1:9/\x00",
        "http://127.0.0.1:99999/hook",
        "http:///no-host",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./x",
    ],
)
def test_unusable_or_forbidden_webhook_urls_are_refused_when_registered(
    api: TestClient, url: str
) -> None:
    response = api.post("/v1/webhooks", json={"url": url}, headers=auth("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
    assert api.get("/v1/webhooks", headers=auth("admin")).json() == []


def test_one_bad_webhook_neither_rolls_back_nor_duplicates_another_delivery(
    database: Database, receiver: Receiver
) -> None:
    """A hook stored before URLs were validated (CRLF in it) fails on its own; the good hook's
    delivery is sent exactly once however many rounds run."""
    model_with_versions(database)
    with database.session() as session:
        session.add(Webhook(model_id=None, url=receiver.url, secret=SECRET, created_by="ops"))
        session.add(
            Webhook(
                model_id=None,
                url="http://127.0.0.1:9/hook\r\nX-Evil: 1",
                secret=SECRET,
                created_by="ops",
            )
        )
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, RolloutPlan(), "alice")
    with httpx.Client(timeout=2) as client:
        for _ in range(5):
            make_due(database)
            with database.session() as session:
                deliver_due(session, client)
    assert len(receiver.received) == 1
    with database.session() as session:
        deliveries = {d.webhook_id: d for d in session.scalars(select(WebhookDelivery))}
        good, bad = deliveries[1], deliveries[2]
        assert good.delivered_at is not None and good.attempts == 1
        assert bad.delivered_at is None and bad.attempts == 5
        assert "InvalidURL" in bad.last_error


def test_the_policy_is_applied_again_when_sending_to_what_a_name_resolves_to(
    database: Database, receiver: Receiver
) -> None:
    """``localhost`` passes a deny list of networks by name; at sending time it resolves to
    loopback, which this policy denies, so nothing is sent."""
    model_with_versions(database)
    url = receiver.url.replace("127.0.0.1", "localhost")
    with database.session() as session:
        session.add(Webhook(model_id=None, url=url, secret=SECRET, created_by="ops"))
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, RolloutPlan(), "alice")
    strict = OutboundPolicy(deny=["127.0.0.0/8", "::1"])
    assert strict.allowed_host("localhost")
    with httpx.Client(timeout=2) as client, database.session() as session:
        assert deliver_due(session, client, outbound=strict) == 0
    assert receiver.received == []
    with database.session() as session:
        (delivery,) = session.scalars(select(WebhookDelivery))
        assert "OutboundDenied" in delivery.last_error
    make_due(database)
    with httpx.Client(timeout=2) as client, database.session() as session:
        assert deliver_due(session, client, outbound=OutboundPolicy()) == 1
    assert len(receiver.received) == 1
