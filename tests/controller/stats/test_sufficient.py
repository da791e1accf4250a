"""ArmStats is a commutative monoid under merge, and survives a JSON round trip."""

from __future__ import annotations

import json
import math
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.stats import ArmStats

_response = st.tuples(
    st.sampled_from(["2xx", "4xx", "5xx", "timeout", "connection_error"]),
    st.floats(min_value=1e-7, max_value=120.0),
    st.sampled_from(["cat", "dog", "eel"]),
    st.floats(min_value=0.0, max_value=1.0),
)


@st.composite
def arms(draw: st.DrawFn) -> ArmStats:
    arm = ArmStats()
    for status, latency, predicted, confidence in draw(st.lists(_response, max_size=20)):
        arm.record_response(status, latency, predicted, confidence)
    for correct in draw(st.lists(st.booleans(), max_size=5)):
        arm.record_label(correct)
    for value in draw(st.lists(st.floats(min_value=-1e3, max_value=1e3), max_size=5)):
        arm.record_reward(value)
    for agreed in draw(st.lists(st.booleans(), max_size=5)):
        arm.record_agreement(agreed)
    return arm


def assert_same(a: ArmStats, b: ArmStats) -> None:
    """Equal counts exactly; float sums up to rounding (float addition is not associative)."""
    for f in fields(ArmStats):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float):
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), f.name
        else:
            assert x == y, f.name


@given(arms(), arms())
def test_merge_is_commutative(a: ArmStats, b: ArmStats) -> None:
    assert_same(a.merge(b), b.merge(a))


@given(arms(), arms(), arms())
def test_merge_is_associative(a: ArmStats, b: ArmStats, c: ArmStats) -> None:
    assert_same(a.merge(b).merge(c), a.merge(b.merge(c)))


@given(arms())
def test_empty_arm_is_the_identity(a: ArmStats) -> None:
    assert_same(a.merge(ArmStats()), a)
    assert_same(ArmStats().merge(a), a)


@given(arms())
@settings(max_examples=50)
def test_json_round_trip(a: ArmStats) -> None:
    assert_same(ArmStats.from_json(json.loads(json.dumps(a.to_json()))), a)


@given(st.lists(arms(), max_size=5))
@settings(max_examples=50)
def test_merging_deltas_equals_one_replica_seeing_everything(parts: list[ArmStats]) -> None:
    total = ArmStats.merge_all(parts)
    assert total.requests == sum(p.requests for p in parts)
    assert sum(total.latency_counts) == total.latency_n
