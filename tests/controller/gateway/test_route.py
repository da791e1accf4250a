"""Routes and arms compare field by field (a routing load that finds the same routes keeps
its table), in the interpreted build and as the compiled build's extension types."""

from __future__ import annotations

from typing import Any

import pytest

from controller.gateway.route import Route, RouteArm
from controller.strata import StratumClock

ARM_FIELDS: dict[str, Any] = {
    "name": "champion",
    "index": 0,
    "version_id": 11,
    "version": 1,
    "serving_url": "http://m1",
    "stats_key": (7, 1, 11, "champion"),
    "version_label": "1",
    "version_header": b"1",
    "weight_bp": 0,
    "bucket_start": 0,
}


def an_arm(**changes: Any) -> RouteArm:
    return RouteArm(**{**ARM_FIELDS, **changes})


def route_fields() -> dict[str, Any]:
    challenger = an_arm(name="challenger", index=1, version_id=12, version=2, weight_bp=500)
    return {
        "model": "fraud",
        "model_id": 1,
        "champion": an_arm(),
        "challenger": challenger,
        "weight_bp": 500,
        "mirror": False,
        "rollout_id": 7,
        "strategy": "canary",
        "state": "canary",
        "stratum": StratumClock(step=0, step_started_s=1.0e9, block_s=60.0, warmup_s=0.0),
        "mirror_bp": 10_000,
        "challengers": (challenger,),
        "ranges": ((0, 500),),
    }


def a_route(**changes: Any) -> Route:
    return Route(**{**route_fields(), **changes})


def test_equal_fields_make_equal_arms_and_routes() -> None:
    assert an_arm() == an_arm() and hash(an_arm()) == hash(an_arm())
    assert a_route() == a_route() and hash(a_route()) == hash(a_route())
    assert an_arm() != "champion" and a_route() != an_arm()


@pytest.mark.parametrize("field", sorted(ARM_FIELDS))
def test_arms_differing_in_any_field_differ(field: str) -> None:
    value = ARM_FIELDS[field]
    other = value + 1 if isinstance(value, int) else (None if field == "stats_key" else value * 2)
    assert an_arm() != an_arm(**{field: other})


@pytest.mark.parametrize("field", sorted(route_fields()))
def test_routes_differing_in_any_field_differ(field: str) -> None:
    changed = {
        "model": "other",
        "model_id": 2,
        "champion": an_arm(version=9),
        "challenger": None,
        "weight_bp": 600,
        "mirror": True,
        "rollout_id": 8,
        "strategy": "shadow",
        "state": "shadowing",
        "stratum": None,
        "mirror_bp": 5_000,
        "challengers": (),
        "ranges": ((0, 600),),
    }[field]
    assert a_route() != a_route(**{field: changed})


def test_arm_for_finds_an_arm_by_version() -> None:
    route = a_route()
    assert route.arm_for(1) is route.champion
    assert route.arm_for(2) is route.challengers[0]
    assert route.arm_for(3) is None
