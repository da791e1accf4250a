"""Issue 10, requirement 4: PostgreSQL unavailable for 10 s under load.

``shelf server`` runs against a PostgreSQL cluster of the test's own, with live traffic through
the gateway during a canary. The cluster is stopped for 10 s, then started again. Meanwhile
the gateway keeps answering from its last routing table and holds its statistics in memory;
the API answers 503 with a clear body. Afterwards the API recovers without a restart, the
reconciler resumes, and the statistics it merged equal, exactly, what the clients saw."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from controller.config import ControllerSettings
from shelf import migrate
from tests.e2e.conftest import make_server
from tests.e2e.postgres_cluster import PostgresCluster, private_postgres
from tests.e2e.rollout_helpers import (
    FAST_LOOP,
    Behaviour,
    ModelServers,
    model_servers,
    register_versions,
    rollout_json,
)

__all__ = ["model_servers", "private_postgres"]  # fixtures

pytestmark = pytest.mark.e2e

OUTAGE_S = 10.0
BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [3]}]}


class Traffic:
    """Clients that count, per version, the answers the gateway gave them."""

    def __init__(self, gateway_url: str, clients: int = 3) -> None:
        self.url = gateway_url
        self.answered: Counter[str] = Counter()
        self.failed: Counter[int] = Counter()
        self.last_request_id = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                answer = client.post("/v2/models/fraud/infer", json=BODY)
                with self._lock:
                    if answer.status_code == 200:
                        self.answered[answer.headers["x-shelf-version"]] += 1
                        self.last_request_id = answer.headers["x-shelf-request-id"]
                    else:
                        self.failed[answer.status_code] += 1
                time.sleep(0.005)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def snapshot(self) -> tuple[dict[str, int], dict[int, int]]:
        with self._lock:
            return dict(self.answered), dict(self.failed)


def metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def test_the_gateway_serves_through_a_database_outage_and_nothing_is_lost_or_counted_twice(
    private_postgres: PostgresCluster, model_servers: ModelServers, tmp_path: Path
) -> None:
    cluster = private_postgres
    settings = ControllerSettings(
        home=tmp_path / "shelf-home", database_url=cluster.url, artifact_uri=None
    )
    migrate.upgrade(cluster.url)
    server = make_server(settings, tmp_path, **FAST_LOOP)
    server.start()
    try:
        register_versions(server, model_servers, tmp_path, Behaviour(), Behaviour())
        server.cli(
            "rollout", "start", "fraud", "--challenger", "2", "--steps", "50",
            "--min-samples", "1000000", "--min-step-duration", "1s", "--max-duration", "600s",
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while (
            httpx.get(f"{server.gateway_url}/v1/routes").json()["models"]["fraud"]["weight_bp"]
            != 5000
        ):
            assert time.monotonic() < deadline, "the canary never reached 50 %"
            time.sleep(0.1)

        with Traffic(server.gateway_url) as traffic:
            time.sleep(2.0)
            before_outage, _ = traffic.snapshot()
            cluster.stop()
            outage_started = time.monotonic()
            api = httpx.get(f"{server.url}/v1/models", timeout=10)
            assert api.status_code == 503, api.text
            assert api.json()["error"] == "database_unavailable"
            assert "unreachable" in api.json()["message"]
            assert api.headers["retry-after"]
            feedback = httpx.post(
                f"{server.gateway_url}/v1/feedback",
                json={"request_id": traffic.last_request_id, "label": "1"},
                timeout=10,
            )
            assert feedback.status_code == 503, feedback.text
            assert feedback.json()["error"] == "database_unavailable"
            cli = server.cli("versions", "fraud", check=False)
            assert cli.returncode != 0 and "Traceback" not in cli.stderr
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
            during_outage, failed = traffic.snapshot()
            cluster.start()
            deadline = time.monotonic() + 30
            while httpx.get(f"{server.url}/v1/models", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the API never recovered"
                time.sleep(0.2)
            time.sleep(2.0)
        answered, failed = traffic.snapshot()
        assert failed == {}, f"clients saw errors: {failed}"
        served_in_outage = sum(during_outage.values()) - sum(before_outage.values())
        assert served_in_outage > 100  # the gateway kept serving from its last routing table

        expected = {"champion": answered.get("1", 0), "challenger": answered.get("2", 0)}
        deadline = time.monotonic() + 30
        while True:
            status = rollout_json(server)
            arms = status["arms"]
            assert isinstance(arms, dict)
            seen = {arm: arms[arm]["requests"] for arm in expected}
            if seen == expected or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert seen == expected  # every answer counted once: none lost, none twice
        assert status["state"] == "canary"  # the reconciler resumed and is still judging
        observed_at = str(status["observed_at"])
        time.sleep(1.0)
        assert str(rollout_json(server)["observed_at"]) > observed_at
        metrics = httpx.get(f"{server.url}/metrics/", follow_redirects=True).text
        gateway_metrics = httpx.get(f"{server.gateway_url}/metrics").text
        assert metric(gateway_metrics, "shelf_gateway_flush_failures_total") > 0
        assert metric(gateway_metrics, "shelf_gateway_stats_dropped_total") == 0
        assert metric(metrics, "shelf_reconciler_leader") == 1
    finally:
        server.stop()
