"""A model's watch policy: shelf life, bake window, what decay inside the bake window does, and
how the detectors are tuned. Stored per model (``WatchPolicy`` rows); a model without one gets
the defaults."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.orm import Session

from controller.stats.drift_targets import Tolerances
from controller.tables import WatchPolicy
from registry.db.base import utcnow
from registry.db.tables import Model
from registry.errors import InvalidInput
from registry.services import audit

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``1h``, ``30m``, ``45s``, ``2w``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90d, 12h, 30m, 45s or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class WatchPolicySpec(BaseModel):
    """``max_data_age``: a champion whose training data ended longer ago is ``stale`` (none: it
    never goes stale). ``bake_window``: after a promotion, decay against the previous champion's
    reference is acted on by ``on_decay`` (``rollback`` goes back to the previous champion;
    ``alert`` only alerts, as everything outside the window does). ``baseline``: how long the
    champion's first period in production (its own reference) lasts. ``false_alarms_per_week``:
    the detectors' bound on the probability of any false alarm in a week."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_data_age: str | None = None
    bake_window: str = "1h"
    on_decay: Literal["alert", "rollback"] = "alert"
    baseline: str = "30m"
    false_alarms_per_week: float = Field(default=0.01, gt=0, lt=1)
    tolerances: dict[str, float] = Field(default_factory=dict)

    @field_validator("max_data_age", "bake_window", "baseline")
    @classmethod
    def _durations(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("tolerances")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        known = set(Tolerances.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown tolerance {unknown[0]!r}; known: {', '.join(sorted(known))}")
        if any(not 0 <= v < 1 for v in value.values()):
            raise ValueError("tolerances lie in [0, 1)")
        return value

    @property
    def max_age(self) -> timedelta | None:
        return parse_duration(self.max_data_age) if self.max_data_age else None

    @property
    def bake(self) -> timedelta:
        return parse_duration(self.bake_window)

    @property
    def baseline_period(self) -> timedelta:
        return parse_duration(self.baseline)

    def tolerance_set(self) -> Tolerances:
        return Tolerances(**self.tolerances)


def policy_of(session: Session, model: Model) -> WatchPolicySpec:
    row = session.get(WatchPolicy, model.id)
    return WatchPolicySpec.model_validate(row.policy) if row is not None else WatchPolicySpec()


def set_policy(
    session: Session, model: Model, changes: dict[str, Any], actor: str
) -> WatchPolicySpec:
    """Merges ``changes`` into the model's policy (a ``None`` value restores a default)."""
    current = policy_of(session, model).model_dump(exclude_defaults=True)
    for key, value in changes.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    try:
        spec = WatchPolicySpec.model_validate(current)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "policy"
        raise InvalidInput(f"invalid watch policy: {where}: {first['msg']}") from None
    stored = spec.model_dump(exclude_defaults=True)
    row = session.get(WatchPolicy, model.id)
    if row is None:
        session.add(WatchPolicy(model_id=model.id, policy=stored, updated_by=actor))
    else:
        row.policy = stored
        row.updated_at = utcnow()
        row.updated_by = actor
    audit.record(session, "watch.policy_set", actor, model, policy=stored)
    return spec
