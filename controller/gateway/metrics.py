"""Prometheus metrics of one gateway (its own registry, so several apps can share a process).

The per-request pair (``shelf_gateway_requests_total`` and the duration histogram) is counted
in plain dicts of ints on the hot path and folded into the prometheus_client children when
``/metrics`` renders, so a scrape is exact: ``Counter.inc`` and ``Histogram.observe`` take a
lock and walk the buckets in Python on every call, which profiling showed on the hot path.

Under ``shelf gateway --workers N`` the workers share one port, so a scrape reaches any one of
them. They run in prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
the supervisor, and ``multiprocess_dir`` here): each keeps its values in a file of that folder,
and whichever worker is scraped renders the sum over all of them (counters, histograms) or the
most recent value of a live worker (the weight gauge). One series per metric rather than one
per worker: the workers are one gateway, and a per-worker label would show a scrape only the
worker it happened to reach. There the per-request pair goes straight to the shared files
(no batching): a scrape reaching one worker must see the others' requests too."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

PREFIX = "shelf_gateway_"
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "shelf_gateway_requests",
            "Proxied requests by model, version, arm and outcome",
            ["model", "version", "arm", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "shelf_gateway_request_duration_seconds",
            "Upstream round trip as seen by the gateway",
            ["model", "arm"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_requests = Counter(
            "shelf_gateway_shadow_requests",
            "Mirrored requests sent to a challenger, by outcome",
            ["model", "outcome"],
            registry=r,
        )
        self.forced = Counter(
            "shelf_gateway_forced_requests",
            "Requests that picked their arm with X-Shelf-Arm, by outcome; they are answered "
            "normally but counted only here (not in shelf_gateway_requests_total nor in the "
            "rollout's statistics)",
            ["model", "version", "arm", "outcome"],
            registry=r,
        )
        self.forced_refused = Counter(
            "shelf_gateway_forced_refused",
            "X-Shelf-Arm requests refused: forcing is off, no valid token, or no such arm",
            ["model", "reason"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            "shelf_gateway_shadow_dropped",
            "Mirrored requests dropped: the shadow queue was full (queue_full), or the gateway "
            "was saturated and shed them first (overload)",
            ["model", "reason"],
            registry=r,
        )
        self.route_weight = Gauge(
            "shelf_gateway_route_weight_bp",
            "Challenger weight in basis points per model",
            ["model"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.rejected = Counter(
            "shelf_gateway_rejected_requests",
            "Requests answered by the gateway itself (unknown model, body too large)",
            ["reason"],
            registry=r,
        )
        self.retried_on_champion = Counter(
            "shelf_gateway_retried_on_champion",
            "Requests the challenger failed without answering, sent to the champion instead",
            ["model", "outcome"],
            registry=r,
        )
        self.stats_dropped = Counter(
            "shelf_gateway_stats_dropped",
            "Observations (responses, labels, rewards) dropped because the statistics buffer "
            "was full while the database was unreachable",
            registry=r,
        )
        self.flush_failures = Counter(
            "shelf_gateway_flush_failures",
            "Failed statistics flushes (retried with the next flush)",
            registry=r,
        )
        self.routing_refresh_failures = Counter(
            "shelf_gateway_routing_refresh_failures",
            "Failed routing-table loads (the previous table stays in force)",
            registry=r,
        )
        self.feedback = Counter(
            "shelf_gateway_feedback",
            "Feedback submissions by result",
            ["result"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, str, str], Counter] = {}
        self._duration_children: dict[tuple[str, str], Histogram] = {}
        # Not folded yet: request counts by label values; per (model, arm), one count per
        # latency bucket (the last is +Inf) and, after them, the sum of the seconds.
        self._counts: dict[tuple[str, str, str, str], int] = {}
        self._latencies: dict[tuple[str, str], list[float]] = {}
        self._batched = multiprocess_dir is None

    def observe_request(
        self, model: str, version: str, arm: str, outcome: str, seconds: float | None
    ) -> None:
        """One proxied request (and its upstream round trip, if it was answered)."""
        key = (model, version, arm, outcome)
        if not self._batched:
            self._request_child(key).inc()
            if seconds is not None:
                self._duration_child((model, arm)).observe(seconds)
            return
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        if seconds is not None:
            dkey = (model, arm)
            latencies = self._latencies.get(dkey)
            if latencies is None:
                latencies = self._latencies[dkey] = [0.0] * (len(LATENCY_BUCKETS) + 2)
            latencies[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: the first bound >= it
            latencies[-1] += seconds

    def _request_child(self, key: tuple[str, str, str, str]) -> Counter:
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(*key)
        return counter

    def _duration_child(self, key: tuple[str, str]) -> Histogram:
        histogram = self._duration_children.get(key)
        if histogram is None:
            histogram = self._duration_children[key] = self.duration.labels(*key)
        return histogram

    def fold(self) -> None:
        """Add the batched observations to the Prometheus families."""
        counts, self._counts = self._counts, {}
        latencies, self._latencies = self._latencies, {}
        for key, count in counts.items():
            self._request_child(key).inc(count)
        for dkey, sums in latencies.items():
            histogram = self._duration_child(dkey)
            # prometheus_client has no public call to add many observations at once; these
            # are the attributes ``Histogram.observe`` itself adds to.
            buckets = histogram._buckets
            for index, observed in enumerate(sums[:-1]):
                if observed:
                    buckets[index].inc(observed)
            histogram._sum.inc(sums[-1])

    def set_weights(self, weights: dict[str, int]) -> None:
        for model, weight in weights.items():
            self.route_weight.labels(model).set(weight)

    def render(self) -> bytes:
        self.fold()
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        merged.register(_GatewayFamilies(MultiProcessCollector(None, str(self._multiprocess_dir))))
        return generate_latest(merged)


class _GatewayFamilies(Collector):
    """The gateway's own families from the shared folder (other modules' metrics, such as the
    reconciler's, are imported in a worker too, but are not the gateway's to show)."""

    def __init__(self, collector: MultiProcessCollector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        return (m for m in self._collector.collect() if m.name.startswith(PREFIX))
