"""Strata: the (step, time block) a rollout's traffic falls in at a given moment.

The gateway stamps what it records with it, and so does a metric source that reads the arms'
statistics from elsewhere; the reconciler compares the arms within strata (docs/statistics.md,
"Strata")."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.vocabulary import DEFAULT_TIME_BLOCK_S, SHADOW_STEP, WARMUP_BLOCK, RolloutState

Stratum = tuple[int, int]  # (step, block)


@dataclass(frozen=True, slots=True)
class StratumClock:
    """Where a rollout's traffic falls at a given time: its step (``SHADOW_STEP`` while
    shadowing) and the block ``floor((t - step start - warm-up) / block_s)`` within it, or
    ``WARMUP_BLOCK`` during the step's warm-up."""

    step: int
    step_started_s: float  # Unix time
    block_s: float
    warmup_s: float = 0.0

    def at(self, now_s: float) -> Stratum:
        since = now_s - self.step_started_s - self.warmup_s
        if since < 0.0:
            return (self.step, WARMUP_BLOCK if self.warmup_s > 0.0 else 0)
        return (self.step, math.floor(since / self.block_s))


def stratum_clock(
    state: str,
    step_index: int,
    step_started_at: datetime | None,
    created_at: datetime,
    plan: dict[str, Any] | None,
) -> StratumClock:
    """A rollout's clock: its step (``SHADOW_STEP`` while mirroring) and time blocks of the
    plan's ``time_block_s`` from the step's start, after its ``warmup_s``."""
    settings = plan or {}
    started = step_started_at or created_at
    return StratumClock(
        step=SHADOW_STEP if state == RolloutState.shadowing else int(step_index),
        step_started_s=started.timestamp(),
        block_s=float(settings.get("time_block_s", DEFAULT_TIME_BLOCK_S)),
        warmup_s=float(settings.get("warmup_s", 0.0)),
    )
