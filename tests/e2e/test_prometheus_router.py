"""Traffic Shelf does not see: nginx splits it between two real model servers by the weights
Shelf sends through examples/nginx_router.py, a real Prometheus scrapes the servers, and the
guardrails judge what Prometheus measured. A worse challenger is rolled back, a good one
promoted, and nginx's behaviour follows."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.cli import exit_codes
from shelf.demo.traffic import Traffic
from tests.dataplane import nginx_or_skip, nginx_split
from tests.e2e.conftest import ShelfServer
from tests.e2e.rollout_helpers import (
    Behaviour,
    ModelServers,
    fast_server,
    model_servers,
    register_versions,
)
from tests.prometheus_server import prometheus, prometheus_or_skip

pytestmark = pytest.mark.e2e
__all__ = ["model_servers"]  # a fixture
SECRET = "router-secret-0123456789"
VERSION = 'version="fraud-v{version}"'


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ShelfServer]:
    nginx_or_skip()
    prometheus_or_skip()
    with fast_server(tmp_path) as running:
        yield running  # type: ignore[misc]


def rollout(
    server: ShelfServer, challenger: int, router_url: str, prometheus_url: str
) -> tuple[int, dict[str, object]]:
    result = server.cli(
        "rollout", "start", "fraud", "--challenger", str(challenger), "--steps", "50,100",
        "--min-samples", "150", "--min-step-duration", "1s", "--max-duration", "90s",
        "--guardrail", "error_rate", "--margin", "error_rate=0.05",
        "--router", "webhook", "--router-url", router_url, "--router-secret", SECRET,
        "--prometheus", prometheus_url,
        "--promql-requests", f"sum(model_requests_total{{{VERSION}}})",
        "--promql-errors", f'sum(model_requests_total{{{VERSION}, code=~"5.."}})',
        "--promql-latency-buckets",
        f"sum by (le) (model_request_duration_seconds_bucket{{{VERSION}}})",
        "--metrics-interval", "2s", "--metrics-lag", "2s",
        "--wait", "--timeout", "100s", "--json",
        check=False, timeout=150,
    )  # fmt: skip
    final: dict[str, object] = json.loads(result.stdout) if result.stdout.strip() else {}
    assert final, result.stderr
    return result.returncode, final


def test_guardrails_judge_prometheus_metrics_of_traffic_nginx_splits(
    server: ShelfServer, model_servers: ModelServers, tmp_path: Path
) -> None:
    register_versions(
        server,
        model_servers,
        tmp_path,
        Behaviour(latency_ms=1.0),
        Behaviour(latency_ms=1.0, error_rate=0.3),
        Behaviour(latency_ms=1.0),
    )
    v1, v2, v3 = model_servers.started
    targets = [p.url.removeprefix("http://") for p in (v1, v2, v3)]
    with (
        prometheus(tmp_path / "prometheus", targets) as prometheus_url,
        nginx_split(tmp_path / "nginx", "fraud", v1.url, SECRET) as split,
        Traffic(split.nginx_url, "fraud", concurrency=4, label_fraction=0.0),
    ):
        code, worse = rollout(server, 2, split.router_url, prometheus_url)
        assert code == exit_codes.ROLLED_BACK, worse.get("reason")
        assert "error_rate" in str(worse["reason"])
        arms = worse["arms"]
        assert isinstance(arms, dict) and arms["challenger"]["errors"] > 0
        time.sleep(1.0)
        assert split.versions(20) == Counter({"fraud-v1": 20})  # the rollback reached nginx

        code, better = rollout(server, 3, split.router_url, prometheus_url)
        assert code == exit_codes.OK, better.get("reason")
        time.sleep(1.0)
        assert split.versions(20) == Counter({"fraud-v3": 20})  # promoted: nginx sends all to v3
    champion = json.loads(server.cli("show", "fraud@champion", "--json").stdout)
    assert champion["version"] == 3
