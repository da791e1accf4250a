"""End to end: failures, shadow traffic and delayed feedback through a real gateway."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest

from controller.config import ControllerSettings
from controller.gateway.request_id import RequestIdSigner
from registry.db.session import Database
from shelf.demo.model_server import true_label
from tests.conftest import free_port
from tests.controller.gateway.harness import (
    fire,
    gateway_settings,
    infer_body,
    model_server,
    register,
    running_gateway,
    start_rollout,
    wait_for_totals,
)

pytestmark = pytest.mark.e2e


def metric(text: str, name: str, *labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include every ``labels`` item (k="v")."""
    total = 0.0
    for line in text.splitlines():
        ours = line.startswith(name + "{") or line.startswith(name + " ")
        if ours and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_unknown_model_large_body_unreachable_and_slow_upstreams(
    backend_settings: ControllerSettings, database: Database
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with model_server(version_name="slow", latency_ms=800, latency_jitter=0.0) as slow:
        champion, challenger = register(database, "flaky", dead, slow.url)
        rollout_id = start_rollout(database, "flaky", champion, challenger, weight_bp=5000)
        settings = gateway_settings(
            backend_settings, max_request_body_mb=1, gateway_upstream_timeout_s=0.3
        )
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: "flaky" in r)
            url = gateway.url
            missing = httpx.post(f"{url}/v2/models/nope/infer", json=infer_body(1))
            assert missing.status_code == 404
            assert missing.json()["error"] == "not_found"
            big = httpx.post(f"{url}/flaky/predict", content=b"x" * (1024 * 1024 + 1))
            assert big.status_code == 413
            assert big.json()["error"] == "payload_too_large"

            def make(i: int) -> tuple[str, str, dict[str, object]]:
                key = {"X-Shelf-Routing-Key": f"k{i}"}
                return "POST", "/v2/models/flaky/infer", {"json": infer_body(i), "headers": key}

            responses = asyncio.run(fire(url, 40, concurrency=8, make=make))
            by_status = {502: "1", 504: "2"}
            for response in responses:
                assert response.status_code in by_status
                assert response.headers["x-shelf-version"] == by_status[response.status_code]
                assert response.json()["error"] in ("upstream_error", "upstream_timeout")
            bad = sum(r.status_code == 502 for r in responses)
            timeouts = sum(r.status_code == 504 for r in responses)
            assert bad and timeouts
            totals = wait_for_totals(
                database,
                rollout_id,
                lambda t: t.champion.requests + t.challenger.requests >= 40,
            )
            metrics = httpx.get(f"{url}/metrics").text
        assert totals.champion.connection_errors == totals.champion.errors == bad
        assert totals.challenger.timeouts == totals.challenger.errors == timeouts
        requests = "shelf_gateway_requests_total"
        champion_errors = metric(
            metrics, requests, 'model="flaky"', 'arm="champion"', 'outcome="connection_error"'
        )
        assert champion_errors == bad
        assert metric(metrics, requests, 'arm="challenger"', 'outcome="timeout"') == timeouts
        rejected = "shelf_gateway_rejected_requests_total"
        assert metric(metrics, rejected, 'reason="not_found"') == 1
        assert metric(metrics, rejected, 'reason="too_large"') == 1


def test_shadow_copies_never_answer_nor_slow_the_champion(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with (
        model_server(version_name="v1", latency_ms=0) as fast,
        model_server(version_name="v2", latency_ms=150, latency_jitter=0.0) as slow,
    ):
        champion, challenger = register(database, "mirror", fast.url, slow.url)
        rollout_id = start_rollout(
            database, "mirror", champion, challenger, weight_bp=0, mirror=True, strategy="shadow"
        )
        settings = gateway_settings(
            backend_settings, gateway_shadow_queue=4, gateway_shadow_concurrency=2
        )
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: r.get("mirror", {}).get("mirror") is True)
            latencies = []
            with httpx.Client(base_url=gateway.url) as client:
                for i in range(60):
                    start = time.perf_counter()
                    response = client.post("/v2/models/mirror/infer", json=infer_body(i))
                    latencies.append(time.perf_counter() - start)
                    assert response.status_code == 200
                    assert response.headers["x-shelf-version"] == "1"
                    assert response.json()["model_version"] == "v1"
            latencies.sort()
            # The challenger takes 150 ms; the champion's answers do not wait for it.
            assert latencies[int(0.9 * len(latencies))] < 0.1
            deadline = time.monotonic() + 5
            while True:  # the last copies are still on their way to the challenger
                metrics = httpx.get(f"{gateway.url}/metrics").text
                dropped = metric(metrics, "shelf_gateway_shadow_dropped_total", 'model="mirror"')
                sent = metric(metrics, "shelf_gateway_shadow_requests_total", 'model="mirror"')
                if sent + dropped == 60 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert sent + dropped == 60
            assert dropped > 0  # 60 copies into a queue of 4 drained at 2 x 150 ms
            totals = wait_for_totals(
                database,
                rollout_id,
                lambda t: t.champion.requests == sent and t.challenger.requests == sent,
            )
        # A dropped copy takes the champion's answer out of the comparison too: both arms are
        # measured on the same requests.
        assert totals.champion.requests == sent
        assert totals.challenger.requests == sent
        assert totals.challenger.compared == sent
        assert 0 <= totals.challenger.agreed <= totals.challenger.compared


def test_feedback_lands_in_the_arm_that_answered(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with (
        model_server(version_name="v1", accuracy=0.9) as one,
        model_server(version_name="v2", accuracy=0.5) as two,
    ):
        champion, challenger = register(database, "credit", one.url, two.url)
        rollout_id = start_rollout(database, "credit", champion, challenger, weight_bp=5000)
        settings = gateway_settings(backend_settings, feedback_ttl_hours=1.0)
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: r.get("credit", {}).get("rollout_id") == rollout_id)
            n = 120
            responses = asyncio.run(
                fire(
                    gateway.url,
                    n,
                    make=lambda i: ("POST", "/v2/models/credit/infer", {"json": infer_body(i)}),
                )
            )
            expected = {"1": [0, 0], "2": [0, 0]}  # version -> [labels, correct]
            with httpx.Client(base_url=gateway.url) as client:
                for i, response in enumerate(responses):
                    request_id = response.headers["x-shelf-request-id"]
                    version = response.headers["x-shelf-version"]
                    predicted = response.json()["outputs"][0]["data"][0]
                    if i % 4 == 3:
                        answer = client.post(
                            "/v1/feedback", json={"request_id": request_id, "value": 2.5}
                        )
                        assert answer.status_code == 200, answer.text
                        continue
                    answer = client.post(
                        "/v1/feedback", json={"request_id": request_id, "label": true_label(i)}
                    )
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["correct"] == (predicted == true_label(i))
                    expected[version][0] += 1
                    expected[version][1] += predicted == true_label(i)
                first = responses[0].headers["x-shelf-request-id"]
                again = client.post("/v1/feedback", json={"request_id": first, "label": "1"})
                assert again.status_code == 409
                raw = bytearray(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
                raw[3] ^= 1
                forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
                tampered = client.post("/v1/feedback", json={"request_id": forged, "label": "1"})
                assert tampered.status_code == 422
                assert client.post("/v1/feedback", content=b"[1,2]").status_code == 422
                signer = RequestIdSigner(settings.secret_key.encode())  # type: ignore[union-attr]
                old = signer.issue(rollout_id, champion, 0, "1", int(time.time()) - 7200)
                expired = client.post("/v1/feedback", json={"request_id": old, "label": "1"})
                assert expired.status_code == 410
                # Outside rollouts the champion watch takes the label (not the rollout's arms);
                # a request id of a version that no longer exists is accepted, not attributed.
                outside = signer.issue(None, champion, 0, "1", int(time.time()))
                accepted = client.post("/v1/feedback", json={"request_id": outside, "value": 1})
                assert accepted.status_code == 200
                assert accepted.json()["rollout_id"] is None
                gone = signer.issue(None, 999_999, 0, "1", int(time.time()))
                ignored = client.post("/v1/feedback", json={"request_id": gone, "value": 1})
                assert ignored.status_code == 202
                assert ignored.json()["attributed"] is False
            rewards = n // 4
            totals = wait_for_totals(
                database,
                rollout_id,
                lambda t: (
                    t.champion.labels + t.challenger.labels == n - rewards
                    and t.champion.rewards + t.challenger.rewards == rewards
                ),
            )
        assert (totals.champion.labels, totals.champion.correct) == tuple(expected["1"])
        assert (totals.challenger.labels, totals.challenger.correct) == tuple(expected["2"])
        assert totals.champion.reward_sum + totals.challenger.reward_sum == 2.5 * rewards
