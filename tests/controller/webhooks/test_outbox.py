"""Webhook deliveries reach a real HTTP receiver on loopback, signed, and are retried."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select, update

from controller.config import ControllerSettings
from controller.plans import RolloutPlan
from controller.rollouts import service
from controller.tables import Webhook, WebhookDelivery
from controller.webhooks.outbox import MAX_ATTEMPTS, deliver_due
from registry.db.base import utcnow
from registry.db.session import Database
from tests.controller.factories import model_with_versions

SECRET = "webhook-secret-0123456789"


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if self.server.fail_next > 0 else 204
        self.server.fail_next -= 1
        if status == 204:
            self.server.received.append((dict(self.headers), body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


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


def _make_due(database: Database) -> None:
    with database.session() as session:
        session.execute(
            update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


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
        _make_due(database)
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
            _make_due(database)
            with database.session() as session:
                deliver_due(session, client)
    with database.session() as session:
        (delivery,) = session.scalars(select(WebhookDelivery))
        assert delivery.failed and delivery.attempts == MAX_ATTEMPTS
        assert "ConnectError" in delivery.last_error
