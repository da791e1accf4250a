"""Request and response bodies for rollouts and webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.models import Rollout, Webhook
from controller.stats.sufficient import ArmStats


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutCreate(Strict):
    challenger: int = Field(ge=1)
    strategy: str = "canary"
    steps: list[float] | None = Field(default=None, description="Challenger traffic % per step")
    min_samples: int = Field(default=2000, ge=1)
    min_step_duration_s: float = Field(default=300.0, ge=0)
    shadow_min_samples: int | None = Field(default=None, ge=1)
    shadow_duration_s: float | None = Field(default=None, ge=0)
    max_duration_s: float = Field(default=6 * 3600.0, gt=0)
    on_timeout: str = "rollback"
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    guardrails: list[str] = Field(default_factory=list)
    guardrail_options: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RollbackRequest(Strict):
    to: int | None = Field(default=None, ge=1)
    reason: str = Field(default="", max_length=1000)


class WebhookCreate(Strict):
    url: str = Field(pattern=r"^https?://", max_length=2048)
    model: str | None = None
    secret: str | None = Field(default=None, min_length=16, max_length=256)


def arm_summary(stats: ArmStats) -> dict[str, Any]:
    def ms(q: float) -> float | None:
        value = stats.latency_quantile(q)
        return round(value * 1000, 3) if value is not None else None

    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": round(stats.error_rate, 6),
        "timeouts": stats.timeouts,
        "latency_p50_ms": ms(0.5),
        "latency_p99_ms": ms(0.99),
        "predicted": stats.predicted,
        "labels": stats.labels,
        "accuracy": round(stats.correct / stats.labels, 6) if stats.labels else None,
        "rewards": stats.rewards,
        "mean_reward": round(stats.reward_sum / stats.rewards, 6) if stats.rewards else None,
        "shadow_compared": stats.compared,
        "shadow_agreement": round(stats.agreed / stats.compared, 6) if stats.compared else None,
    }


class RolloutOut(BaseModel):
    id: int
    model: str
    champion_version: int
    challenger_version: int
    strategy: str
    state: str
    resume_state: str | None
    step_index: int
    steps: list[float]
    challenger_weight_bp: int
    mirror: bool
    plan: dict[str, Any]
    reason: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    ended_at: datetime | None
    observed_at: datetime | None
    verdict: str | None
    evidence: list[dict[str, Any]] | dict[str, Any] | None
    arms: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, row: Rollout, model: str, champion: int, challenger: int) -> RolloutOut:
        observed = row.observed or {}
        arms = observed.get("arms", {})
        return cls(
            id=row.id,
            model=model,
            champion_version=champion,
            challenger_version=challenger,
            strategy=row.strategy,
            state=row.state,
            resume_state=row.resume_state,
            step_index=row.step_index,
            steps=list(row.plan.get("steps", [])),
            challenger_weight_bp=row.challenger_weight_bp,
            mirror=row.mirror,
            plan=row.plan,
            reason=row.reason,
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            ended_at=row.ended_at,
            observed_at=row.observed_at,
            verdict=observed.get("verdict"),
            evidence=observed.get("evidence"),
            arms={
                arm: arm_summary(ArmStats.from_json(arms.get(arm, {})))
                for arm in ("champion", "challenger")
            },
        )


class ObservationOut(BaseModel):
    at: datetime
    state: str
    step_index: int
    challenger_weight_bp: int
    champion_requests: int
    challenger_requests: int
    evidence: dict[str, Any]


class WebhookOut(BaseModel):
    id: int
    url: str
    model: str | None
    created_at: datetime
    created_by: str
    secret: str | None = None

    @classmethod
    def of(cls, row: Webhook, model: str | None, reveal: bool = False) -> WebhookOut:
        return cls(
            id=row.id,
            url=row.url,
            model=model,
            created_at=row.created_at,
            created_by=row.created_by,
            secret=row.secret if reveal else None,
        )
