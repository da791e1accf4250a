"""Guardrail parsing and the per-metric sequential tests on simulated arms."""

from __future__ import annotations

import json
import math
import statistics
import time
from typing import Any

import pytest

from controller.stats import (
    DEFAULT_GUARDRAILS,
    GUARDRAIL_METRICS,
    ArmStats,
    Evidence,
    Guardrail,
    Report,
    evaluate,
    parse_guardrails,
)
from tests.controller.stats.arms import simulated_arm

N = 20_000
ALPHA = 0.05

# Challengers that are clearly worse on one metric, and the true effect on that metric.
HARMFUL: dict[str, tuple[dict[str, Any], float]] = {
    "error_rate": ({"error_rate": 0.03}, 0.02),
    "latency": ({"median_s": 0.06}, math.log(1.2)),
    "latency_p95": ({"log_sd": 0.7}, math.nan),
    "latency_p99": ({"log_sd": 0.7}, math.nan),
    "accuracy": ({"accuracy": 0.8}, -0.1),
    "reward": ({"reward_mean": 0.8}, -0.2),
    "class_shift": ({"classes": (0.4, 0.3, 0.3)}, 0.1),
    "confidence_shift": ({"confidence_beta": (2.0, 2.0)}, math.nan),
}


@pytest.fixture(scope="module")
def champion() -> ArmStats:
    return simulated_arm(1, N)


@pytest.fixture(scope="module")
def twin() -> ArmStats:
    """Same distributions as the champion, other randomness."""
    return simulated_arm(2, N)


def one(metric: str, a: ArmStats, b: ArmStats, **options: Any) -> Evidence:
    report = evaluate(
        parse_guardrails([metric], {metric: options} if options else None), a, b, ALPHA
    )
    return report.guardrails[0]


# -- parsing ---------------------------------------------------------------------------------


def test_no_names_means_the_defaults() -> None:
    assert DEFAULT_GUARDRAILS == ("error_rate", "latency", "latency_p99")
    assert tuple(g.metric for g in parse_guardrails([])) == DEFAULT_GUARDRAILS
    assert set(DEFAULT_GUARDRAILS) <= set(GUARDRAIL_METRICS)


def test_every_metric_parses_with_defaults() -> None:
    parsed = parse_guardrails(list(GUARDRAIL_METRICS))
    assert [g.metric for g in parsed] == list(GUARDRAIL_METRICS)
    errors = parse_guardrails(["error_rate"])[0]
    assert (errors.margin, errors.tolerance) == (0.001, 0.001)
    latency = parse_guardrails(["latency"])[0]
    assert latency.margin == pytest.approx(math.log(1.05))
    assert latency.tolerance == pytest.approx(math.log(1.10))


def test_options_override_defaults() -> None:
    g = parse_guardrails(
        ["error_rate", "reward"],
        {"error_rate": {"margin": 0.01, "mixing": 0.1, "min_samples": 500},
         "reward": {"higher_is_better": False}},
    )  # fmt: skip
    assert g[0] == Guardrail("error_rate", 0.01, 0.1, 500, "higher")
    assert g[1].worse == "higher"
    assert parse_guardrails(["reward"])[0].worse == "lower"


@pytest.mark.parametrize(
    ("names", "options", "message"),
    [
        (["errors"], None, "unknown guardrail 'errors'"),
        (["error_rate", "error_rate"], None, "listed twice"),
        (["latency"], {"error_rate": {"margin": 0.01}}, "not in the list"),
        (["latency"], {"latency": {"margn": 0.1}}, "unknown option 'margn'"),
        (["latency"], {"latency": {"higher_is_better": True}}, "unknown option"),
        (["error_rate"], {"error_rate": {"margin": -0.01}}, "margin must be a positive"),
        (["error_rate"], {"error_rate": {"margin": 0}}, "margin must be a positive"),
        (["error_rate"], {"error_rate": {"margin": 1.5}}, "below 1"),
        (["error_rate"], {"error_rate": {"margin": math.nan}}, "margin must be a positive"),
        (["error_rate"], {"error_rate": {"margin": "0.01"}}, "margin must be a number"),
        (["error_rate"], {"error_rate": {"margin": True}}, "margin must be a number"),
        (["error_rate"], {"error_rate": {"mixing": 0.0}}, "mixing must be a positive"),
        (["error_rate"], {"error_rate": {"min_samples": 1}}, "min_samples must be at least"),
        (["error_rate"], {"error_rate": {"min_samples": 10.5}}, "must be an integer"),
        (["error_rate"], {"error_rate": 0.01}, "options must be a mapping"),
        (["reward"], {"reward": {"higher_is_better": "yes"}}, "true or false"),
        ("error_rate", None, "list of names"),
    ],
)
def test_bad_guardrails_raise_one_line_value_errors(names: Any, options: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_guardrails(names, options)
    assert "\n" not in str(raised.value)


def test_bad_alpha_raises(champion: ArmStats) -> None:
    with pytest.raises(ValueError, match="alpha"):
        evaluate(parse_guardrails([]), champion, champion, 1.5)


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", GUARDRAIL_METRICS)
def test_clear_harm_is_detected(metric: str, champion: ArmStats) -> None:
    worse, _ = HARMFUL[metric]
    evidence = one(metric, champion, simulated_arm(3, N, **worse))
    assert evidence.verdict == "harm", evidence
    assert evidence.p_value is not None and evidence.p_value <= ALPHA


@pytest.mark.parametrize("metric", GUARDRAIL_METRICS)
def test_equal_arms_are_not_flagged(metric: str, champion: ArmStats, twin: ArmStats) -> None:
    evidence = one(metric, champion, twin)
    assert evidence.verdict != "harm", evidence
    assert evidence.p_value is not None and evidence.p_value > 0.1
    assert evidence.ci_low is not None and evidence.ci_high is not None
    assert evidence.ci_low <= (0.0 if evidence.worse != "shift" else evidence.ci_low)
    assert evidence.ci_high >= 0.0


@pytest.mark.parametrize(
    "metric", [m for m, (_, truth) in HARMFUL.items() if not math.isnan(truth)]
)
def test_confidence_sequence_contains_the_truth(metric: str, champion: ArmStats) -> None:
    worse, truth = HARMFUL[metric]
    evidence = one(metric, champion, simulated_arm(4, N, **worse))
    assert evidence.ci_low is not None and evidence.ci_high is not None
    assert evidence.ci_low <= truth <= evidence.ci_high
    assert evidence.effect == pytest.approx(truth, abs=(evidence.ci_high - evidence.ci_low) / 2)


def test_improvement_is_not_harm(champion: ArmStats) -> None:
    better = simulated_arm(5, N, error_rate=0.002, median_s=0.04, accuracy=0.95, reward_mean=1.3)
    for metric in ("error_rate", "latency", "accuracy", "reward"):
        evidence = one(metric, champion, better)
        assert evidence.verdict == "no_harm_within_margin", evidence
        assert evidence.p_value is not None and evidence.p_value > 0.5


def test_reward_direction_follows_the_option(champion: ArmStats) -> None:
    lower = simulated_arm(6, N, reward_mean=0.8)
    assert one("reward", champion, lower).verdict == "harm"
    assert one("reward", champion, lower, higher_is_better=False).verdict != "harm"


def test_equal_arms_reach_non_inferiority_with_enough_data(
    champion: ArmStats, twin: ArmStats
) -> None:
    guardrails = parse_guardrails(
        ["error_rate", "latency", "class_shift", "confidence_shift"],
        {"error_rate": {"margin": 0.01}, "latency": {"margin": math.log(1.1)}},
    )
    report = evaluate(guardrails, champion, twin, ALPHA)
    assert report.verdict == "no_harm_within_margin", report.reason
    assert report.reason.startswith("all guardrails within margin")


def test_no_errors_at_all_shows_non_inferiority() -> None:
    quiet = ArmStats(requests=50_000)
    assert one("error_rate", quiet, quiet).verdict == "no_harm_within_margin"


def test_too_little_data_says_continue() -> None:
    small_a, small_b = simulated_arm(7, 50), simulated_arm(8, 50, error_rate=0.5)
    report = evaluate(parse_guardrails([]), small_a, small_b, ALPHA)
    assert report.verdict == "continue"
    assert all(e.p_value is None and e.verdict == "continue" for e in report.guardrails)
    assert "error_rate (need 100 requests per arm, have 50/50)" in report.reason


def test_accuracy_waits_for_labels(champion: ArmStats) -> None:
    unlabelled = simulated_arm(9, 2_000, label_share=0.0)
    evidence = one("accuracy", champion, unlabelled)
    assert evidence.verdict == "continue" and evidence.p_value is None
    assert evidence.n_challenger == 0


def test_report_combines_verdicts_and_splits_alpha(champion: ArmStats) -> None:
    worse = simulated_arm(10, N, error_rate=0.03)
    report = evaluate(parse_guardrails([]), champion, worse, ALPHA)
    assert report.verdict == "harm"
    assert report.reason.startswith("error_rate: challenger worse beyond tolerance 0.1 pp, p=")
    assert [e.alpha for e in report.guardrails] == pytest.approx([ALPHA / 3] * 3)


def test_json_is_strict_json(champion: ArmStats, twin: ArmStats) -> None:
    report = evaluate(parse_guardrails(list(GUARDRAIL_METRICS)), champion, twin, ALPHA)
    data = json.loads(json.dumps(report.model_dump(mode="json"), allow_nan=False))
    assert data["verdict"] == report.verdict
    assert [g["metric"] for g in data["guardrails"]] == list(GUARDRAIL_METRICS)
    assert Report.model_validate(data) == report
    odd = Evidence(
        metric="latency",
        verdict="continue",
        p_value=math.nan,
        effect=-math.inf,
        ci_low=math.inf,
        ci_high=None,
        margin=0.1,
        n_champion=0,
        n_challenger=0,
        alpha=0.05,
    )
    dumped = odd.model_dump(mode="json")
    assert json.dumps(dumped, allow_nan=False)
    assert dumped["ci_low"] is None and dumped["p_value"] is None and dumped["effect"] is None


def test_default_evaluation_takes_under_a_millisecond(champion: ArmStats, twin: ArmStats) -> None:
    guardrails = parse_guardrails([])
    timings = []
    for _ in range(200):
        start = time.perf_counter()
        evaluate(guardrails, champion, twin, ALPHA)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 1e-3
