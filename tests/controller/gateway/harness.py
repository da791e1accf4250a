"""Real servers on loopback ports for the gateway tests: uvicorn in threads, each with its own
event loop, so a test can start a few model servers and a gateway in well under a second."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select

from controller.config import ControllerSettings
from controller.gateway.app import GatewayApp, create_gateway_app
from controller.gateway.server import GatewayServer, ServerLimits
from controller.reconciler.totals import ArmTotals, consume_deltas
from controller.rollouts.transitions import notify_gateways
from controller.tables import Rollout
from registry.db.base import utcnow
from registry.db.session import Database
from registry.db.tables import Model, ModelVersion
from registry.services import aliases
from shelf.demo.model_server import ModelServer, ServerConfig
from tests.conftest import free_port
from tests.controller.factories import add_version


class ServerThread:
    def __init__(self, app: Any, port: int | None = None, http: Any = "httptools") -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            http=http,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextmanager
def model_server(**config: Any) -> Iterator[ServerThread]:
    config.setdefault("latency_ms", 0.0)
    config.setdefault("seed", 7)
    server = ServerThread(ModelServer(ServerConfig(**config))).start()
    try:
        yield server
    finally:
        server.stop()


class GatewayServerThread:
    """The gateway's own server (as ``shelf gateway`` runs it) in a thread with its own loop."""

    def __init__(self, app: GatewayApp, limits: ServerLimits | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = GatewayServer(app, "127.0.0.1", self.port, limits or ServerLimits())
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def start(self) -> GatewayServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Gateway:
    app: GatewayApp
    server: GatewayServerThread

    @property
    def url(self) -> str:
        return self.server.url

    def routes(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/v1/routes").json()["models"]
        return result

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> float:
        """Seconds until ``predicate(routes)`` held."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate(self.routes()):
                return time.monotonic() - start
            time.sleep(0.01)
        raise AssertionError(f"routing table never matched: {self.routes()}")


def gateway_settings(settings: ControllerSettings, **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {
        "secret_key": "test-secret-key-0123456789",
        "gateway_flush_interval_s": 0.2,
        "gateway_refresh_interval_s": 0.25,
        "replica_id": "test-replica",
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@contextmanager
def running_gateway(settings: ControllerSettings, database: Database) -> Iterator[Gateway]:
    app = create_gateway_app(settings, database)
    assert isinstance(app, GatewayApp)
    server = GatewayServerThread(app).start()
    try:
        yield Gateway(app, server)
    finally:
        server.stop()


def register(database: Database, name: str, *urls: str, champion: int | None = 1) -> list[int]:
    """Versions 1..n of ``name`` serving at ``urls``; returns their ids."""
    with database.session() as session:
        for i, url in enumerate(urls):
            add_version(session, name, f"{name}-{i}-{url}".encode(), url)
        if champion is not None:
            aliases.set_alias(session, name, "champion", champion, "tester")
        model = session.scalar(select(Model).where(Model.name == name))
        assert model is not None
        rows = session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id).order_by("version")
        )
        return [row.id for row in rows]


def start_rollout(
    database: Database,
    name: str,
    champion_id: int,
    challenger_id: int,
    weight_bp: int,
    mirror: bool = False,
    strategy: str = "canary",
    mirror_bp: int = 10_000,
) -> int:
    with database.session() as session:
        model = session.scalar(select(Model).where(Model.name == name))
        assert model is not None
        now = utcnow()
        rollout = Rollout(
            model_id=model.id,
            active_model_id=model.id,
            champion_version_id=champion_id,
            challenger_version_id=challenger_id,
            strategy=strategy,
            state="shadowing" if mirror else "canary",
            challenger_weight_bp=weight_bp,
            mirror=mirror,
            mirror_bp=mirror_bp,
            plan={},
            step_started_at=now,
            created_at=now,
            updated_at=now,
            created_by="tester",
        )
        session.add(rollout)
        session.flush()
        notify_gateways(session, name)
        return rollout.id


def set_weight(database: Database, rollout_id: int, weight_bp: int, notify: bool = True) -> None:
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        rollout.challenger_weight_bp = weight_bp
        if notify:
            model = session.get(Model, rollout.model_id)
            assert model is not None
            notify_gateways(session, model.name)


def consume(database: Database, rollout_id: int) -> tuple[ArmTotals, int]:
    """What the reconciler would see now (and it consumes the deltas, as the reconciler does)."""
    with database.session() as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        totals, merged = consume_deltas(session, rollout)
        rollout.observed = {"arms": totals.to_json()}
        return totals, merged


def wait_for_totals(
    database: Database, rollout_id: int, done: Any, timeout: float = 5.0
) -> ArmTotals:
    """Consume deltas until ``done(totals)``; the totals accumulate in the rollout row."""
    deadline = time.monotonic() + timeout
    while True:
        totals, _ = consume(database, rollout_id)
        if done(totals):
            return totals
        if time.monotonic() > deadline:
            raise AssertionError(f"statistics never arrived: {totals}")
        time.sleep(0.1)


async def fire(
    url: str,
    count: int,
    concurrency: int = 4,
    make: Any = None,
) -> list[httpx.Response]:
    """``count`` requests, ``concurrency`` at a time; ``make(i)`` gives (method, path, kwargs)."""
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(i: int) -> httpx.Response:
            method, path, kwargs = make(i)
            async with semaphore:
                return await client.request(method, path, **kwargs)

        return await asyncio.gather(*(one(i) for i in range(count)))


def infer_body(x0: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [x0, 0.5]}]}
