"""Rollout plans and the state machine that moves a rollout through them.

Pure: ``decide`` looks at a rollout's plan, position and the guardrails' verdict and returns
what should happen next; the reconciler applies it to the database. States:

    pending -> shadowing -> canary (step k) -> promoted | rolled_back | aborted, plus paused
    (by hand) and paused_on_harm (``on_harm="pause"``; decided in :mod:`controller.abn`)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.metric_sources.queries import PrometheusQueries
from controller.stats import HARM, NO_HARM, Guardrail, Verdict, parse_guardrails
from controller.vocabulary import (
    DEFAULT_TIME_BLOCK_S,
    STRATEGIES,
    OnHarm,
    RolloutState,
    Strategy,
)
from registry.errors import InvalidInput

TIMEOUT_POLICIES = ("rollback", "promote")
HARM_POLICIES: tuple[str, ...] = tuple(p.value for p in OnHarm)
DEFAULT_REVIEW_TIMEOUT_S = 3600.0
DEFAULT_STEPS = (1, 5, 25, 50, 100)
FULL_BP = 10_000


@dataclass(frozen=True)
class RolloutPlan:
    """How a challenger meets traffic.

    ``steps`` are the challenger's traffic percentages, one per canary step (blue-green is a
    single switch to 100). A step advances once the challenger has served ``min_samples``
    requests in it and ``min_step_duration_s`` has passed, with no guardrail showing harm; the
    switch to 100 % also needs every guardrail to show non-inferiority (the champion serves
    nothing after it, so that is the last chance to compare). A last step below 100 % promotes
    on non-inferiority; a last step at 100 % (and blue-green) promotes once it has run its
    samples and duration without harm.
    Shadow mirrors traffic first (``shadow_min_samples``/``shadow_duration_s``), then follows
    ``steps`` if any. It mirrors ``mirror_percent`` of the requests (sticky by routing key), and
    both arms are compared on the mirrored requests only; ``shadow_min_samples`` counts the
    challenger's copies, so a smaller share takes longer but judges the same way. After the
    last step the challenger is promoted once every guardrail shows non-inferiority; at
    ``max_duration_s`` the explicit ``on_timeout`` policy decides.

    Statistics are compared within strata: the step, and blocks of ``time_block_s`` within it
    (docs/statistics.md, "Strata"). The first ``warmup_s`` of every step is recorded and shown
    but not judged (Kayenta's "begin analysis after"): caches warming, connection pools
    filling and the routing change reaching every gateway replica do not count as evidence.

    ``metrics`` (a ``PrometheusQueries``) reads the arms' statistics from Prometheus instead of
    the gateway, for traffic a webhook router splits elsewhere.

    ``on_harm`` says what harm does: ``rollback`` ends the rollout (with several challengers:
    drops the harmful one, the others go on), ``pause`` sets the harmful challenger's weight to
    0 and waits in ``paused_on_harm`` for a person, at most ``review_timeout_s`` before rolling
    back. ``primary_metric`` (a guardrail; default the first) picks the winner when several
    challengers are non-inferior at the last step (docs/rollouts.md).
    """

    strategy: str = "canary"
    steps: tuple[float, ...] = DEFAULT_STEPS
    min_samples: int = 2000
    min_step_duration_s: float = 300.0
    shadow_min_samples: int = 2000
    shadow_duration_s: float = 300.0
    mirror_percent: float = 100.0
    max_duration_s: float = 6 * 3600.0
    on_timeout: str = "rollback"
    alpha: float = 0.05
    guardrails: tuple[str, ...] = ()
    guardrail_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_block_s: float = DEFAULT_TIME_BLOCK_S
    warmup_s: float = 0.0
    metrics: dict[str, Any] | None = None
    on_harm: str = OnHarm.rollback.value
    review_timeout_s: float = DEFAULT_REVIEW_TIMEOUT_S
    primary_metric: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"unknown strategy {self.strategy!r}; use {', '.join(STRATEGIES)}")
        if self.on_timeout not in TIMEOUT_POLICIES:
            raise InvalidInput(f"on_timeout must be one of {', '.join(TIMEOUT_POLICIES)}")
        if not 0 < self.alpha < 0.5:
            raise InvalidInput("alpha must be between 0 and 0.5")
        if self.min_samples < 1 or self.shadow_min_samples < 1:
            raise InvalidInput("min samples must be at least 1")
        if self.min_step_duration_s < 0 or self.shadow_duration_s < 0 or self.max_duration_s <= 0:
            raise InvalidInput("durations must be positive")
        if not (0 < self.mirror_percent <= 100 and round(self.mirror_percent * 100) >= 1):
            raise InvalidInput("mirror_percent must be in (0, 100], at least 0.01")
        if self.mirror_percent != 100 and self.strategy != Strategy.shadow:
            raise InvalidInput("mirror_percent applies to the shadow strategy only")
        if not 1.0 <= self.time_block_s <= 86_400.0:
            raise InvalidInput("time_block_s must be between 1 second and 1 day")
        if not 0.0 <= self.warmup_s < 86_400.0:
            raise InvalidInput("warmup_s must be between 0 and 1 day")
        steps = list(self.steps)
        if self.strategy == Strategy.blue_green:
            steps = [100.0]
        if self.strategy != Strategy.shadow and not steps:
            raise InvalidInput(f"a {self.strategy} rollout needs at least one step")
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise InvalidInput(
                "steps must be increasing percentages in (0, 100], e.g. 1,5,25,50,100"
            )
        object.__setattr__(self, "steps", tuple(float(s) for s in steps))
        object.__setattr__(self, "guardrails", tuple(self.guardrails))
        judged = self.judged_by()  # unknown guardrails are refused now, not at the first look
        if self.on_harm not in HARM_POLICIES:
            raise InvalidInput(f"on_harm must be one of {', '.join(HARM_POLICIES)}")
        if not 0 < self.review_timeout_s <= 30 * 86_400.0:
            raise InvalidInput("review_timeout_s must be between 0 and 30 days")
        if self.primary_metric is not None and self.primary_metric not in (
            g.metric for g in judged
        ):
            raise InvalidInput(
                f"primary metric {self.primary_metric!r} is not one of the guardrails: "
                + ", ".join(g.metric for g in judged)
            )
        if self.metrics is not None:
            try:
                PrometheusQueries.model_validate(self.metrics)
            except ValueError as error:
                raise InvalidInput(f"invalid metric source: {error}") from None

    def judged_by(self) -> tuple[Guardrail, ...]:
        """The guardrails this plan is judged by, with their options."""
        try:
            return parse_guardrails(self.guardrails, self.guardrail_options)
        except ValueError as error:
            raise InvalidInput(str(error)) from None

    def max_strata(self) -> int:
        """The most judged strata this plan can produce, fixed before any data: the blocks that
        fit in ``max_duration_s``, plus one partial block per step and for the shadow phase.
        The change detector spends its alpha over this many start points."""
        blocks = math.ceil(self.max_duration_s / self.time_block_s)
        return blocks + len(self.steps) + 1

    @property
    def mirror_bp(self) -> int:
        """The share of requests a shadow mirrors, in basis points."""
        return round(self.mirror_percent * 100)

    def weight_bp(self, step_index: int) -> int:
        return round(self.steps[step_index] * 100)

    def challenger_weight_bp(self, step_index: int, challengers: int) -> int:
        """Each challenger's weight at a step when the rollout has ``challengers`` of them:
        the step's share, capped at ``1/(challengers + 1)`` of the traffic when there are
        several, so the champion always serves at least as much as any challenger (and stays
        there to be compared with). Three challengers at a 50 % step get 25 % each."""
        weight = self.weight_bp(step_index)
        if challengers <= 1:
            return weight
        return min(weight, FULL_BP // (challengers + 1))

    def primary(self) -> str:
        """The metric that picks the best of several non-inferior challengers."""
        return self.primary_metric or self.judged_by()[0].metric

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        data["guardrails"] = list(self.guardrails)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutPlan:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["steps"] = tuple(known.get("steps", DEFAULT_STEPS))
        known["guardrails"] = tuple(known.get("guardrails", ()))
        return cls(**known)


@dataclass(frozen=True)
class Position:
    """Where a rollout is: the part of its row ``decide`` needs."""

    state: RolloutState
    step_index: int
    started_at: datetime
    step_started_at: datetime
    step_start_samples: int


class ActionKind(StrEnum):
    """What the reconciler can do to a rollout, and the state each action leads to."""

    hold = "hold"
    start_shadow = "start_shadow"
    set_step = "set_step"
    promote = "promote"
    roll_back = "roll_back"
    drop = "drop"  # A/B/n: harmful challengers leave, the others go on
    pause_on_harm = "pause_on_harm"

    @property
    def target_state(self) -> RolloutState | None:
        return _TARGET_STATES[self]


_TARGET_STATES: dict[ActionKind, RolloutState | None] = {
    ActionKind.hold: None,
    ActionKind.start_shadow: RolloutState.shadowing,
    ActionKind.set_step: RolloutState.canary,
    ActionKind.promote: RolloutState.promoted,
    ActionKind.roll_back: RolloutState.rolled_back,
    ActionKind.drop: None,
    ActionKind.pause_on_harm: RolloutState.paused_on_harm,
}


@dataclass(frozen=True)
class Action:
    """What the reconciler should do; ``step_index`` and ``weight_bp`` for ``set_step``;
    ``arms`` the challengers a ``drop`` or ``pause_on_harm`` concerns, or the one ``promote``
    chose."""

    kind: ActionKind
    reason: str = ""
    step_index: int = 0
    weight_bp: int = 0
    arms: tuple[str, ...] = ()


HOLD = Action(ActionKind.hold)


def first_action(plan: RolloutPlan) -> Action:
    if plan.strategy == Strategy.shadow:
        return Action(ActionKind.start_shadow, "shadowing: challenger sees a copy of the traffic")
    return _step(plan, 0, "canary started")


def _step(plan: RolloutPlan, index: int, reason: str) -> Action:
    return Action(ActionKind.set_step, reason, step_index=index, weight_bp=plan.weight_bp(index))


def decide(
    plan: RolloutPlan,
    position: Position,
    verdict: Verdict,
    harm_reason: str,
    challenger_samples: int,
    now: datetime,
) -> Action:
    """The next move. ``verdict`` is the guardrails' overall verdict: ``harm``,
    ``no_harm_within_margin`` or ``continue``; ``challenger_samples`` counts the challenger's
    observations so far (mirrored copies while shadowing, served requests in canary)."""
    judging = (RolloutState.shadowing, RolloutState.canary)
    if position.state == RolloutState.pending:
        return first_action(plan)
    if verdict == HARM and position.state in (*judging, RolloutState.paused):
        # Harm ends the rollout even while paused: a pause freezes progress, not safety.
        return Action(ActionKind.roll_back, harm_reason or "a guardrail shows harm")
    if position.state not in judging:
        return HOLD
    if (now - position.started_at).total_seconds() >= plan.max_duration_s:
        if plan.on_timeout == "promote":
            return Action(ActionKind.promote, "timed out; plan promotes on timeout")
        return Action(ActionKind.roll_back, "timed out without showing non-inferiority")
    in_step = challenger_samples - position.step_start_samples
    elapsed = (now - position.step_started_at).total_seconds()
    if position.state == RolloutState.shadowing:
        if in_step < plan.shadow_min_samples or elapsed < plan.shadow_duration_s:
            return HOLD
        if plan.steps and (plan.steps[0] < 100 or verdict == NO_HARM):
            return _step(plan, 0, "shadow passed; canary started")
        if verdict == NO_HARM:
            return Action(ActionKind.promote, "shadow showed non-inferiority on every guardrail")
        return HOLD
    if in_step < plan.min_samples or elapsed < plan.min_step_duration_s:
        return HOLD
    last = len(plan.steps) - 1
    if position.step_index < last:
        nxt = position.step_index + 1
        if plan.steps[nxt] >= 100 and verdict != NO_HARM:
            # At 100 % the champion serves nothing, so there is nothing left to compare with:
            # non-inferiority has to be shown before the full switch.
            return HOLD
        return _step(plan, nxt, f"step {position.step_index + 1} passed; {plan.steps[nxt]:g}%")
    if plan.steps[last] >= 100:
        return Action(ActionKind.promote, "full traffic served for the whole step without harm")
    if verdict == NO_HARM:
        return Action(ActionKind.promote, "every guardrail shows non-inferiority")
    return HOLD
