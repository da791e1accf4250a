"""Forced arms (``X-Shelf-Arm``): which arm a header names, who may force one, and that a
forced request is answered but never counted (statistics, feedback) on a real gateway."""

from __future__ import annotations

import time

import httpx
import pytest

from controller.config import ControllerSettings
from controller.gateway.forced import ForcedArmPolicy, ForcedArmRefused, forced_arm
from controller.gateway.request_id import RequestIdSigner
from controller.gateway.route import Route, RouteArm
from registry.auth import Authenticator
from registry.config import Role, TokenSpec
from registry.db.session import Database
from tests.controller.gateway.harness import (
    gateway_settings,
    infer_body,
    model_server,
    register,
    running_gateway,
    start_rollout,
    wait_for_totals,
)
from tests.controller.gateway.test_gateway_failures_shadow_feedback import metric

TOKEN = "tester-token-0123456789"


def arm(name: str, index: int, version: int) -> RouteArm:
    label = str(version)
    return RouteArm(name, index, version + 100, version, "http://x", None, label, label.encode())


def route(challenger: bool = True, challengers: tuple[RouteArm, ...] = ()) -> Route:
    return Route(
        model="fraud",
        model_id=1,
        champion=arm("champion", 0, 3),
        challenger=arm("challenger", 1, 4) if challenger else None,
        weight_bp=0,
        mirror=False,
        rollout_id=9 if challenger else None,
        strategy="canary" if challenger else None,
        state="canary" if challenger else None,
        challengers=challengers,
    )


def refusal(call: object) -> ForcedArmRefused:
    with pytest.raises(ForcedArmRefused) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_a_header_names_an_arm_by_role_or_version() -> None:
    table = route()
    assert forced_arm(table, "challenger") is table.challenger
    assert forced_arm(table, " Champion ") is table.champion
    assert forced_arm(table, "4") is table.challenger
    assert forced_arm(table, "3") is table.champion


def test_an_arm_the_route_does_not_have_is_a_conflict_and_nonsense_a_bad_request() -> None:
    no_rollout = refusal(lambda: forced_arm(route(challenger=False), "challenger"))
    assert (no_rollout.status, no_rollout.code) == (409, "conflict")
    assert "no active rollout" in no_rollout.message
    other = refusal(lambda: forced_arm(route(), "7"))
    assert other.status == 409 and "champion v3, challenger v4" in other.message
    for value in ("canary", "", "-1", "²", "99999999999"):
        bad = refusal(lambda v=value: forced_arm(route(), v))  # type: ignore[misc]
        assert (bad.status, bad.code) == (400, "invalid_input"), value


def test_who_may_force_follows_the_setting() -> None:
    tokens = Authenticator([TokenSpec(name="tester", role=Role.read, token=TOKEN)])
    open_gateway = Authenticator([])
    ForcedArmPolicy("any", tokens).check(None, "203.0.113.9")
    off = refusal(lambda: ForcedArmPolicy("off", tokens).check(TOKEN.encode(), "127.0.0.1"))
    assert off.status == 403
    policy = ForcedArmPolicy("token", tokens)
    policy.check(TOKEN.encode(), "203.0.113.9")
    policy.check(f"Bearer {TOKEN}".encode(), "203.0.113.9")
    assert refusal(lambda: policy.check(None, "127.0.0.1")).status == 401
    assert refusal(lambda: policy.check(b"wrong-token-0123456789", "127.0.0.1")).status == 401
    loopback_only = ForcedArmPolicy("token", open_gateway)
    loopback_only.check(None, "127.0.0.1")
    assert refusal(lambda: loopback_only.check(None, "203.0.113.9")).status == 403


def test_an_uncounted_request_id_says_so_and_a_counted_one_is_unchanged() -> None:
    signer = RequestIdSigner(b"k" * 32)
    counted = signer.verify(signer.issue(5, 7, 1, "fraud", int(time.time())))
    forced = signer.verify(signer.issue(5, 7, 1, "fraud", int(time.time()), counted=False))
    assert counted.counted and not forced.counted
    assert (forced.arm, forced.rollout_id, forced.version_id) == ("challenger", 5, 7)


@pytest.mark.e2e
def test_forced_requests_reach_the_arm_at_weight_zero_and_are_never_counted(
    backend_settings: ControllerSettings, database: Database
) -> None:
    settings = gateway_settings(
        backend_settings, tokens=[TokenSpec(name="tester", role=Role.read, token=TOKEN)]
    )
    with model_server(version_name="v1") as one, model_server(version_name="v2") as two:
        champion, challenger = register(database, "fraud", one.url, two.url)
        rollout_id = start_rollout(database, "fraud", champion, challenger, weight_bp=0)
        with running_gateway(settings, database) as gateway, httpx.Client() as client:
            gateway.wait_for(lambda r: r.get("fraud", {}).get("rollout_id") == rollout_id)
            url = f"{gateway.url}/v2/models/fraud/infer"
            forced = {"X-Shelf-Arm": "challenger", "X-Shelf-Token": TOKEN}
            answers = [client.post(url, json=infer_body(i), headers=forced) for i in range(20)]
            assert {r.status_code for r in answers} == {200}
            assert {r.headers["x-shelf-version"] for r in answers} == {"2"}
            assert {r.json()["model_version"] for r in answers} == {"v2"}
            by_number = client.post(
                url, json=infer_body(1), headers={"X-Shelf-Arm": "1", "X-Shelf-Token": TOKEN}
            )
            assert by_number.headers["x-shelf-version"] == "1"

            refused = client.post(url, json=infer_body(1), headers={"X-Shelf-Arm": "challenger"})
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            unknown = client.post(
                url, json=infer_body(1), headers={"X-Shelf-Arm": "9", "X-Shelf-Token": TOKEN}
            )
            assert unknown.status_code == 409 and "not one of its arms" in unknown.json()["message"]

            normal = [client.post(url, json=infer_body(i)) for i in range(10)]
            assert {r.headers["x-shelf-version"] for r in normal} == {"1"}

            label = client.post(
                f"{gateway.url}/v1/feedback",
                json={"request_id": answers[0].headers["x-shelf-request-id"], "label": "fraud"},
            )
            assert label.status_code == 202 and label.json()["attributed"] is False

            totals = wait_for_totals(
                database, rollout_id, lambda t: t.champion.requests >= 10, timeout=10
            )
            time.sleep(0.5)  # one more flush: anything forced would have landed by now
            totals = wait_for_totals(database, rollout_id, lambda t: True)
            assert totals.challenger.requests == 0 and totals.challenger.labels == 0
            assert totals.champion.requests == 10

            text = client.get(f"{gateway.url}/metrics").text
            assert metric(text, "shelf_gateway_forced_requests_total", 'arm="challenger"') == 20
            assert metric(text, "shelf_gateway_forced_requests_total", 'arm="champion"') == 1
            assert metric(text, "shelf_gateway_requests_total", 'arm="challenger"') == 0
            assert metric(text, "shelf_gateway_forced_refused_total", 'reason="unauthorized"') == 1


def test_an_abn_route_forces_any_challenger_by_name_or_version() -> None:
    first, second = arm("challenger", 1, 4), arm("challenger-2", 2, 5)
    several = route(challengers=(first, second))
    assert forced_arm(several, "challenger") is several.challenger
    assert forced_arm(several, "challenger-2") is second
    assert forced_arm(several, "5") is second
    other = refusal(lambda: forced_arm(several, "6"))
    assert other.status == 409 and "challenger-2 v5" in other.message
