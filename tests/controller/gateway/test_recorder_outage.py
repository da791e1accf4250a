"""The recorder while the database is down: memory stays bounded however long the outage, and
what the bound forces out is counted (issue 10, requirement 4)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from controller.gateway.recorder import Recorder
from controller.stats.sufficient import ArmStats
from controller.tables import ArmStatsDelta
from registry.db.session import Database
from tests.controller.gateway.harness import register, start_rollout


def test_an_outage_keeps_one_batch_and_one_accumulator_per_arm(tmp_path: Path) -> None:
    from shelf import migrate

    url = f"sqlite:///{tmp_path / 'shelf.db'}"
    migrate.upgrade(url)
    database = Database(url)
    champion, challenger = register(database, "m", "http://127.0.0.1:1", "http://127.0.0.1:2")
    rollout_id = start_rollout(database, "m", champion, challenger, 100)
    dropped: list[int] = []
    recorder = Recorder(database, "r1", seq_start=1, max_pending_arms=2, on_drop=dropped.append)
    keys = [(rollout_id, 1, champion, "champion"), (rollout_id, 1, challenger, "challenger")]
    real_write = recorder._write

    def down(rows: object) -> int:
        raise OSError("database is down")

    async def outage() -> None:
        recorder._write = down  # type: ignore[method-assign]
        for _ in range(300):  # five minutes of one-second flushes
            for key in keys:
                recorder.arm(key).record_response("2xx", 0.01, "1", 0.9)
            recorder.arm((rollout_id, 1, 999, "champion")).record_response("2xx", 0.01)
            assert await recorder.flush() is False
            assert len(recorder._unwritten) <= len(keys)
            assert len(recorder._current) <= 2
        recorder._write = real_write  # type: ignore[method-assign]
        assert await recorder.flush() is True

    asyncio.run(outage())
    with database.session() as session:
        rows = list(session.scalars(select(ArmStatsDelta)))
    totals = ArmStats.merge_all([ArmStats.from_json(r.stats) for r in rows])
    assert totals.requests == 2 * 300  # nothing of the two arms lost, nothing counted twice
    assert recorder.dropped == 300 and sum(dropped) == 300  # the third key never fitted
    database.dispose()
