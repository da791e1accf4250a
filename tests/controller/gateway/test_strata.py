"""The gateway records statistics per stratum (step, time block, warm-up) and per key bucket."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from controller.gateway.recorder import Recorder
from controller.gateway.split import bucket, unit_bucket
from controller.stats.sufficient import UNIT_BUCKETS, ArmStats
from controller.strata import StratumClock


def test_stratum_clock_blocks_and_warm_up() -> None:
    clock = StratumClock(step=2, step_started_s=1_000.0, block_s=600.0, warmup_s=60.0)
    assert clock.at(1_030.0) == (2, -1)  # in the warm-up: recorded, not judged
    assert clock.at(1_060.0) == (2, 0)
    assert clock.at(1_659.0) == (2, 0)
    assert clock.at(1_660.0) == (2, 1)
    assert StratumClock(0, 1_000.0, 600.0).at(999.0) == (0, 0)  # clock skew: no warm-up block


def test_recorder_flushes_one_row_per_arm_and_stratum() -> None:
    recorder = Recorder(cast(Any, None), "replica-1", seq_start=1)
    now = [1_000.0]
    recorder._time = lambda: now[0]
    recorder.set_clocks({7: StratumClock(step=0, step_started_s=1_000.0, block_s=10.0)})
    key = (7, 1, 2, "challenger")
    recorder.arm(key).record_response("2xx", 0.01, unit=5)
    now[0] = 1_012.0
    recorder.arm(key).record_response("5xx", None, unit=5)
    recorder.arm(key).record_response("2xx", 0.01)
    rows = sorted(recorder.take_rows(), key=lambda r: r["stratum_block"])
    assert [(r["stratum_step"], r["stratum_block"]) for r in rows] == [(0, 0), (0, 1)]
    second = ArmStats.from_json(rows[1]["stats"])
    assert (second.requests, second.errors) == (2, 1)
    assert rows[1]["stats"]["units"] == {"5": [1.0, 1.0, 0.0, 0.0, 0.0]}  # only keyed requests


@given(st.binary(min_size=1, max_size=32))
def test_unit_bucket_is_stable_and_in_range(key: bytes) -> None:
    assert 0 <= unit_bucket(b"fraud", key) < UNIT_BUCKETS
    assert unit_bucket(b"fraud", key) == unit_bucket(b"fraud", key)


def test_unit_buckets_spread_evenly_among_the_keys_of_a_small_canary() -> None:
    # Keys routed to a 1 % challenger must still spread over all unit buckets, or the
    # between-bucket variance would rest on a handful of buckets.
    canary = [k for i in range(200_000) if bucket(b"m", k := str(i).encode()) < 100]
    used = {unit_bucket(b"m", k) for k in canary}
    assert len(canary) > 1_500 and len(used) >= UNIT_BUCKETS - 2
