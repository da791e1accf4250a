"""A real HTTP receiver on loopback for webhook deliveries, and a way to make them due now."""

from __future__ import annotations

from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import update

from controller.tables import WebhookDelivery
from registry.db.base import utcnow
from registry.db.session import Database

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


def make_due(database: Database) -> None:
    with database.session() as session:
        session.execute(
            update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
