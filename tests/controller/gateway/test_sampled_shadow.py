"""Sampled shadow: a share of the requests is mirrored, sticky by routing key, and both arms'
statistics cover the mirrored requests only (so the comparison is like for like)."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import ControllerSettings
from controller.gateway.split import bucket, mirrored
from registry.db.session import Database
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
from tests.controller.gateway.test_gateway_failures_shadow_feedback import metric


@given(st.binary(max_size=32), st.integers(0, 10_000), st.integers(0, 10_000))
def test_a_key_is_mirrored_by_its_bucket_and_stays_mirrored_as_the_share_grows(
    key: bytes, smaller: int, larger: int
) -> None:
    smaller, larger = sorted((smaller, larger))
    assert mirrored(b"fraud", key, smaller) == (bucket(b"fraud", key) < smaller)
    assert not mirrored(b"fraud", key, smaller) or mirrored(b"fraud", key, larger)


@pytest.mark.e2e
def test_a_quarter_is_mirrored_and_the_champion_is_judged_on_that_quarter(
    backend_settings: ControllerSettings, database: Database
) -> None:
    # No shedding: every mirrored request must reach the challenger for the counts to match.
    settings = gateway_settings(backend_settings, gateway_shadow_shed_lag_ms=0.0)
    with model_server(version_name="v1") as one, model_server(version_name="v2") as two:
        champion, challenger = register(database, "fraud", one.url, two.url)
        rollout_id = start_rollout(
            database, "fraud", champion, challenger, 0, mirror=True, mirror_bp=2500
        )
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: r.get("fraud", {}).get("mirror_percent") == 25.0)
            n = 800
            unkeyed = asyncio.run(
                fire(
                    gateway.url,
                    n,
                    make=lambda i: ("POST", "/v2/models/fraud/infer", {"json": infer_body(i)}),
                )
            )
            users = [f"user-{i}" for i in range(100)]
            keyed = asyncio.run(
                fire(
                    gateway.url,
                    300,
                    make=lambda i: (
                        "POST",
                        "/v2/models/fraud/infer",
                        {
                            "json": infer_body(i),
                            "headers": {"X-Shelf-Routing-Key": users[i % 100]},
                        },
                    ),
                )
            )
            answers = unkeyed + keyed
            assert {r.headers["x-shelf-version"] for r in answers} == {"1"}
            in_sample = [u for u in users if bucket(b"fraud", u.encode()) < 2500]
            expected = len(in_sample) * 3 + n * 0.25
            sigma = math.sqrt(n * 0.25 * 0.75)

            # Every copy the gateway sent (its own counter) must have reached the statistics,
            # on both sides: the champion's answer is recorded when its copy is sent.
            def copies_sent() -> float:
                text = httpx.get(f"{gateway.url}/metrics").text
                return metric(text, "shelf_gateway_shadow_requests_total", 'model="fraud"')

            def settled(t: object) -> bool:
                c, m = t.challenger, t.champion  # type: ignore[attr-defined]
                sent = copies_sent()
                return (
                    sent > 0
                    and c.requests == sent
                    and c.requests == m.requests
                    and c.compared == c.requests
                )

            totals = wait_for_totals(database, rollout_id, settled, timeout=20)
            assert abs(totals.challenger.requests - expected) < 4 * sigma
            assert totals.champion.requests == totals.challenger.requests

            mirrored_user = users.index(in_sample[0])
            other_user = next(i for i, u in enumerate(users) if u not in in_sample)
            with httpx.Client() as client:
                for index, status, attributed in (
                    (mirrored_user, 200, None),
                    (other_user, 202, False),
                ):
                    request_id = keyed[index].headers["x-shelf-request-id"]
                    label = client.post(
                        f"{gateway.url}/v1/feedback", json={"request_id": request_id, "label": "a"}
                    )
                    assert label.status_code == status
                    assert label.json().get("attributed") is attributed
