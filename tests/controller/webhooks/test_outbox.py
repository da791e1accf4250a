"""Webhook deliveries reach a real HTTP receiver on loopback, signed, and are retried."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
from sqlalchemy import select

from controller.plans import RolloutPlan
from controller.rollouts import service
from controller.tables import Webhook, WebhookDelivery
from controller.webhooks.outbox import MAX_ATTEMPTS, deliver_due
from registry.db.base import utcnow
from registry.db.session import Database
from tests.controller.factories import model_with_versions
from tests.controller.webhooks.receiver import SECRET, Receiver, make_due


def test_signed_delivery_is_retried_with_backoff_until_it_lands(
    database: Database, receiver: Receiver
) -> None:
    model_with_versions(database)
    with database.session() as session:
        session.add(Webhook(model_id=None, url=receiver.url, secret=SECRET, created_by="ops"))
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, RolloutPlan(), "alice")

    receiver.fail_next = 1
    with httpx.Client() as client:
        with database.session() as session:
            assert deliver_due(session, client) == 0
        with database.session() as session:
            (delivery,) = session.scalars(select(WebhookDelivery))
            assert delivery.attempts == 1 and delivery.last_error == "HTTP 500"
            assert delivery.next_attempt_at > utcnow()  # backing off, not hammering
            assert deliver_due(session, client) == 0  # not due yet
        make_due(database)
        with database.session() as session:
            assert deliver_due(session, client) == 1

    ((headers, body),) = receiver.received
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Shelf-Signature"] == expected
    assert headers["X-Shelf-Event"] == "rollout.started"
    payload = json.loads(body)
    assert payload["model"] == "fraud" and payload["challenger_version"] == 2
    assert payload["actor"] == "alice"


def test_a_dead_receiver_is_given_up_on_after_max_attempts(database: Database) -> None:
    model_with_versions(database)
    with database.session() as session:
        session.add(
            Webhook(model_id=None, url="http://127.0.0.1:9/gone", secret=SECRET, created_by="o")
        )
    with database.session() as session:
        service.start_rollout(session, "fraud", 2, RolloutPlan(), "alice")
    with httpx.Client(timeout=2) as client:
        for _ in range(MAX_ATTEMPTS):
            make_due(database)
            with database.session() as session:
                deliver_due(session, client)
    with database.session() as session:
        (delivery,) = session.scalars(select(WebhookDelivery))
        assert delivery.failed and delivery.attempts == MAX_ATTEMPTS
        assert "ConnectError" in delivery.last_error
