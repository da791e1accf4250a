"""Settings of the controller's roles (gateway, reconciler), on top of the registry's.

Loaded once, like the registry's, from the same ``SHELF_*`` environment variables: a
``ControllerSettings`` *is* a registry ``Settings`` (the controller needs the database and the
home folder too), so the composition root loads this one object and hands it to every role."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from registry.config import Settings


class ControllerSettings(Settings):
    """Everything ``shelf server`` and its roles read: the registry's settings plus these."""

    secret_key: str | None = Field(
        default=None, description="HMAC key for request ids and webhooks"
    )
    max_request_body_mb: int = Field(default=64, ge=1, description="Gateway: larger bodies get 413")

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    gateway_upstream_timeout_s: float = Field(default=10.0, gt=0)
    gateway_retry_on_champion: bool = Field(
        default=True,
        description="Send a request the challenger refused or dropped before answering to the "
        "champion once (the failure still counts against the challenger)",
    )
    gateway_retry_timeouts: Literal["never", "idempotent", "always"] = Field(
        default="idempotent",
        description="Which challenger timeouts are retried on the champion too: none, those of "
        "idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE), or all",
    )
    gateway_forced_arm: Literal["token", "any", "off"] = Field(
        default="token",
        description="Who may pick an arm with 'X-Shelf-Arm' (answered normally, never counted "
        "in the rollout's statistics): a caller presenting a token of any role in "
        "'X-Shelf-Token' (on a gateway without tokens, a caller on loopback), any caller, or "
        "nobody",
    )
    gateway_max_connections: int = Field(default=512, ge=1)
    gateway_max_client_connections: int = Field(
        default=4096, ge=1, description="Concurrent client connections on the gateway (503 beyond)"
    )
    gateway_shadow_concurrency: int = Field(default=32, ge=1)
    gateway_shadow_queue: int = Field(default=1024, ge=0)
    gateway_shadow_busy_target: float = Field(
        default=0.55,
        gt=0,
        le=1,
        description="Shadow copies are sent only as far as the gateway's event loop stays at "
        "most this busy (a share of the time), spread evenly; the others are shed first",
    )
    gateway_shadow_shed_lag_ms: float = Field(
        default=2.0,
        ge=0,
        description="Shadow copies are dropped (shed first) while the gateway's event loop runs "
        "this late, i.e. while it is saturated; 0 never sheds",
    )
    gateway_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Gateway processes sharing one port ('shelf gateway --workers N')",
    )
    gateway_metrics_dir: Path | None = Field(
        default=None,
        description="Set by 'shelf gateway --workers' for its workers: where they keep their "
        "Prometheus metrics (prometheus_client's multiprocess mode), so that /metrics on any "
        "worker shows all of them",
    )
    gateway_refresh_interval_s: float = Field(default=0.25, gt=0, description="Routing-table poll")
    gateway_flush_interval_s: float = Field(default=1.0, gt=0, description="Statistics flush")
    gateway_stats_max_pending_arms: int = Field(
        default=10_000,
        ge=1,
        description="Arm statistics held in memory while the database is unreachable; "
        "observations beyond are dropped and counted (shelf_gateway_stats_dropped_total)",
    )
    gateway_prediction_path: str | None = Field(
        default=None, description="Dotted JSON path to the predicted class for non-OIP servers"
    )
    gateway_confidence_path: str | None = Field(
        default=None, description="Dotted JSON path to the confidence for non-OIP servers"
    )
    champion_block_s: float = Field(
        default=60.0,
        gt=0,
        description="Time block of a champion's statistics outside rollouts (gateway and "
        "champion watch must agree); the watch's false-alarm bound is per block",
    )
    gateway_input_samples_per_s: float = Field(
        default=50.0,
        gt=0,
        description="Champion watch: summarise the numeric OIP v2 inputs of at most this many "
        "requests a second per champion and gateway process (a body over 16 KiB counts as "
        "several): every request of a quiet model, a bounded cost at any rate",
    )
    feedback_ttl_hours: float = Field(default=72.0, gt=0)
    replica_id: str | None = Field(default=None, description="Default: hostname-pid")

    reconciler_host: str = "127.0.0.1"
    reconciler_port: int = Field(default=8090, ge=0, le=65535)
    reconciler_max_connections: int = Field(
        default=64, ge=1, description="Concurrent connections on the reconciler's probes"
    )
    reconciler_interval_s: float = Field(default=1.0, gt=0, description="Seconds between looks")
