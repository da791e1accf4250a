"""Stratified comparisons, variance by randomisation unit, the change detector and the three
zones, each on a constructed example whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm

from controller.stats import ArmStats, evaluate, evaluate_strata, parse_guardrails
from controller.stats.evidence import format_effect
from controller.stats.sufficient import PROPORTION_UNITS, UNIT_BUCKETS, unit_design_effect

ALPHA = 0.05


def counts(requests: int, errors: int) -> ArmStats:
    return ArmStats(requests=requests, errors=errors, status_classes={"2xx": requests - errors})


def test_stratification_removes_simpsons_bias() -> None:
    # Early hours: 0.5 % errors, challenger at 10 %; late hours: 2 %, challenger at 50 %.
    # Both arms have the same rate in each period, so the true effect is exactly zero.
    early = (counts(90_000, 450), counts(10_000, 50))
    late = (counts(50_000, 1_000), counts(50_000, 1_000))
    g = parse_guardrails(["error_rate"])
    pooled = evaluate(g, early[0].merge(late[0]), early[1].merge(late[1]), ALPHA)
    stratified = evaluate_strata(g, [early, late], ALPHA)
    pooled_effect = pooled.guardrails[0].effect
    assert pooled_effect is not None and pooled_effect > 0.005  # Simpson: the ramp looks harmful
    assert pooled.verdict == "harm"
    assert stratified.guardrails[0].effect == pytest.approx(0.0, abs=1e-15)
    assert stratified.verdict != "harm"


def test_a_stratum_with_one_empty_arm_contributes_nothing() -> None:
    g = parse_guardrails(["error_rate"])
    both = (counts(5_000, 50), counts(5_000, 50))
    champion_only = (counts(5_000, 500), ArmStats())
    report = evaluate_strata(g, [both, champion_only], ALPHA)
    assert report.guardrails[0].effect == pytest.approx(0.0, abs=1e-15)


def keyed_arm(rng: np.random.Generator, users: int, n: int) -> tuple[ArmStats, np.ndarray, list]:
    """Requests of users with their own error propensity, recorded with their unit bucket."""
    propensity = rng.gamma(0.1, 0.3, users).clip(0, 1)
    unit = rng.integers(0, UNIT_BUCKETS, users)
    who = rng.integers(0, users, n)
    keyed = rng.random(n) < 0.8
    failed = rng.random(n) < propensity[who]
    arm = ArmStats()
    groups = []
    for i in range(n):
        bucket = int(unit[who[i]]) if keyed[i] else None
        arm.record_response("5xx" if failed[i] else "2xx", 0.01, unit=bucket)
        groups.append(f"u{bucket}" if bucket is not None else f"r{i}")
    return arm, failed.astype(float), groups


def test_bucketed_variance_is_the_cluster_robust_variance() -> None:
    arm, y, groups = keyed_arm(np.random.default_rng(3), users=300, n=4_000)
    deff = unit_design_effect([arm], [1.0 / arm.requests], PROPORTION_UNITS)
    per_request = float(((y - y.mean()) ** 2).sum()) / len(y) ** 2
    fitted = sm.OLS(y, np.ones(len(y))).fit(
        cov_type="cluster", cov_kwds={"groups": np.unique(groups, return_inverse=True)[1]}
    )
    assert deff > 2.0  # sticky users: far more variance than per request
    assert deff * per_request == pytest.approx(float(fitted.bse[0]) ** 2, rel=1e-9)


def test_unit_variance_follows_a_user_across_strata() -> None:
    # The same users with the same outcomes in two strata: the per-request variance of the
    # average halves, the clustered one does not (contributions add before squaring).
    rng = np.random.default_rng(4)
    first, _, _ = keyed_arm(rng, users=200, n=2_000)
    second = ArmStats.from_json(first.to_json())
    single = unit_design_effect([first], [1.0 / first.requests], PROPORTION_UNITS)
    half = 0.5 / first.requests
    combined = unit_design_effect([first, second], [half, half], PROPORTION_UNITS)
    assert combined == pytest.approx(2 * single, rel=0.02)
    assert unit_design_effect([counts(1000, 10)], [1e-3], PROPORTION_UNITS) == 1.0


def test_keyed_traffic_widens_the_interval() -> None:
    rng = np.random.default_rng(5)
    a, _, _ = keyed_arm(rng, users=300, n=4_000)
    b, _, _ = keyed_arm(rng, users=300, n=4_000)
    g = parse_guardrails(["error_rate"])
    clustered = evaluate(g, a, b, ALPHA).guardrails[0]
    a.units = b.units = None
    per_request = evaluate(g, a, b, ALPHA).guardrails[0]
    assert clustered.effect == per_request.effect
    assert clustered.ci_high is not None and per_request.ci_high is not None
    assert clustered.ci_high - clustered.effect > 1.4 * (per_request.ci_high - per_request.effect)


def test_change_detector_catches_a_late_spike_the_cumulative_test_dilutes() -> None:
    equal = [(counts(2_000, 20), counts(2_000, 20)) for _ in range(20)]
    spike = [(counts(2_000, 20), counts(2_000, 80))]
    g = parse_guardrails(["error_rate"])
    without = evaluate_strata(g, equal + spike, ALPHA)
    detected = evaluate_strata(g, equal + spike, ALPHA, max_strata=40, labels=["x"] * 20 + ["s"])
    assert without.verdict != "harm"
    assert detected.verdict == "harm"
    e = detected.guardrails[0]
    assert "change since s" in e.detail
    assert e.ci_low is not None and e.tolerance is not None and e.ci_low > e.tolerance
    assert e.effect == pytest.approx(0.03)


def test_alpha_is_split_between_the_cumulative_test_and_the_windows() -> None:
    g = parse_guardrails(["error_rate"])
    strata = [(counts(2_000, 20), counts(2_000, 26))] * 3
    one = evaluate_strata(g, strata, ALPHA).guardrails[0]
    split = evaluate_strata(g, strata, ALPHA, max_strata=10).guardrails[0]
    assert one.p_value is not None and split.p_value is not None
    assert split.p_value >= one.p_value  # the cumulative test runs at a smaller share
    assert split.ci_high is not None and one.ci_high is not None and split.ci_high > one.ci_high


@pytest.mark.parametrize(
    ("challenger_errors", "verdict"),
    [(1_000, "no_harm_within_margin"), (1_350, "continue"), (1_800, "harm")],
    ids=["within-margin", "between", "beyond-tolerance"],
)
def test_three_zones(challenger_errors: int, verdict: str) -> None:
    g = parse_guardrails(["error_rate"], {"error_rate": {"margin": 0.002, "tolerance": 0.005}})
    report = evaluate(g, counts(100_000, 1_000), counts(100_000, challenger_errors), ALPHA)
    e = report.guardrails[0]
    assert e.verdict == verdict
    assert e.ci_low is not None and e.ci_high is not None
    assert (e.ci_low > 0.005) == (verdict == "harm")  # the printed interval agrees
    assert (e.ci_high <= 0.002) == (verdict == "no_harm_within_margin")
    if verdict == "harm":
        assert e.effect_conservative == e.ci_low
        assert e.p_value is not None and e.p_value <= e.alpha


def test_relative_thresholds_follow_the_champion() -> None:
    g = parse_guardrails(["error_rate"], {"error_rate": {"margin": "10%", "tolerance": "+20%"}})[0]
    assert g.thresholds(0.02) == pytest.approx((0.002, 0.004))
    latency = parse_guardrails(["latency"], {"latency": {"tolerance": "10%"}})[0]
    assert latency.thresholds(123.0)[1] == pytest.approx(math.log(1.1))
    e = evaluate([g], counts(50_000, 1_000), counts(50_000, 1_000), ALPHA).guardrails[0]
    assert e.margin == pytest.approx(0.002) and e.tolerance == pytest.approx(0.004)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"margin": 0.01, "tolerance": 0.005}, "below margin"),
        ({"tolerance": "lots"}, "percentage like"),
        ({"tolerance": "-5%"}, "must be above 0%"),
    ],
)
def test_bad_thresholds_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_guardrails(["error_rate"], {"error_rate": options})
    with pytest.raises(ValueError, match="cannot be relative"):
        parse_guardrails(["class_shift"], {"class_shift": {"margin": "5%"}})


def shifted(n: int, probs: tuple[float, ...]) -> ArmStats:
    return ArmStats(requests=n, predicted={f"c{i}": round(n * p) for i, p in enumerate(probs)})


def test_a_shift_within_its_margin_is_never_harm() -> None:
    g = parse_guardrails(["class_shift"])  # margin = tolerance = 0.05 TV
    base = (0.40, 0.25, 0.15, 0.12, 0.08)
    small = (0.37, 0.25, 0.15, 0.12, 0.11)  # TV 0.03
    large = (0.32, 0.25, 0.15, 0.12, 0.16)  # TV 0.08
    near = evaluate(g, shifted(400_000, base), shifted(400_000, small), ALPHA).guardrails[0]
    far = evaluate(g, shifted(400_000, base), shifted(400_000, large), ALPHA).guardrails[0]
    assert near.verdict == "no_harm_within_margin" and near.effect == pytest.approx(0.03)
    assert far.verdict == "harm" and far.ci_low is not None and far.ci_low > 0.05


def test_effects_read_in_people_units() -> None:
    assert format_effect(0.0062, "rate") == "+0.62 pp"
    assert format_effect(math.log(1.073), "log_ratio") == "+7.3 %"
    assert format_effect(0.031, "tv") == "TV 0.031"
    g = parse_guardrails(["latency"])
    slow = ArmStats(latency_n=10_000, log_latency_sum=10_000 * math.log(0.06))
    slow.log_latency_sumsq = 10_000 * (math.log(0.06) ** 2 + 0.25)
    fast = ArmStats(latency_n=10_000, log_latency_sum=10_000 * math.log(0.05))
    fast.log_latency_sumsq = 10_000 * (math.log(0.05) ** 2 + 0.25)
    e = evaluate(g, fast, slow, ALPHA).guardrails[0]
    assert e.verdict == "harm" and e.unit == "log_ratio"
    assert e.summary().startswith("+20 %") and "at least +" in e.summary()
