"""Request and response bodies for rollouts and webhooks: plain pydantic models, no ORM, so the
client library parses responses with the same types the API declares."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.metric_sources.queries import PrometheusQueries
from controller.routers.base import RouterSpec
from controller.stats.evidence import Report
from controller.stats.watch_report import WatchReport
from controller.vocabulary import (
    DEFAULT_TIME_BLOCK_S,
    FINAL_STATES,
    MAX_CHALLENGERS,
    STRATEGIES,
    OnHarm,
)
from registry.names import MAX_NUMBER, MODEL_NAME_PATTERN

if TYPE_CHECKING:
    from controller.stats.sufficient import ArmStats


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutCreate(Strict):
    challenger: int | None = Field(
        default=None, ge=1, le=MAX_NUMBER, description="The version to roll out (one challenger)"
    )
    challengers: list[int] | None = Field(
        default=None,
        description=f"A/B/n: up to {MAX_CHALLENGERS} versions judged against the champion at "
        "once (instead of challenger)",
    )
    on_harm: str = Field(
        default=OnHarm.rollback.value,
        pattern=f"^({'|'.join(p.value for p in OnHarm)})$",
        description="rollback: end the rollout (A/B/n: drop the harmful challenger); pause: "
        "harmful challenger to weight 0 and wait in paused_on_harm for review",
    )
    review_timeout_s: float = Field(
        default=3600.0, gt=0, le=30 * 86_400, description="paused_on_harm rolls back after this"
    )
    primary_metric: str | None = Field(
        default=None,
        description="A/B/n: the guardrail that picks the best non-inferior challenger "
        "(default: the first guardrail)",
    )
    strategy: str = Field(
        default="canary",
        pattern=f"^({'|'.join(STRATEGIES)})$",
        description=f"One of {', '.join(STRATEGIES)}",
    )
    steps: list[float] | None = Field(default=None, description="Challenger traffic % per step")
    min_samples: int = Field(default=2000, ge=1, le=MAX_NUMBER)
    min_step_duration_s: float = Field(default=300.0, ge=0)
    shadow_min_samples: int | None = Field(default=None, ge=1, le=MAX_NUMBER)
    shadow_duration_s: float | None = Field(default=None, ge=0)
    mirror_percent: float = Field(
        default=100.0,
        gt=0,
        le=100,
        description="Shadow only: the share of requests mirrored to the challenger (sticky by "
        "routing key); both arms are judged on the mirrored requests",
    )
    max_duration_s: float = Field(default=6 * 3600.0, gt=0)
    on_timeout: str = "rollback"
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    guardrails: list[str] = Field(default_factory=list)
    guardrail_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per guardrail: margin, tolerance (numbers, or percentages of the champion "
        "such as '+20%'), mixing, min_samples",
    )
    time_block_s: float = Field(
        default=DEFAULT_TIME_BLOCK_S, ge=1, le=86_400, description="Statistics time block"
    )
    warmup_s: float = Field(
        default=0.0, ge=0, lt=86_400, description="Per step: recorded and shown, not judged"
    )
    router: RouterSpec | None = Field(
        default=None, description="How weights reach the data plane (default: the gateway)"
    )
    metrics: PrometheusQueries | None = Field(
        default=None,
        description="Read the arms' statistics from Prometheus (needs a webhook router)",
    )

    @model_validator(mode="after")
    def _one_way_to_name_challengers(self) -> RolloutCreate:
        if (self.challenger is None) == (self.challengers is None):
            raise ValueError("give exactly one of 'challenger' or 'challengers'")
        if self.challengers is not None and any(not 1 <= n <= MAX_NUMBER for n in self.challengers):
            raise ValueError("challenger versions are positive integers")
        return self

    def versions(self) -> list[int]:
        if self.challengers is not None:
            return list(self.challengers)
        assert self.challenger is not None
        return [self.challenger]


class RollbackRequest(Strict):
    to: int | None = Field(default=None, ge=1, le=MAX_NUMBER)
    reason: str = Field(default="", max_length=1000)


class WebhookCreate(Strict):
    url: str = Field(pattern=r"^https?://", max_length=2048)
    model: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN, max_length=128)
    secret: str | None = Field(default=None, min_length=16, max_length=256)


class ArmSummary(BaseModel):
    """One arm's totals as people read them (latencies in ms, rates as fractions)."""

    requests: int
    errors: int
    error_rate: float
    timeouts: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    predicted: dict[str, int]
    labels: int
    accuracy: float | None
    rewards: int
    mean_reward: float | None
    shadow_compared: int
    shadow_agreement: float | None

    @classmethod
    def of(cls, stats: ArmStats) -> ArmSummary:
        def ms(q: float) -> float | None:
            value = stats.latency_quantile(q)
            return round(value * 1000, 3) if value is not None else None

        def share(part: float, whole: int) -> float | None:
            return round(part / whole, 6) if whole else None

        return cls(
            requests=stats.requests,
            errors=stats.errors,
            error_rate=round(stats.error_rate, 6),
            timeouts=stats.timeouts,
            latency_p50_ms=ms(0.5),
            latency_p99_ms=ms(0.99),
            predicted=stats.predicted,
            labels=stats.labels,
            accuracy=share(stats.correct, stats.labels),
            rewards=stats.rewards,
            mean_reward=share(stats.reward_sum, stats.rewards),
            shadow_compared=stats.compared,
            shadow_agreement=share(stats.agreed, stats.compared),
        )


class RouterStatus(BaseModel):
    """Where the rollout's weights go, and what the data plane last acknowledged."""

    kind: str
    url: str | None
    acknowledged_revision: int
    acknowledged_weight_bp: int | None
    acknowledged_at: datetime | None
    pending: bool = Field(description="The data plane has not acknowledged the latest change")
    last_error: str


class ChallengerOut(BaseModel):
    """One challenger of a rollout: its arm (as statistics and request ids name it), version,
    weight, where it stands, and its evidence against the champion at the latest look."""

    arm: str
    version: int
    weight_bp: int
    status: str = Field(description="active, dropped, suspended (paused on harm) or promoted")
    reason: str = ""
    evidence: Report | None = None


class RolloutOut(BaseModel):
    """A rollout, its per-arm totals and the evidence of the reconciler's latest look."""

    id: int
    model: str
    champion_version: int
    challenger_version: int = Field(
        description="The lead challenger: the first in play, or the promoted one"
    )
    challengers: list[ChallengerOut] = Field(default_factory=list)
    on_harm: str = OnHarm.rollback.value
    harm_paused_at: datetime | None = None
    review_deadline: datetime | None = Field(
        default=None, description="paused_on_harm: rolled back at this time unless resumed"
    )
    strategy: str
    state: str
    resume_state: str | None
    step_index: int
    steps: list[float]
    challenger_weight_bp: int
    mirror: bool
    mirror_percent: float = Field(
        default=100.0, description="The share of requests a shadow mirrors (100: every one)"
    )
    plan: dict[str, Any]
    reason: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    ended_at: datetime | None
    observed_at: datetime | None
    evidence: Report | None = Field(description="Every guardrail's evidence at the latest look")
    router: RouterStatus | None = Field(
        default=None, description="None: the built-in gateway serves the weights"
    )
    arms: dict[str, ArmSummary]

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def strategy_label(self) -> str:
        """The strategy as people read it: ``shadow, mirroring 25%`` for a sampled shadow."""
        if self.mirror_percent < 100:
            return f"{self.strategy}, mirroring {self.mirror_percent:g}%"
        return self.strategy


class ObservationOut(BaseModel):
    at: datetime
    state: str
    step_index: int
    challenger_weight_bp: int
    champion_requests: int
    challenger_requests: int
    evidence: Report
    challengers: dict[str, ChallengerLook] | None = Field(
        default=None, description="A/B/n: every challenger at this look, by arm"
    )


class ChallengerLook(BaseModel):
    version: int
    weight_bp: int
    status: str
    requests: int
    evidence: Report


class WebhookOut(BaseModel):
    id: int
    url: str
    model: str | None
    created_at: datetime
    created_by: str
    secret: str | None = None


class WatchPoint(BaseModel):
    """One judged time block of the champion (``summary``: requests, error rate, accuracy,
    class shares, mean confidence, median latency, input means, each check's statistic)."""

    block: int
    at: datetime
    status: str
    summary: dict[str, Any]


class WatchOut(BaseModel):
    report: WatchReport
    history: list[WatchPoint] = Field(default_factory=list)


class WatchStatusOut(BaseModel):
    model: str
    version: int
    status: str
    since: datetime
    reason: str


class WatchPolicyIn(BaseModel):
    """Changes to a model's watch policy; ``null`` restores a default."""

    model_config = ConfigDict(extra="forbid")

    max_data_age: str | None = None
    bake_window: str | None = None
    on_decay: str | None = None
    baseline: str | None = None
    false_alarms_per_week: float | None = None
    tolerances: dict[str, float] | None = None
