"""What the champion watch concluded: each check's evidence and the champion's status.

The one schema of watch evidence: the watcher stores it, the API serves it, and ``shelf
watch``, the Prometheus gauges, the webhooks and the report's champion page read it back
unchanged. One name per quantity: ``statistic`` is a check's detector statistic in log e-value
units (``controller.stats.drift``), ``threshold`` the level at which it alarms, ``e_value``
``exp(statistic)``; ``expected`` is what the reference (or first period) says, ``observed``
what the champion showed since the check was last armed."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Status = Literal["fresh", "drifting", "decayed", "stale"]
STATUSES: tuple[Status, ...] = ("fresh", "drifting", "decayed", "stale")
CheckState = Literal["ok", "alarm"]


class WatchCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    check: str = Field(
        description="error_rate, latency, accuracy, confidence, class:<c>, input:<x>"
    )
    against: Literal["reference", "baseline", "previous"] = Field(
        description="The version's reference profile, the champion's first period in "
        "production, or the previous champion's reference (bake window)"
    )
    effect: Literal["decay", "drift"]
    state: CheckState
    since: datetime | None = Field(description="When the check entered its state")
    statistic: float = Field(description="Mixture Shiryaev-Roberts statistic, log e-value units")
    threshold: float = Field(description="Alarm level of the statistic")
    e_value: float | None = Field(description="exp(statistic); None beyond float range")
    expected: float
    tolerance: float
    observed: float | None = Field(description="Since the check was last armed")
    n: float = Field(description="Observations since the check was last armed")
    alarms: int = Field(description="Alarms raised since the watch began")
    detail: str = ""

    @field_validator("e_value", "observed", mode="after")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None


class WatchReport(BaseModel):
    """A champion's status (``decayed`` if a decay check alarms, else ``drifting`` if a drift
    check does, else ``stale`` past its shelf life, else ``fresh``), why, and since when."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    status: Status
    since: datetime
    reason: str
    checks: tuple[WatchCheck, ...]
    started_at: datetime
    baseline_until: datetime | None
    bake_until: datetime | None
    stale_at: datetime | None
    on_decay: Literal["alert", "rollback"]
    block_s: float
    false_alarms_per_week: float
    updated_at: datetime
