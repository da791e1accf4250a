"""End to end: real model servers and a real gateway on loopback ports, both backends."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest

from controller.config import ControllerSettings
from registry.db.session import Database
from tests.controller.gateway.harness import (
    consume,
    fire,
    gateway_settings,
    infer_body,
    model_server,
    register,
    running_gateway,
    set_weight,
    start_rollout,
    wait_for_totals,
)

pytestmark = pytest.mark.e2e


def test_split_proportion_stickiness_and_exactly_once_statistics(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with model_server(version_name="v1") as one, model_server(version_name="v2") as two:
        champion, challenger = register(database, "fraud", one.url, two.url)
        rollout_id = start_rollout(database, "fraud", champion, challenger, weight_bp=2000)
        with running_gateway(gateway_settings(backend_settings), database) as gateway:
            gateway.wait_for(lambda r: r.get("fraud", {}).get("weight_bp") == 2000)
            n = 1200
            responses = asyncio.run(
                fire(
                    gateway.url,
                    n,
                    make=lambda i: ("POST", "/v2/models/fraud/infer", {"json": infer_body(i)}),
                )
            )
            assert all(r.status_code == 200 for r in responses)
            versions = [r.headers["x-shelf-version"] for r in responses]
            assert all(
                r.json()["model_version"] == f"v{v}"
                for r, v in zip(responses, versions, strict=True)
            )
            to_challenger = versions.count("2")
            sigma = math.sqrt(n * 0.2 * 0.8)
            assert abs(to_challenger - n * 0.2) < 4 * sigma

            keyed = asyncio.run(
                fire(
                    gateway.url,
                    300,
                    make=lambda i: (
                        "POST",
                        "/fraud/v2/models/fraud/infer",
                        {
                            "json": infer_body(i),
                            "headers": {"X-Shelf-Routing-Key": f"user-{i % 100}"},
                        },
                    ),
                )
            )
            by_user: dict[str, set[str]] = {}
            for i, response in enumerate(keyed):
                by_user.setdefault(f"user-{i % 100}", set()).add(
                    response.headers["x-shelf-version"]
                )
            assert all(len(arms) == 1 for arms in by_user.values())
            assert 0 < sum(arms == {"2"} for arms in by_user.values()) < 100

            total = n + 300
            totals = wait_for_totals(
                database,
                rollout_id,
                lambda t: t.champion.requests + t.challenger.requests >= total,
            )
        assert totals.challenger.requests == to_challenger + sum(
            r.headers["x-shelf-version"] == "2" for r in keyed
        )
        assert totals.champion.requests + totals.challenger.requests == total
        assert totals.champion.errors == totals.challenger.errors == 0
        assert sum(totals.challenger.predicted.values()) == totals.challenger.requests
        assert sum(totals.champion.confidence_counts) == totals.champion.requests
        # Shutdown flushed everything; nothing is left to count a second time.
        again, merged = consume(database, rollout_id)
        assert merged == 0
        assert again.champion.requests + again.challenger.requests == total


def test_weight_changes_reach_the_gateway_within_a_second(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with model_server(version_name="v1") as one, model_server(version_name="v2") as two:
        champion, challenger = register(database, "churn", one.url, two.url)
        settings = gateway_settings(backend_settings)
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: "churn" in r)
            assert gateway.routes()["churn"]["rollout_id"] is None
            rollout_id = start_rollout(database, "churn", champion, challenger, weight_bp=0)
            gateway.wait_for(lambda r: r["churn"]["rollout_id"] == rollout_id, timeout=1.0)
            for weight in (500, 10_000, 0):
                set_weight(database, rollout_id, weight)
                elapsed = gateway.wait_for(lambda r, w=weight: r["churn"]["weight_bp"] == w)
                assert elapsed < 1.0
                if weight in (0, 10_000):  # blue-green: everyone switches at once
                    expected = "2" if weight == 10_000 else "1"
                    for i in range(20):
                        response = httpx.post(
                            f"{gateway.url}/v2/models/churn/infer", json=infer_body(i)
                        )
                        assert response.headers["x-shelf-version"] == expected
            metrics = httpx.get(f"{gateway.url}/metrics").text
            assert 'shelf_gateway_route_weight_bp{model="churn"} 0.0' in metrics


def test_proxies_method_path_query_headers_and_body(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with model_server(version_name="v1") as one:
        register(database, "echo", one.url)
        with running_gateway(gateway_settings(backend_settings), database) as gateway:
            gateway.wait_for(lambda r: "echo" in r)
            response = httpx.put(
                f"{gateway.url}/echo/echo/a/b?x=1&y=two",
                content=b"payload",
                headers={"X-Custom": "yes", "Connection": "keep-alive", "TE": "trailers"},
            )
            assert response.status_code == 200
            seen = response.json()
            assert seen["method"] == "PUT"
            assert seen["path"] == "/echo/a/b"
            assert seen["query"] == "x=1&y=two"
            assert seen["body"] == "payload"
            assert seen["headers"]["x-custom"] == "yes"
            assert "te" not in seen["headers"]
            assert seen["headers"]["host"] == one.url.removeprefix("http://")
            assert response.headers["x-shelf-version"] == "1"
            assert response.headers["x-model-version"] == "v1"
            assert len(response.headers["x-shelf-request-id"]) <= 128
            assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
            ready = httpx.get(f"{gateway.url}/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True
