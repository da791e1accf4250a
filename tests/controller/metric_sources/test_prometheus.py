"""Counters read from Prometheus become the same ArmStats the gateway records."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

from controller.metric_sources.prometheus import PrometheusSource, Reading, increments
from controller.metric_sources.queries import PrometheusQueries
from controller.stats.sufficient import latency_bucket
from registry.errors import UpstreamError
from shelf.demo.processes import start_model_server
from tests.prometheus_server import prometheus

INF = math.inf


def test_increments_difference_counters_and_buckets() -> None:
    before = Reading(100, 3, {0.01: 80, 0.05: 95, INF: 97})
    after = Reading(150, 5, {0.01: 110, 0.05: 140, INF: 145})
    stats = increments(before, after)
    assert (stats.requests, stats.errors) == (50, 2)
    assert stats.status_classes == {"5xx": 2, "2xx": 48}
    assert stats.latency_n == 48  # 30 under 10 ms, 15 more under 50 ms, 3 slower
    assert stats.latency_counts[latency_bucket(0.005)] == 30
    assert stats.latency_counts[latency_bucket(math.sqrt(0.01 * 0.05))] == 15
    assert stats.latency_counts[latency_bucket(0.1)] == 3


def test_a_reset_counter_counts_from_zero() -> None:
    stats = increments(Reading(500, 20), Reading(40, 1))  # the model server restarted
    assert (stats.requests, stats.errors) == (40, 1)
    assert increments(Reading(7, 0), Reading(7, 0)).is_empty()


def test_readings_from_a_real_prometheus_scraping_a_model_server(tmp_path: Path) -> None:
    server = start_model_server("fraud-v1", tmp_path / "logs", latency_ms=1.0, error_rate=0.2)
    host_port = server.url.removeprefix("http://")
    try:
        with prometheus(tmp_path / "prometheus", [host_port]) as url:
            queries = PrometheusQueries(
                url=url,
                requests='sum(model_requests_total{version="fraud-v{version}"})',
                errors='sum(model_requests_total{version="fraud-v{version}", code=~"5.."})',
                latency_buckets="sum by (le) (model_request_duration_seconds_bucket"
                '{version="fraud-v{version}"})',
            )
            source = PrometheusSource(queries, httpx.Client())
            _wait_scraped(source)
            start = time.time()
            body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [3]}]}
            sent = 200
            with httpx.Client() as client:
                for _ in range(sent):
                    client.post(f"{server.url}/v2/models/fraud/infer", json=body)
            time.sleep(2.5)  # two scrapes
            end = time.time()
            stats = increments(source.reading(1, start), source.reading(1, end))
            assert stats.requests == sent
            assert 0 < stats.errors < sent // 2
            assert stats.latency_n == stats.requests  # its histogram times errors too
            assert source.reading(2, end) == Reading(0.0, 0.0, {})  # no such version: nothing
            bad = PrometheusSource(queries.model_copy(update={"requests": "sum("}), source.client)
            with pytest.raises(UpstreamError, match="Prometheus refused"):
                bad.reading(1, end)
    finally:
        server.stop()


def _wait_scraped(source: PrometheusSource) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = source.client.get(
            f"{source.queries.url}/api/v1/query", params={"query": "up"}
        ).json()
        if any(r["value"][1] == "1" for r in response["data"]["result"]):
            return
        time.sleep(0.2)
    raise AssertionError("prometheus never scraped the model server")
