"""The routing table: per model name, which version(s) answer and how traffic is split.

Loaded from the database on a worker thread every ``gateway_refresh_interval_s`` and at once
when PostgreSQL announces a change on ``shelf_routing`` (``LISTEN``, reconnecting on failure),
then swapped in as a new dict that is never mutated, so the hot path reads it without locks and
never touches the database. An active rollout defines the arms (the champion and one or
several challengers, each with its weight and bucket range, docs/gateway.md); without one the
``champion`` alias answers, and without a champion alias the latest ready version that has a
serving URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from controller.gateway.recorder import ArmKey
from controller.gateway.route import Route, RouteArm
from controller.gateway.split import slot_start
from controller.strata import StratumClock, stratum_clock
from controller.tables import Rollout
from controller.vocabulary import (
    ACTIVE_STATES,
    ROUTING_CHANNEL,
    Arm,
)
from registry.db.session import Database
from registry.db.tables import Alias, Model, ModelVersion

log = logging.getLogger(__name__)


RoutingTable = Mapping[str, Route]


def _arm(
    name: str,
    version: tuple[int, int, str],
    version_id: int,
    stats: ArmKey | None,
    index: int = 0,
    weight_bp: int = 0,
    bucket_start: int = 0,
) -> RouteArm:
    number, _model_id, url = version
    label = str(number)
    return RouteArm(
        name,
        index,
        version_id,
        number,
        url.rstrip("/"),
        stats,
        label,
        label.encode(),
        weight_bp,
        bucket_start,
    )


def _challengers(row: Any, versions: dict[int, tuple[int, int, str]]) -> tuple[RouteArm, ...]:
    """The rollout's challengers that can be served, each with its weight and bucket range
    (a rollout stored before A/B/n has its one challenger in the columns)."""
    listed = row.challengers or [
        {
            "arm": Arm.challenger.value,
            "version_id": row.challenger_version_id,
            "weight_bp": row.challenger_weight_bp,
        }
    ]
    arms = []
    for position, item in enumerate(listed):
        version = versions.get(item["version_id"])
        if version is None:
            continue
        start = slot_start(position, len(listed))
        width = slot_start(position + 1, len(listed)) - start  # ranges never overlap
        weight = max(0, min(width, int(item.get("weight_bp") or 0)))
        key = (row.id, row.model_id, item["version_id"], item["arm"])
        arms.append(
            _arm(item["arm"], version, item["version_id"], key, position + 1, weight, start)
        )
    return tuple(arms)


def _stratum_clock(row: Any) -> StratumClock:
    return stratum_clock(row.state, row.step_index, row.step_started_at, row.created_at, row.plan)


def clocks_of(table: RoutingTable) -> dict[int, StratumClock]:
    """Stratum clocks by rollout id, for the recorder."""
    return {
        route.rollout_id: route.stratum
        for route in table.values()
        if route.rollout_id is not None and route.stratum is not None
    }


def load_routes(session: Session) -> dict[str, Route]:
    models = {mid: name for mid, name in session.execute(select(Model.id, Model.name))}
    rollouts = session.execute(
        select(
            Rollout.id,
            Rollout.model_id,
            Rollout.champion_version_id,
            Rollout.challenger_version_id,
            Rollout.challenger_weight_bp,
            Rollout.mirror,
            Rollout.mirror_bp,
            Rollout.strategy,
            Rollout.state,
            Rollout.step_index,
            Rollout.step_started_at,
            Rollout.created_at,
            Rollout.plan,
            Rollout.challengers,
        ).where(Rollout.active_model_id.is_not(None), Rollout.state.in_(ACTIVE_STATES))
    ).all()
    champion_rows = select(Alias.model_id, Alias.version_id).where(Alias.name == Arm.champion)
    champions = dict(session.execute(champion_rows).all())
    servable = and_(ModelVersion.status == "ready", ModelVersion.serving_url.is_not(None))
    newest = (
        select(ModelVersion.model_id, func.max(ModelVersion.version).label("number"))
        .where(servable)
        .group_by(ModelVersion.model_id)
        .subquery()
    )
    latest = dict(
        session.execute(
            select(ModelVersion.model_id, ModelVersion.id).join(
                newest,
                and_(
                    ModelVersion.model_id == newest.c.model_id,
                    ModelVersion.version == newest.c.number,
                ),
            )
        ).all()
    )
    wanted = set(champions.values()) | set(latest.values())
    for row in rollouts:
        wanted.update((row.champion_version_id, row.challenger_version_id))
        wanted.update(item["version_id"] for item in row.challengers or ())
    versions: dict[int, tuple[int, int, str]] = {}
    if wanted:
        columns = (ModelVersion.id, ModelVersion.version, ModelVersion.model_id)
        for vid, number, model_id, url in session.execute(
            select(*columns, ModelVersion.serving_url).where(ModelVersion.id.in_(wanted), servable)
        ):
            versions[vid] = (number, model_id, url or "")

    table: dict[str, Route] = {}
    for row in rollouts:
        name = models.get(row.model_id)
        champion = versions.get(row.champion_version_id)
        if name is None or champion is None:
            continue
        challengers = _challengers(row, versions)
        served = [a for a in challengers if a.weight_bp > 0]
        lead = next((a for a in challengers if a.version_id == row.challenger_version_id), None)
        lead = lead or (challengers[0] if challengers else None)
        table[name] = Route(
            model=name,
            model_id=row.model_id,
            champion=_arm(
                Arm.champion,
                champion,
                row.champion_version_id,
                (row.id, row.model_id, row.champion_version_id, Arm.champion),
            ),
            challenger=lead,
            weight_bp=sum(a.weight_bp for a in served),
            mirror=bool(row.mirror) and lead is not None,
            rollout_id=row.id,
            strategy=row.strategy,
            state=row.state,
            stratum=_stratum_clock(row),
            mirror_bp=max(1, min(10_000, row.mirror_bp)),
            challengers=challengers,
            ranges=tuple((a.bucket_start, a.weight_bp) for a in challengers),
        )
    for model_id, name in models.items():
        if name in table:
            continue
        version_id = champions.get(model_id, latest.get(model_id))
        version = versions.get(version_id) if version_id is not None else None
        if version_id is None or version is None:
            continue
        table[name] = Route(
            model=name,
            model_id=model_id,
            champion=_arm(
                Arm.champion, version, version_id, (None, model_id, version_id, Arm.champion)
            ),
            challenger=None,
            weight_bp=0,
            mirror=False,
            rollout_id=None,
            strategy=None,
            state=None,
        )
    return table


class SqliteChanges:
    """Whether a SQLite database file may have changed since the last look: SQLite's
    ``PRAGMA data_version`` on a connection of our own, which changes whenever another
    connection (any process, this one included) commits. Reading it costs a few µs where a
    routing table load costs milliseconds (five queries through the ORM), and the poll runs 4
    times a second whether or not anything changed (profiled: a third of an idle gateway's
    CPU). ``None`` for databases it cannot watch (in memory, or not SQLite)."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._seen: int | None = None

    @classmethod
    def of(cls, database: Database) -> SqliteChanges | None:
        url = database.engine.url
        path = url.database
        if database.engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return None
        if url.query or path.startswith("file:"):  # URI forms: shared memory and the like
            return None
        return cls(path)

    def version(self) -> int:
        row = self._connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def changed(self) -> tuple[bool, int]:
        """Whether anything was committed since :meth:`seen`, and the version to pass it."""
        version = self.version()
        return version != self._seen, version

    def seen(self, version: int) -> None:
        """The table was loaded after ``version`` was read: later commits change it again."""
        self._seen = version

    def close(self) -> None:
        self._connection.close()


class RoutingTableSource:
    """Keeps ``table`` current; ``on_change`` runs (on the event loop) after each swap. On a
    SQLite file a load is skipped while nothing was committed since the last one
    (:class:`SqliteChanges`); PostgreSQL loads every time (its ``NOTIFY`` covers rollouts, not
    every change the table depends on, such as aliases)."""

    def __init__(
        self,
        database: Database,
        interval_s: float,
        on_change: Callable[[RoutingTable], None] | None = None,
    ) -> None:
        self._database = database
        self._interval_s = interval_s
        self._on_change = on_change
        self._wake = asyncio.Event()
        self._changes = SqliteChanges.of(database)
        self.table: RoutingTable = {}
        self.loaded = False
        self.listening = False
        self.loads = 0  # full loads so far (the change check skips the others)

    def _load(self) -> dict[str, Route] | None:
        """The table from the database; None when nothing was committed since the last load."""
        changes = self._changes
        version = 0
        if changes is not None:
            changed, version = changes.changed()
            if not changed and self.loaded:
                return None
        with self._database.session() as session:
            table = load_routes(session)
        self.loads += 1
        if changes is not None:
            changes.seen(version)  # read before the load: a commit during it is seen next time
        return table

    async def refresh(self) -> bool:
        try:
            table = await asyncio.to_thread(self._load)
        except Exception as exc:
            log.warning("gateway routing table refresh failed, keeping the previous one: %s", exc)
            return False
        if table is None:
            return True
        if not self.loaded or table != self.table:
            self.table = table
            if self._on_change is not None:
                self._on_change(table)
        self.loaded = True
        return True

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        if self._changes is not None:
            self._changes.close()

    async def run(self, stop: asyncio.Event, on_failure: Callable[[], None] | None = None) -> None:
        while not stop.is_set():
            self._wake.clear()
            if not await self.refresh() and on_failure is not None:
                on_failure()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)

    async def listen(self, stop: asyncio.Event) -> None:
        """PostgreSQL only: wake the refresh loop on every ``NOTIFY shelf_routing``."""
        import psycopg

        url = self._database.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        backoff = 0.2
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {ROUTING_CHANNEL}")
                    self.listening = True
                    backoff = 0.2
                    self.wake()  # whatever changed while we were not listening
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway LISTEN %s failed, reconnecting: %s", ROUTING_CHANNEL, exc)
            finally:
                self.listening = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 5.0)
