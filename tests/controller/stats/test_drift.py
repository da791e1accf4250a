"""The champion watch's detectors: valid e-values, the stated false-alarm bound (per check and
over every check with the budget split), detection of real changes within the delay Lorden's
bound predicts, and targets that absorb estimate error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.stats.drift import (
    BOUNDED_BETS,
    LOG_R_FLOOR,
    SECONDS_PER_WEEK,
    Observation,
    Target,
    estimate_halfwidth,
    latency_cut,
    log_evalues,
    log_threshold,
    mixture_statistic,
    observe,
    sr_step,
)
from controller.stats.drift_targets import (
    Tolerances,
    baseline_targets,
    check_weights,
    group_shares,
    reference_targets,
)
from controller.stats.sufficient import ArmStats, latency_bucket


def _share_block(rng: np.random.Generator, p: float, n: int) -> Observation:
    hits = float(rng.binomial(n, p))
    return Observation(n=float(n), values=((1.0, hits), (0.0, n - hits)))


def _first_alarm(target: Target, blocks: list[Observation], threshold: float) -> int | None:
    log_r = [LOG_R_FLOOR] * target.width
    for index, block in enumerate(blocks):
        log_r = sr_step(log_r, log_evalues(target, block))
        if mixture_statistic(log_r) >= threshold:
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
    threshold = math.log(blocks / 0.2)
    alarms = 0
    for _ in range(runs):
        stream = [_share_block(rng, 0.055, 400) for _ in range(blocks)]  # at the null's edge
        alarms += _first_alarm(target, stream, threshold) is not None
    assert alarms / runs <= 0.2 + 3 * math.sqrt(0.2 * 0.8 / runs)


def test_threshold_is_the_stated_weekly_bound() -> None:
    # A = blocks per week / (weight alpha): 10080 one-minute blocks a week.
    assert log_threshold(1.0, 60.0, 0.01) == pytest.approx(math.log(10080 / 0.01))
    assert log_threshold(1 / 48, 60.0, 0.01) == pytest.approx(math.log(48 * 10080 / 0.01))
    assert log_threshold(0.0, 60.0, 0.01) == math.inf


def test_any_false_alarm_in_a_week_over_every_check_stays_within_alpha() -> None:
    """The stated guarantee on no-change streams: several checks (bounded two-sided and
    one-sided, Gaussian inputs) share the budget by their weights; with a "week" of 150 blocks
    and alpha 0.3 (to be measurable), at most 30 % of champions see any alarm in their week.
    The data sit at the edge of every null (the worst case the bound covers)."""
    rng = np.random.default_rng(23)
    targets = [
        Target("error_rate", "reference", "bounded", 0.02, 0.005, (1,)),
        Target("class:a", "reference", "bounded", 0.3, 0.01, (1, -1)),
        Target("input:x", "reference", "gaussian", 0.0, 0.05, (1, -1), scale=1.0),
        Target("input:y", "reference", "gaussian", 0.0, 0.05, (1, -1), scale=1.0),
    ]
    weights = check_weights(targets, group_shares(t.against for t in targets))
    assert sum(weights.values()) == pytest.approx(0.5)  # half stays for the first period
    blocks, runs, alpha = 150, 200, 0.3
    block_s = SECONDS_PER_WEEK / blocks
    thresholds = {k: log_threshold(w, block_s, alpha) for k, w in weights.items()}

    def block(target: Target) -> Observation:
        if target.kind == "gaussian":
            mean = rng.normal(0.05, 1.0 / math.sqrt(100))  # a block mean of 100 at the edge
            return Observation(n=100.0, mean=mean, sd=1.0)
        edge = target.mean + target.tolerance
        return _share_block(rng, edge, 500)

    alarmed = 0
    for _ in range(runs):
        log_r = {t.key: [LOG_R_FLOOR] * t.width for t in targets}
        alarm = False
        for _ in range(blocks):
            for target in targets:
                log_r[target.key] = sr_step(log_r[target.key], log_evalues(target, block(target)))
                alarm |= mixture_statistic(log_r[target.key]) >= thresholds[target.key]
        alarmed += alarm
    assert alarmed / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_the_mixture_statistic_is_the_log_of_the_average() -> None:
    assert mixture_statistic([0.0, 0.0]) == pytest.approx(0.0)
    assert mixture_statistic([math.log(3.0), LOG_R_FLOOR]) == pytest.approx(math.log(1.5))
    # Shiryaev-Roberts: R_b = (1 + R_{b-1}) e_b, from R_0 = 0
    log_r = sr_step([LOG_R_FLOOR], [math.log(2.0)])
    log_r = sr_step(log_r, [math.log(3.0)])
    assert log_r[0] == pytest.approx(math.log((1 + 2) * 3), rel=1e-9)


def test_a_shift_is_detected_within_lordens_delay_and_the_detector_rearms() -> None:
    rng = np.random.default_rng(5)
    target = Target("class:a", "reference", "bounded", 0.3, 0.01, (1, -1))
    threshold = log_threshold(1 / 48, 60.0, 0.01)
    stream = [_share_block(rng, 0.3, 1000) for _ in range(200)]
    assert _first_alarm(target, stream, threshold) is None
    shifted = [_share_block(rng, 0.33, 1000) for _ in range(400)]
    delay = _first_alarm(target, shifted, threshold)
    # KL per block of 0.33 vs the null's edge 0.31 at n=1000: ~0.95; Lorden: log(A) / I.
    kl = 1000 * (0.33 * math.log(0.33 / 0.31) + 0.67 * math.log(0.67 / 0.69))
    assert delay is not None and delay <= 3 * threshold / kl
    assert _first_alarm(target, shifted[delay + 1 :], threshold) is not None  # re-armed


def test_accuracy_decay_is_detected_in_the_bad_direction_only() -> None:
    rng = np.random.default_rng(9)
    target = Target("accuracy", "reference", "bounded", 0.9, 0.02, (-1,))
    threshold = log_threshold(1 / 48, 60.0, 0.01)
    better = [_share_block(rng, 0.97, 500) for _ in range(300)]
    worse = [_share_block(rng, 0.85, 500) for _ in range(300)]
    assert _first_alarm(target, better, threshold) is None
    assert _first_alarm(target, worse, threshold) is not None


def test_input_mean_shift_is_detected_from_block_summaries() -> None:
    rng = np.random.default_rng(2)
    target = Target("input:x", "reference", "gaussian", 0.0, 0.1, (1, -1), scale=1.0)
    threshold = log_threshold(1 / 48, 60.0, 0.01)

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
    profile = {"error_rate": 0.3, "class_frequencies": {"a": 0.3, "b": 0.7}}
    small = reference_targets({"samples": 200, **profile}, Tolerances())
    large = reference_targets({"samples": 200_000, **profile}, Tolerances())
    # the larger of the allowed change and the estimate's own 99.9 % half-width
    assert small[0].tolerance == pytest.approx(estimate_halfwidth(0.3 * 0.7, 200))
    assert small[0].tolerance > large[0].tolerance == Tolerances().error_rate
    # class shares carry the estimate's size instead (controller.stats.contrast)
    share = next(t for t in small if t.check == "class:a")
    assert (share.check, share.kind, share.n) == ("class:a", "contrast", 200)
    assert share.tolerance == Tolerances().class_share
    assert share.scale == pytest.approx(math.sqrt(0.3 * 0.7))
    baseline = ArmStats()
    for i in range(1000):
        baseline.record_response("2xx", 0.01, "a" if i % 3 else "b", 0.8)
    checks = {t.check for t in baseline_targets(baseline, Tolerances())}
    assert checks == {"error_rate", "latency", "class:a", "class:b", "confidence"}
    targets = reference_targets(_full_profile(), Tolerances())
    shares = group_shares(["reference", "previous"])
    weights = check_weights(targets, shares)
    assert len(weights) == len(targets) and sum(weights.values()) == pytest.approx(1 / 3)


def _full_profile() -> dict[str, object]:
    return {
        "samples": 1000,
        "class_frequencies": {str(i): 0.04 for i in range(25)},
        "confidence_histogram": [0.05] * 20,
        "accuracy": 0.9,
        "error_rate": 0.01,
        "inputs": {f"x{i}": {"n": 100, "mean": 0.0, "std": 1.0} for i in range(40)},
    }
