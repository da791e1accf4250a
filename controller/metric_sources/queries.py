"""What a rollout says about its metric source: light enough for the API schemas and the CLI,
which must not load the statistics to describe it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PrometheusQueries(BaseModel):
    """Where a rollout's arms are measured (``metrics`` in the rollout's API body)."""

    url: str = Field(max_length=2048, description="Prometheus base URL, e.g. http://prom:9090")
    requests: str = Field(max_length=2000, description="Cumulative request counter, {version}")
    errors: str = Field(max_length=2000, description="Cumulative server-error counter")
    latency_buckets: str | None = Field(
        default=None, max_length=2000, description="Cumulative histogram buckets `by (le)`"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=60)
    interval_s: float = Field(
        default=10.0, ge=1, le=3600, description="How often the counters are read (a window)"
    )
    lag_s: float = Field(
        default=5.0, ge=0, le=600, description="How long until a moment's scrapes have landed"
    )
