"""Per-arm statistics from Prometheus: cumulative counters read at the edges of each time block,
differenced into the block's increments, and turned into ``ArmStats``.

Queries are PromQL templates in which ``{version}`` becomes the arm's version number, each
returning a cumulative counter (or, for latency, cumulative histogram buckets by ``le``)::

    requests:        sum(model_requests_total{model="fraud", version="{version}"})
    errors:          sum(model_requests_total{model="fraud", version="{version}", code=~"5.."})
    latency_buckets: sum by (le) (model_request_duration_seconds_bucket{version="{version}"})

Counters are read as instant vectors at the block's start and end (``/api/v1/query`` with
``time``) and subtracted, which gives exact integer increments where ``increase()`` would
extrapolate fractional ones. A counter that went down was reset (a restarted server): its
increment is its value at the end, as Prometheus's own ``increase()`` assumes.

What counters cannot give (docs/statistics.md, "Counters instead of requests"): the latency of
each request, only a bucket, and only of the requests the histogram times (exporters often time
errors too, where the gateway times successful answers only). Each bucket's requests are
recorded at its geometric midpoint, so the tail-latency guardrails (exceedance of a quantile)
are as exact as the buckets, while the mean-log-latency guardrail sees no spread within a
bucket. Requests are not routed by key, so the variance is per request; predicted classes,
confidences and labels need their own counters and are not read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import httpx

from controller.metric_sources.queries import PrometheusQueries
from controller.stats import ArmStats
from registry.errors import UpstreamError


@dataclass(frozen=True)
class Reading:
    """Cumulative counters of one arm at one instant; ``buckets`` maps ``le`` to a count."""

    requests: float
    errors: float
    buckets: dict[float, float] = field(default_factory=dict)


def _increment(before: float, after: float) -> int:
    return max(round(after if after < before else after - before), 0)


def increments(before: Reading, after: Reading) -> ArmStats:
    """One block's statistics from the readings at its edges."""
    stats = ArmStats()
    stats.requests = _increment(before.requests, after.requests)
    stats.errors = min(_increment(before.errors, after.errors), stats.requests)
    if stats.errors:
        stats.status_classes["5xx"] = stats.errors
    if stats.requests - stats.errors:
        stats.status_classes["2xx"] = stats.requests - stats.errors
    edges = sorted(after.buckets)
    below = 0
    lower = 0.0
    for le in edges:
        cumulative = _increment(before.buckets.get(le, 0.0), after.buckets[le])
        count = max(cumulative - below, 0)
        below = max(below, cumulative)
        if count:
            for _ in range(count):
                stats.record_latency(_midpoint(lower, le))
        lower = le if math.isfinite(le) else lower
    return stats


def _midpoint(lower: float, upper: float) -> float:
    if not math.isfinite(upper):
        return lower * 2.0 if lower > 0 else 1.0
    if lower <= 0:
        return upper / 2.0
    return math.sqrt(lower * upper)


class PrometheusSource:
    def __init__(self, queries: PrometheusQueries, client: httpx.Client) -> None:
        self.queries = queries
        self.client = client

    def _query(self, template: str, version: int, at: float) -> list[dict[str, Any]]:
        query = template.replace("{version}", str(version))
        try:
            response = self.client.get(
                f"{self.queries.url.rstrip('/')}/api/v1/query",
                params={"query": query, "time": f"{at:.3f}"},
                timeout=self.queries.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Prometheus at {self.queries.url}: {exc}") from None
        try:
            document = response.json()
        except ValueError:
            document = {}
        if response.status_code != 200 or document.get("status") != "success":
            raise UpstreamError(
                f"Prometheus refused {query!r}: {document.get('error') or response.status_code}"
            )
        data = document.get("data", {})
        if data.get("resultType") != "vector":
            raise UpstreamError(f"{query!r} must return an instant vector, not {data}")
        result: list[dict[str, Any]] = data.get("result", [])
        return result

    def _scalar(self, template: str, version: int, at: float) -> float:
        return sum(_value(sample) for sample in self._query(template, version, at))

    def reading(self, version: int, at: float) -> Reading:
        """Every counter of ``version`` at unix time ``at``."""
        q = self.queries
        buckets: dict[float, float] = {}
        if q.latency_buckets:
            for sample in self._query(q.latency_buckets, version, at):
                le = sample.get("metric", {}).get("le")
                if le is None:
                    raise UpstreamError(f"{q.latency_buckets!r} must keep the `le` label")
                buckets[float(le)] = buckets.get(float(le), 0.0) + _value(sample)
        return Reading(
            requests=self._scalar(q.requests, version, at),
            errors=self._scalar(q.errors, version, at),
            buckets=buckets,
        )


def _value(sample: dict[str, Any]) -> float:
    """An instant-vector sample's value (``[time, "value"]``); NaN counts as nothing."""
    value = float(sample["value"][1])
    return value if math.isfinite(value) else 0.0
