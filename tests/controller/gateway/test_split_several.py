"""The split with several challengers (A/B/n): disjoint bucket ranges that grow with their
weights, so keys stay on their arm as weights change and a dropped challenger's keys (and only
those) return to the champion; request ids name every arm."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.gateway.request_id import RequestIdSigner
from controller.gateway.split import (
    BUCKETS,
    bucket,
    draw,
    goes_to_challenger,
    pick,
    slot_start,
    unit_bucket,
)
from controller.plans import RolloutPlan
from controller.vocabulary import ARM_NAMES, MAX_CHALLENGERS

keys = st.binary(min_size=1, max_size=32)
counts = st.integers(min_value=1, max_value=MAX_CHALLENGERS)
steps = st.lists(st.floats(0.5, 100), min_size=1, max_size=5, unique=True).map(sorted)


def ranges(challengers: int, weights: list[int]) -> tuple[tuple[int, int], ...]:
    return tuple((slot_start(i, challengers), w) for i, w in enumerate(weights))


@settings(max_examples=300)
@given(keys, counts, steps)
def test_as_the_steps_advance_a_key_only_moves_from_the_champion_to_one_challenger(
    key: bytes, challengers: int, percents: list[float]
) -> None:
    plan = RolloutPlan(steps=tuple(percents))
    seen = -1
    for index in range(len(percents)):
        weight = plan.challenger_weight_bp(index, challengers)
        assert weight * challengers <= BUCKETS  # the ranges fit, and never overlap
        arm = pick(b"fraud", key, ranges(challengers, [weight] * challengers))
        if seen >= 0:
            assert arm == seen  # once on a challenger, always on that challenger
        seen = arm


@given(keys, st.integers(2, MAX_CHALLENGERS), st.data())
def test_dropping_a_challenger_returns_only_its_keys_to_the_champion(
    key: bytes, challengers: int, data: st.DataObject
) -> None:
    weight = RolloutPlan(steps=(50,)).challenger_weight_bp(0, challengers)
    dropped = data.draw(st.integers(0, challengers - 1))
    before = pick(b"fraud", key, ranges(challengers, [weight] * challengers))
    weights = [0 if i == dropped else weight for i in range(challengers)]
    after = pick(b"fraud", key, ranges(challengers, weights))
    assert after == (-1 if before == dropped else before)


@given(keys, st.integers(0, BUCKETS))
def test_one_challenger_splits_exactly_as_before(key: bytes, weight: int) -> None:
    assert (pick(b"m", key, ((0, weight),)) == 0) == goes_to_challenger(b"m", key, weight)


def test_each_challenger_gets_its_share_of_keys() -> None:
    layout = ranges(3, [2500, 2500, 2500])
    seen = [pick(b"m", f"user-{i}".encode(), layout) for i in range(20_000)]
    for arm in (-1, 0, 1, 2):
        assert abs(seen.count(arm) - 5000) < 4 * (20_000 * 0.25 * 0.75) ** 0.5
    unkeyed = [pick(b"m", None, layout) for _ in range(20_000)]
    assert abs(unkeyed.count(2) - 5000) < 4 * (20_000 * 0.25 * 0.75) ** 0.5


@given(st.integers(0, len(ARM_NAMES) - 1))
def test_request_ids_name_every_arm(index: int) -> None:
    signer = RequestIdSigner(b"k" * 32)
    token = signer.issue(7, 3, index, "fraud", 1_700_000_000)
    assert signer.verify(token).arm == ARM_NAMES[index]
    assert ARM_NAMES[:2] == ("champion", "challenger")  # one-challenger ids are unchanged


@given(st.binary(min_size=1, max_size=32))
def test_one_draw_gives_the_keys_routing_bucket_and_unit_bucket(key: bytes) -> None:
    assert draw(b"fraud", key) == (bucket(b"fraud", key), unit_bucket(b"fraud", key))
    point, unit = draw(b"fraud", None)
    assert 0 <= point < BUCKETS and unit is None
