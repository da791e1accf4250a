"""Controller tables: rollouts (what the gateways route by) and the statistics gateways flush."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controller.vocabulary import RolloutState
from registry.db.base import Base, JSONType, UTCDateTime, utcnow


class Rollout(Base):
    """A challenger meeting live traffic. ``active_model_id`` is set only while the rollout is
    active; its unique constraint is how the database enforces one active rollout per model."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    active_model_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    champion_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    challenger_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    strategy: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=RolloutState.pending.value)
    resume_state: Mapped[str | None] = mapped_column(String(16))
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    challenger_weight_bp: Mapped[int] = mapped_column(Integer, default=0)
    mirror: Mapped[bool] = mapped_column(default=False)
    # The share of requests a shadow mirrors, in basis points (``--mirror-percent`` x 100).
    mirror_bp: Mapped[int] = mapped_column(Integer, default=10_000, server_default="10000")
    plan: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    alpha: Mapped[float] = mapped_column(Float, default=0.05)
    reason: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step_start_samples: Mapped[int] = mapped_column(Integer, default=0)
    observed: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How the weights reach the data plane (controller.routers.base.RouterSpec as JSON, with
    # its secret; None: the built-in gateway), and what the data plane last acknowledged.
    router: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    routed_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    routed_weight_bp: Mapped[int | None] = mapped_column(Integer)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    routing_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Every challenger of the rollout, in arm order (controller.rollouts.arms.ChallengerArm as
    # JSON): version, weight, status (active, dropped, suspended, promoted) and why. The
    # columns challenger_version_id and challenger_weight_bp mirror the first one still in
    # play (the promoted one once promoted), for routers and readers that know one challenger.
    challengers: Mapped[list[Any] | None] = mapped_column(JSONType)
    # When harm paused the rollout (``paused_on_harm``): the review timeout counts from here.
    harm_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A metric source's statistics are read up to here (plan.metrics; None: never yet).
    metrics_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128))


class ArmStatsDelta(Base):
    """What one gateway replica measured for one arm in one stratum since its previous flush.

    Rows are append-only and keyed by (replica, seq), so a retried flush is never counted twice
    and the reconciler gets cumulative statistics by merging every row of a rollout. The stratum
    is the rollout step (-1 while shadowing) and the time block within it (-1 for the step's
    warm-up), so the reconciler compares the arms within strata (docs/statistics.md).

    A champion's statistics outside rollouts have no rollout, step ``CHAMPION_STEP`` and time
    blocks counted from the epoch; the champion watch consumes them (docs/champion-watch.md)."""

    __tablename__ = "arm_stats_deltas"
    __table_args__ = (
        UniqueConstraint("replica_id", "seq"),
        Index("ix_arm_stats_deltas_model_id_stratum_step", "model_id", "stratum_step"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rollout_id: Mapped[int | None] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    arm: Mapped[str] = mapped_column(String(16))
    replica_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType)
    stratum_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stratum_block: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class FeedbackReceipt(Base):
    """One row per request id that received ground truth, so a label is never counted twice."""

    __tablename__ = "feedback_receipts"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RolloutStratum(Base):
    """One arm's cumulative statistics in one stratum of a rollout (step, time block), as the
    reconciler merged them from gateway deltas. A row per stratum keeps each look's write small:
    only the strata that received data change (docs/statistics.md, "Strata")."""

    __tablename__ = "rollout_strata"
    __table_args__ = (UniqueConstraint("rollout_id", "step", "block", "arm"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int] = mapped_column(Integer)
    block: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String(16))
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType)


class RolloutObservation(Base):
    """What the reconciler saw at one look: weights, sample sizes and each guardrail's evidence
    (the time series behind `shelf rollout status` and the quickstart report). ``evidence`` is a
    :class:`controller.stats.Report` as JSON."""

    __tablename__ = "rollout_observations"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16))
    step_index: Mapped[int] = mapped_column(Integer)
    challenger_weight_bp: Mapped[int] = mapped_column(Integer)
    champion_requests: Mapped[int] = mapped_column(BigInteger)
    challenger_requests: Mapped[int] = mapped_column(BigInteger)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # A/B/n: every challenger's weight, status, requests and Report at this look, by arm
    # (None for looks recorded before A/B/n; ``evidence`` is then the one challenger's).
    challengers: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Webhook(Base):
    """Where transitions are announced: one model's (``model_id``) or every model's (NULL)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


class WebhookDelivery(Base):
    """An outbox row: written in the transaction of the transition it announces, sent (and
    retried with backoff) by the reconciler, so no announcement is lost to a crash."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WatchPolicy(Base):
    """A model's champion-watch policy (``controller.watch.policy.WatchPolicySpec`` as JSON):
    shelf life, bake window, what decay inside it does."""

    __tablename__ = "watch_policies"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))


class ChampionWatch(Base):
    """What the champion watch knows of a model's champion: its status and since when, each
    check's evidence, the detectors' state (resumable after a restart) and the first period in
    production it is compared with. One row per model; a new champion starts a new watch."""

    __tablename__ = "champion_watches"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    previous_version_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    status_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
    checks: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    detectors: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    open_blocks: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    next_block: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChampionObservation(Base):
    """One judged time block of a champion: its statistics and each check's evidence then (the
    time series of ``shelf watch`` and the report's champion page)."""

    __tablename__ = "champion_observations"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int] = mapped_column(Integer)
    block: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType)
