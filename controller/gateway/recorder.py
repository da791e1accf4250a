"""Per-arm, per-stratum statistics in memory, flushed to the database as ``ArmStatsDelta`` rows.

The hot path only adds to an ``ArmStats`` in a dict (no I/O), keyed by arm and stratum: the
rollout's step (-1 while shadowing) and the time block within it, from the rollout's
:class:`StratumClock` (the routing table carries it). The first ``warmup_s`` of a step is block
-1: recorded and shown, never judged. Every flush interval the dict is
swapped for an empty one and the swapped statistics become rows, one per arm, each numbered
with its own ``seq``, inserted in one transaction on a worker thread. A failed flush keeps its
rows, seqs and all, and sends them again before the next interval's: an insert whose
``(replica_id, seq)`` is already there is skipped, so a flush that committed but whose answer
was lost (the ambiguous failure) is not counted twice when retried, and one that did not commit
loses nothing.

While the database is down the statistics wait in memory, bounded: the rows of the failed
flush are retried on their own (same seqs) until they land, and only then is the next interval
taken, so new observations keep merging into the same in-memory ``ArmStats`` instead of piling
up one row per arm per interval. What is kept is one batch of rows plus one ``ArmStats`` per
arm key, however long the outage; past ``max_pending_arms`` keys in memory, observations for a
new key are dropped and counted (``dropped``, and ``on_drop`` for a Prometheus counter).

``seq`` is unique per replica and never reused: it starts at the replica's start time in
microseconds and counts up, so a restarted replica with the same id starts beyond every seq it
used before (as long as it flushed fewer than a million rows per second of its previous life).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controller.stats.sufficient import ArmStats
from controller.strata import Stratum, StratumClock
from controller.tables import ArmStatsDelta, Rollout
from controller.vocabulary import CHAMPION_STEP, DEFAULT_CHAMPION_BLOCK_S
from registry.db.session import Database
from registry.db.tables import Model

log = logging.getLogger(__name__)

# (rollout id, model id, version id, arm); rollout id None: the champion outside rollouts
ArmKey = tuple[int | None, int, int, str]


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[-64:]


class Recorder:
    def __init__(
        self,
        database: Database,
        replica_id: str,
        seq_start: int | None = None,
        on_flush_failure: Callable[[], None] | None = None,
        max_pending_arms: int = 10_000,
        on_drop: Callable[[int], None] | None = None,
        champion_block_s: float = DEFAULT_CHAMPION_BLOCK_S,
    ) -> None:
        self._database = database
        self.replica_id = replica_id[:64]
        self._next_seq = seq_start if seq_start is not None else time.time_ns() // 1000
        self._current: dict[tuple[ArmKey, Stratum], ArmStats] = {}
        self._clocks: Mapping[int, StratumClock] = {}
        self._time = time.time
        self._unwritten: list[dict[str, Any]] = []
        self._flush_lock = asyncio.Lock()
        self._on_flush_failure = on_flush_failure
        self._max_pending_arms = max_pending_arms
        self._on_drop = on_drop
        self._champion_block_s = champion_block_s
        self._overflow = ArmStats()  # where observations go once the bound is reached
        self.rows_written = 0
        self.rows_dropped = 0
        self.dropped = 0  # responses, labels and rewards lost to the bound

    # -- hot path -------------------------------------------------------------------------

    def arm(self, key: ArmKey) -> ArmStats:
        """The statistics of ``key``'s arm in its rollout's current stratum; outside rollouts,
        the champion's current time block (``CHAMPION_STEP``, blocks from the epoch)."""
        rollout_id = key[0]
        if rollout_id is None:
            stratum = (CHAMPION_STEP, int(self._time() // self._champion_block_s))
        else:
            clock = self._clocks.get(rollout_id)
            stratum = clock.at(self._time()) if clock is not None else (0, 0)
        full = (key, stratum)
        stats = self._current.get(full)
        if stats is None:
            if len(self._current) >= self._max_pending_arms:
                return self._overflow
            stats = self._current[full] = ArmStats()
        return stats

    def set_clocks(self, clocks: Mapping[int, StratumClock]) -> None:
        """Each active rollout's stratum clock, by rollout id (swapped, never mutated)."""
        self._clocks = clocks

    # -- flushing -------------------------------------------------------------------------

    def take_rows(self) -> list[dict[str, Any]]:
        """Rows still unwritten, then one per arm for what was recorded since; recording
        restarts."""
        current, self._current = self._current, {}
        rows, self._unwritten = self._unwritten, []
        for ((rollout_id, model_id, version_id, arm), (step, block)), stats in current.items():
            if stats.is_empty():
                continue
            rows.append(
                {
                    "rollout_id": rollout_id,
                    "model_id": model_id,
                    "version_id": version_id,
                    "arm": arm,
                    "replica_id": self.replica_id,
                    "seq": self._next_seq,
                    "stats": stats.to_json(),
                    "stratum_step": step,
                    "stratum_block": block,
                }
            )
            self._next_seq += 1
        return rows

    @property
    def has_unflushed(self) -> bool:
        return bool(self._unwritten) or any(not s.is_empty() for s in self._current.values())

    async def flush(self) -> bool:
        """Write what has accumulated; True when nothing is left pending. Rows of a failed
        flush go again alone first; the interval's statistics wait (merging) until they land."""
        async with self._flush_lock:
            self._count_overflow()
            if self._unwritten:
                retried, self._unwritten = self._unwritten, []
                if not await self._write_rows(retried):
                    return False
            return await self._write_rows(self.take_rows())

    async def _write_rows(self, rows: list[dict[str, Any]]) -> bool:
        if not rows:
            return True
        try:
            written = await asyncio.to_thread(self._write, rows)
        except Exception as exc:
            log.warning("gateway statistics flush failed, will retry: %s", exc)
            self._unwritten = rows + self._unwritten
            if self._on_flush_failure is not None:
                self._on_flush_failure()
            return False
        self.rows_written += written
        self.rows_dropped += len(rows) - written
        return True

    def _count_overflow(self) -> None:
        overflow = self._overflow
        if overflow.is_empty():
            return
        self._overflow = ArmStats()
        lost = overflow.requests + overflow.labels + overflow.rewards
        self.dropped += lost
        log.warning("gateway statistics buffer full: dropped %d observations", lost)
        if self._on_drop is not None:
            self._on_drop(lost)

    def _write(self, rows: list[dict[str, Any]]) -> int:
        """Inserts ``rows``, skipping any whose (replica_id, seq) an earlier, ambiguously failed
        attempt already committed; returns how many rows had somewhere to go."""
        with self._database.session() as session:
            wanted = {row["rollout_id"] for row in rows} - {None}
            rollouts = set(session.scalars(select(Rollout.id).where(Rollout.id.in_(wanted))))
            owners = {row["model_id"] for row in rows if row["rollout_id"] is None}
            models = set(session.scalars(select(Model.id).where(Model.id.in_(owners))))
            # A deleted rollout's (or model's) statistics have nowhere to go; keeping them
            # would block every later flush on the foreign key.
            rows = [
                row
                for row in rows
                if row["rollout_id"] in rollouts
                or (row["rollout_id"] is None and row["model_id"] in models)
            ]
            if rows:
                dialect = session.get_bind().dialect.name
                insert_ = postgresql_insert if dialect == "postgresql" else sqlite_insert
                statement = insert_(ArmStatsDelta).on_conflict_do_nothing(
                    index_elements=["replica_id", "seq"]
                )
                session.execute(statement, rows)
            return len(rows)

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            await self.flush()

    async def final_flush(self, attempts: int = 3, backoff_s: float = 0.5) -> bool:
        for attempt in range(attempts):
            if await self.flush():
                return True
            if attempt + 1 < attempts:
                await asyncio.sleep(backoff_s)
        log.error("gateway statistics could not be flushed at shutdown")
        return False
