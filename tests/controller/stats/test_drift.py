"""The champion watch's detectors: valid e-values, the stated false-alarm bound, detection of
real changes within the delay Lorden's bound predicts, and targets that absorb estimate error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.stats.drift import (
    BOUNDED_BETS,
    Observation,
    Target,
    cusum_step,
    latency_cut,
    log_evalues,
    log_threshold,
    observe,
)
from controller.stats.drift_targets import (
    MAX_DETECTORS,
    Tolerances,
    baseline_targets,
    reference_targets,
)
from controller.stats.sufficient import ArmStats, latency_bucket


def _share_block(rng: np.random.Generator, p: float, n: int) -> Observation:
    hits = float(rng.binomial(n, p))
    return Observation(n=float(n), values=((1.0, hits), (0.0, n - hits)))


def _first_alarm(target: Target, blocks: list[Observation], threshold: float) -> int | None:
    w = [0.0] * target.width
    for index, block in enumerate(blocks):
        w = cusum_step(w, log_evalues(target, block))
        if max(w) >= threshold:
            return index
    return None


def test_bounded_e_values_have_expectation_one_at_the_edge_of_the_null() -> None:
    """Exactly, by summing over the binomial law: E[e] = 1 at the null's edge, less inside."""
    target = Target("class:a", "reference", "bounded", 0.3, 0.01, (1, -1))
    n = 50
    for p, side in ((0.31, slice(0, len(BOUNDED_BETS))), (0.29, slice(len(BOUNDED_BETS), None))):
        for truth, bound in ((p, 1.0 + 1e-9), (0.3, 1.0)):
            expectation = np.zeros(target.width)
            for k in range(n + 1):
                block = Observation(n=float(n), values=((1.0, float(k)), (0.0, float(n - k))))
                weight = math.comb(n, k) * truth**k * (1 - truth) ** (n - k)
                expectation += weight * np.exp(log_evalues(target, block))
            assert (expectation[side] <= bound).all(), expectation[side]


def test_false_alarms_stay_within_m_over_a() -> None:
    """P(alarm within m blocks) <= m / A (module docstring): with A chosen so that the bound is
    0.2 over 100 blocks, at most about 20 % of null streams alarm (here far fewer: the bound
    holds for the worst case inside the tolerance, and data at the centre is easier)."""
    rng = np.random.default_rng(11)
    target = Target("error_rate", "reference", "bounded", 0.05, 0.005, (1,))
    blocks, runs = 100, 300
    threshold = math.log(target.width * blocks / 0.2)
    alarms = 0
    for _ in range(runs):
        stream = [_share_block(rng, 0.055, 400) for _ in range(blocks)]  # at the null's edge
        alarms += _first_alarm(target, stream, threshold) is not None
    assert alarms / runs <= 0.2 + 3 * math.sqrt(0.2 * 0.8 / runs)


def test_threshold_is_the_stated_weekly_bound() -> None:
    # A = blocks per week / alpha, times the detector count: 10080 one-minute blocks a week.
    assert log_threshold(1, 60.0, 0.01) == pytest.approx(math.log(10080 / 0.01))
    assert log_threshold(MAX_DETECTORS, 60.0, 0.01) == pytest.approx(
        math.log(MAX_DETECTORS * 10080 / 0.01)
    )


def test_a_shift_is_detected_within_lordens_delay_and_the_detector_rearms() -> None:
    rng = np.random.default_rng(5)
    target = Target("class:a", "reference", "bounded", 0.3, 0.01, (1, -1))
    threshold = log_threshold(MAX_DETECTORS, 60.0, 0.01)
    stream = [_share_block(rng, 0.3, 1000) for _ in range(200)]
    assert _first_alarm(target, stream, threshold) is None
    shifted = [_share_block(rng, 0.33, 1000) for _ in range(400)]
    delay = _first_alarm(target, shifted, threshold)
    # KL per block of 0.33 vs the null's edge 0.31 at n=1000: ~0.95; Lorden: log(D A) / I.
    kl = 1000 * (0.33 * math.log(0.33 / 0.31) + 0.67 * math.log(0.67 / 0.69))
    assert delay is not None and delay <= 3 * threshold / kl
    assert _first_alarm(target, shifted[delay + 1 :], threshold) is not None  # re-armed


def test_accuracy_decay_is_detected_in_the_bad_direction_only() -> None:
    rng = np.random.default_rng(9)
    target = Target("accuracy", "reference", "bounded", 0.9, 0.02, (-1,))
    threshold = log_threshold(MAX_DETECTORS, 60.0, 0.01)
    better = [_share_block(rng, 0.97, 500) for _ in range(300)]
    worse = [_share_block(rng, 0.85, 500) for _ in range(300)]
    assert _first_alarm(target, better, threshold) is None
    assert _first_alarm(target, worse, threshold) is not None


def test_input_mean_shift_is_detected_from_block_summaries() -> None:
    rng = np.random.default_rng(2)
    target = Target("input:x", "reference", "gaussian", 0.0, 0.1, (1, -1), scale=1.0)
    threshold = log_threshold(MAX_DETECTORS, 60.0, 0.01)

    def block(shift: float) -> ArmStats:
        values = rng.normal(shift, 1.0, 200)
        stats = ArmStats()
        stats.inputs["x"] = [200.0, float(values.sum()), float((values**2).sum())]
        return stats

    def observations(shift: float, count: int) -> list[Observation]:
        out = []
        for _ in range(count):
            observation = observe(target, block(shift))
            assert observation is not None
            out.append(observation)
        return out

    assert _first_alarm(target, observations(0.0, 300), threshold) is None
    assert _first_alarm(target, observations(0.3, 300), threshold) is not None
    few = ArmStats()
    few.inputs["x"] = [5.0, 1.0, 1.0]
    assert observe(target, few) is None  # too few samples for the CLT


def test_latency_check_counts_requests_slower_than_the_baselines_p90() -> None:
    baseline = ArmStats()
    for i in range(1000):
        baseline.record_latency(0.010 + 0.00001 * i)
    cut = latency_cut(baseline)
    assert cut is not None
    index, share = cut
    assert index == latency_bucket(0.019) or index == latency_bucket(0.019) + 1
    assert 0.0 < share <= 0.1
    slow = ArmStats()
    for _ in range(100):
        slow.record_latency(0.050)
    target = Target("latency", "baseline", "bounded", share, 0.05, (1,), cut=index)
    observation = observe(target, slow)
    assert observation is not None and observation.observed_mean == 1.0


def test_targets_widen_tolerance_by_the_estimates_own_error() -> None:
    small = reference_targets(
        {"samples": 200, "class_frequencies": {"a": 0.3, "b": 0.7}}, Tolerances()
    )
    large = reference_targets(
        {"samples": 200_000, "class_frequencies": {"a": 0.3, "b": 0.7}}, Tolerances()
    )
    assert small[0].tolerance > large[0].tolerance > Tolerances().class_share
    baseline = ArmStats()
    for i in range(1000):
        baseline.record_response("2xx", 0.01, "a" if i % 3 else "b", 0.8)
    checks = {t.check for t in baseline_targets(baseline, Tolerances())}
    assert checks == {"error_rate", "latency", "class:a", "class:b", "confidence"}
    widths = sum(t.width for t in reference_targets(_full_profile(), Tolerances()))
    assert widths <= MAX_DETECTORS


def _full_profile() -> dict[str, object]:
    return {
        "samples": 1000,
        "class_frequencies": {str(i): 0.04 for i in range(25)},
        "confidence_histogram": [0.05] * 20,
        "accuracy": 0.9,
        "error_rate": 0.01,
        "inputs": {f"x{i}": {"n": 100, "mean": 0.0, "std": 1.0} for i in range(40)},
    }
