"""Change-point contrasts: the false-alarm bound with an estimated expected value (rare classes
included), invariance to the unknown true mean, detection delay on a class shift, no alarm for
changes within the allowed one, bounded state and re-arming."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from controller.stats import contrast
from controller.stats.drift import Observation, Target, log_evalues, log_threshold


def _target(mean: float, n0: float, allowed: float = 0.005) -> Target:
    sd = math.sqrt(max(mean * (1.0 - mean), 1e-12))
    return Target("class:a", "reference", "contrast", mean, allowed, (1, -1), sd, n=n0)


def _block(rng: np.random.Generator, p: float, n: int) -> Observation:
    hits = float(rng.binomial(n, p))
    return Observation(n=float(n), values=((1.0, hits), (0.0, n - hits)))


def _first_alarm(
    target: Target, blocks: list[Observation], threshold: float
) -> tuple[int | None, dict[str, Any]]:
    state = contrast.fresh(target)
    for index, block in enumerate(blocks):
        state, statistic = contrast.step(target, state, index, block)
        if statistic >= threshold:
            return index, state
    return None, state


@pytest.mark.parametrize(
    ("share", "held_out", "per_block"),
    [(0.3, 2_000, 500), (0.02, 500, 500), (0.005, 20_000, 500)],
)
def test_false_alarms_stay_within_m_over_a_with_an_estimated_reference(
    share: float, held_out: int, per_block: int
) -> None:
    """P(alarm within m blocks) <= m / A: with A set for 0.2 over 60 blocks, at most 20 % of
    unchanged streams alarm, though the expected value is itself an estimate from ``held_out``
    rows (a widened tolerance is what the betting detectors need for this) and, for the rare
    shares, the blocks hold only 2.5 to 10 hits each (the normal approximation's worst case)."""
    rng = np.random.default_rng(17)
    blocks, runs = 60, 200
    threshold = math.log(blocks / 0.2)
    alarms = 0
    for _ in range(runs):
        estimate = rng.binomial(held_out, share) / held_out
        target = _target(estimate, held_out)
        stream = [_block(rng, share, per_block) for _ in range(blocks)]
        alarms += _first_alarm(target, stream, threshold)[0] is not None
    assert alarms / runs <= 0.2 + 3 * math.sqrt(0.2 * 0.8 / runs)


def test_the_statistic_does_not_depend_on_the_true_mean() -> None:
    """The contrasts cancel the unknown mean: shifting the expected value and every block by the
    same amount leaves every statistic unchanged."""
    rng = np.random.default_rng(3)
    means = rng.normal(0.0, 0.02, 40)
    base, moved = _target(0.3, 5_000), _target(0.45, 5_000)
    moved = Target(**{**{k: getattr(moved, k) for k in Target.__slots__}, "scale": base.scale})
    state_a, state_b = contrast.fresh(base), contrast.fresh(moved)
    for index, offset in enumerate(means):
        a = Observation(n=400.0, mean=0.3 + offset)
        b = Observation(n=400.0, mean=0.45 + offset)
        state_a, stat_a = contrast.step(base, state_a, index, a)
        state_b, stat_b = contrast.step(moved, state_b, index, b)
        assert stat_a == pytest.approx(stat_b, abs=1e-6)


def test_a_three_point_shift_is_found_within_about_five_blocks() -> None:
    """A 25 % class gains 3 points after 100 blocks of 2,000 requests, with a 20,000-row
    reference and one check's share of the default weekly budget (1/48): about the oracle's
    ``log(A) / I`` blocks, where the widened tolerance of a betting detector took 6 to 7."""
    rng = np.random.default_rng(8)
    threshold = log_threshold(1 / 48, 60.0, 0.01)
    delays = []
    for _ in range(40):
        target = _target(rng.binomial(20_000, 0.25) / 20_000, 20_000)
        before = [_block(rng, 0.25, 2_000) for _ in range(100)]
        after = [_block(rng, 0.28, 2_000) for _ in range(30)]
        hit, _ = _first_alarm(target, before + after, threshold)
        assert hit is not None and hit >= 100
        delays.append(hit - 100 + 1)
    assert float(np.median(delays)) <= 5


def test_changes_within_the_allowed_one_build_no_evidence() -> None:
    """Production 0.3 points off the reference (allowed 0.5) for 2,000 blocks: every bet loses
    on average, and against the reference the evidence is capped by its own error."""
    rng = np.random.default_rng(4)
    target = _target(0.25, 200_000)
    hit, state = _first_alarm(
        target, [_block(rng, 0.253, 2_000) for _ in range(2_000)], math.log(2_000 / 0.01)
    )
    assert hit is None
    assert len(state["starts"]) < 200  # thinned: the last 32 blocks, then 16 per doubling
    blocks = [int(start[0]) for start in state["starts"]]
    assert blocks[-32:] == list(range(2_000 - 32, 2_000))


def test_an_offset_from_the_first_block_alarms_against_the_reference() -> None:
    rng = np.random.default_rng(6)
    target = _target(0.25, 20_000)
    threshold = log_threshold(1 / 48, 60.0, 0.01)
    hit, _ = _first_alarm(target, [_block(rng, 0.29, 2_000) for _ in range(20)], threshold)
    assert hit is not None and hit <= 5


def test_a_persisting_change_alarms_again_after_rearming() -> None:
    """Re-armed from the reference alone, a change that persists alarms again after about the
    same delay as the first time."""
    rng = np.random.default_rng(1)
    target = _target(0.25, 20_000)
    threshold = log_threshold(1 / 48, 60.0, 0.01)
    shifted = [_block(rng, 0.28, 2_000) for _ in range(60)]
    hit, _ = _first_alarm(target, shifted, threshold)
    assert hit is not None
    again, _ = _first_alarm(target, shifted[hit + 1 :], threshold)
    assert again is not None and again <= 2 * (hit + 1) + 3


def test_bets_start_at_twice_the_allowed_change() -> None:
    assert contrast.bets(_target(0.25, 100, allowed=0.005))[0] == pytest.approx(0.01)
    assert max(contrast.bets(_target(0.25, 100))) <= contrast.MAX_BET
    assert contrast.bets(_target(0.25, 100, allowed=0.0))[0] == contrast.MIN_BET
    with pytest.raises(ValueError, match="contrast target"):
        log_evalues(_target(0.25, 100), Observation(n=1.0, mean=0.0))
