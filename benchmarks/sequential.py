"""Sequential guardrail tests under continuous monitoring: false alarms, power, stopping time.

Simulates a champion and a challenger arm, looks after every batch (``--batch`` observations
per arm, ``--batches`` looks), and repeats ``--reps`` times with a fixed ``--seed``. Two
methods judge the same data at every look:

- ``shelf``: the guardrail's anytime-valid mixture test, through ``controller.stats.evaluate``
  on ``ArmStats`` built from the cumulative counts (alpha 0.05 for the single guardrail);
- ``naive``: the plain fixed-horizon test (one-sided z-test, or chi-square for shifts) at
  alpha 0.05, repeated at every look, which is what peeking at a dashboard amounts to.

A/A scenarios report the share of replications that ever flagged harm (with a one-sided
Clopper-Pearson 95 % upper bound); A/B scenarios report power within the horizon and the median
stopping point in observations per arm, next to the fixed-horizon sample size per arm for that
effect (alpha 0.05, power 0.9, statsmodels). Also times ``evaluate`` on the default guardrails.

    python benchmarks/sequential.py [--quick] [--json] [--reps N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.power import GofChisquarePower, NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from controller.stats import ArmStats, evaluate, parse_guardrails
from controller.stats.mixture import normal_sf
from controller.stats.sufficient import GAMMA, LATENCY_BUCKETS, LATENCY_MIN_S

ALPHA = 0.05
POWER = 0.9
LABEL_SHARE = 0.3
MAX_LABEL_DELAY = 20  # batches
LOG_MIN, INV_LOG_GAMMA = math.log(LATENCY_MIN_S), 1.0 / math.log(GAMMA)
LOG_SD = 0.5
CLASSES = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
CLASSES_SHIFTED = np.array([0.37, 0.25, 0.15, 0.12, 0.11])


# -- simulated arms ------------------------------------------------------------------------


@dataclass
class Trajectory:
    """Cumulative sufficient statistics of one arm after each batch (row k = look k)."""

    batch: int
    errors: np.ndarray | None = None
    hist: np.ndarray | None = None
    log_sum: np.ndarray | None = None
    log_sumsq: np.ndarray | None = None
    predicted: np.ndarray | None = None
    labels: np.ndarray | None = None
    correct: np.ndarray | None = None

    def at(self, k: int) -> ArmStats:
        arm = ArmStats(requests=self.batch * (k + 1))
        if self.errors is not None:
            arm.errors = int(self.errors[k])
        if self.hist is not None and self.log_sum is not None and self.log_sumsq is not None:
            arm.latency_counts = self.hist[k].tolist()
            arm.latency_n = arm.requests
            arm.log_latency_sum = float(self.log_sum[k])
            arm.log_latency_sumsq = float(self.log_sumsq[k])
        if self.predicted is not None:
            arm.predicted = {str(i): int(c) for i, c in enumerate(self.predicted[k])}
        if self.labels is not None and self.correct is not None:
            arm.labels = int(self.labels[k])
            arm.correct = int(self.correct[k])
        return arm


Simulator = Callable[[np.random.Generator, int, int], Trajectory]


def errors(rate: float) -> Simulator:
    def simulate(rng: np.random.Generator, batches: int, batch: int) -> Trajectory:
        return Trajectory(batch, errors=np.cumsum(rng.binomial(batch, rate, batches)))

    return simulate


def latencies(median_s: float, tail_share: float = 0.0, tail_alpha: float = 1.5) -> Simulator:
    """Log-normal latency (log sd ``LOG_SD``); a ``tail_share`` of requests instead comes from a
    Pareto tail (shape ``tail_alpha``) starting at the body's 95th percentile."""

    def simulate(rng: np.random.Generator, batches: int, batch: int) -> Trajectory:
        logs = math.log(median_s) + LOG_SD * rng.standard_normal((batches, batch))
        if tail_share:
            tail = rng.random((batches, batch)) < tail_share
            start = math.log(median_s) + 1.645 * LOG_SD
            logs[tail] = start + rng.exponential(1.0 / tail_alpha, int(tail.sum()))
        index = np.floor((logs - LOG_MIN) * INV_LOG_GAMMA).astype(np.int64) + 1
        np.clip(index, 0, LATENCY_BUCKETS - 1, out=index)
        rows = np.repeat(np.arange(batches), batch)
        flat = np.bincount(
            rows * LATENCY_BUCKETS + index.ravel(), minlength=batches * LATENCY_BUCKETS
        )
        return Trajectory(
            batch,
            hist=np.cumsum(flat.reshape(batches, LATENCY_BUCKETS), axis=0),
            log_sum=np.cumsum(logs.sum(axis=1)),
            log_sumsq=np.cumsum((logs * logs).sum(axis=1)),
        )

    return simulate


def classes(probs: np.ndarray) -> Simulator:
    def simulate(rng: np.random.Generator, batches: int, batch: int) -> Trajectory:
        return Trajectory(batch, predicted=np.cumsum(rng.multinomial(batch, probs, batches), 0))

    return simulate


def labelled(accuracy: float) -> Simulator:
    """Ground truth for ``LABEL_SHARE`` of requests, each arriving 1..MAX_LABEL_DELAY batches
    after its request; labels due after the horizon never arrive."""

    def simulate(rng: np.random.Generator, batches: int, batch: int) -> Trajectory:
        count = rng.binomial(batch, LABEL_SHARE, batches)
        origin = np.repeat(np.arange(batches), count)
        arrival = origin + rng.integers(1, MAX_LABEL_DELAY + 1, origin.size)
        right = rng.random(origin.size) < accuracy
        keep = arrival < batches
        labels = np.bincount(arrival[keep], minlength=batches)
        correct = np.bincount(arrival[keep], weights=right[keep], minlength=batches)
        return Trajectory(batch, labels=np.cumsum(labels), correct=np.cumsum(correct))

    return simulate


# -- the naive fixed-horizon test ------------------------------------------------------------


def _z_proportions(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    pooled = (x_a + x_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    return (x_b / n_b - x_a / n_a) / math.sqrt(variance) if variance > 0 else 0.0


def _z_means(n_a: int, s_a: float, q_a: float, n_b: int, s_b: float, q_b: float) -> float:
    m_a, m_b = s_a / n_a, s_b / n_b
    variance = (q_a - n_a * m_a * m_a) / (n_a - 1) / n_a + (q_b - n_b * m_b * m_b) / (n_b - 1) / n_b
    return (m_b - m_a) / math.sqrt(variance) if variance > 0 else 0.0


def _exceedance(a: ArmStats, b: ArmStats, q: float) -> tuple[int, int]:
    cum_a, cum_b = np.cumsum(a.latency_counts), np.cumsum(b.latency_counts)
    pooled = cum_a + cum_b
    bucket = int(np.searchsorted(pooled, q * pooled[-1], side="left"))
    return int(cum_a[-1] - cum_a[bucket]), int(cum_b[-1] - cum_b[bucket])


def naive_p(metric: str, a: ArmStats, b: ArmStats) -> float:
    if metric == "error_rate":
        return normal_sf(_z_proportions(a.errors, a.requests, b.errors, b.requests))
    if metric == "accuracy":
        if min(a.labels, b.labels) < 2:
            return 1.0
        return normal_sf(-_z_proportions(a.correct, a.labels, b.correct, b.labels))
    if metric == "latency":
        return normal_sf(
            _z_means(
                a.latency_n, a.log_latency_sum, a.log_latency_sumsq,
                b.latency_n, b.log_latency_sum, b.log_latency_sumsq,
            )
        )  # fmt: skip
    if metric in ("latency_p95", "latency_p99"):
        x_a, x_b = _exceedance(a, b, 0.95 if metric == "latency_p95" else 0.99)
        return normal_sf(_z_proportions(x_a, a.latency_n, x_b, b.latency_n))
    if metric == "class_shift":
        keys = sorted(set(a.predicted) | set(b.predicted))
        table = np.array(
            [[a.predicted.get(k, 0) for k in keys], [b.predicted.get(k, 0) for k in keys]]
        )
        table = table[:, table.sum(axis=0) > 0]
        return float(scipy_stats.chi2_contingency(table, correction=False)[1])
    raise ValueError(metric)


# -- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str
    metrics: tuple[str, ...]
    champion: Simulator
    challenger: Simulator
    fixed_horizon_n: Callable[[], float] | None = None


def _n_normal(effect_size: float) -> float:
    return float(
        NormalIndPower().solve_power(
            effect_size=effect_size, alpha=ALPHA, power=POWER, ratio=1.0, alternative="larger"
        )
    )


def _n_classes() -> float:
    pooled = (CLASSES + CLASSES_SHIFTED) / 2
    w = math.sqrt(float(((CLASSES_SHIFTED - CLASSES) ** 2 / (2 * pooled)).sum()))
    return float(
        GofChisquarePower().solve_power(
            effect_size=w, alpha=ALPHA, power=POWER, n_bins=len(CLASSES)
        )
    )


SCENARIOS = (
    Scenario("error 1% vs 1%", "aa", ("error_rate",), errors(0.01), errors(0.01)),
    Scenario(
        "error 1% vs 1.5%",
        "ab",
        ("error_rate",),
        errors(0.01),
        errors(0.015),
        lambda: _n_normal(proportion_effectsize(0.015, 0.01)),
    ),
    Scenario("lognormal latency equal", "aa", ("latency",), latencies(0.05), latencies(0.05)),
    Scenario(
        "lognormal latency +10% median",
        "ab",
        ("latency",),
        latencies(0.05),
        latencies(0.055),
        lambda: _n_normal(math.log(1.1) / LOG_SD),
    ),
    Scenario(
        "pareto-tail latency equal",
        "aa",
        ("latency", "latency_p99"),
        latencies(0.05, tail_share=0.05),
        latencies(0.05, tail_share=0.05),
    ),
    Scenario("classes equal", "aa", ("class_shift",), classes(CLASSES), classes(CLASSES)),
    Scenario(
        "one class +3 points",
        "ab",
        ("class_shift",),
        classes(CLASSES),
        classes(CLASSES_SHIFTED),
        _n_classes,
    ),
    Scenario(
        "accuracy 90% vs 90%, 30% late labels", "aa", ("accuracy",), labelled(0.9), labelled(0.9)
    ),
    Scenario(
        "accuracy 90% vs 85%, 30% late labels",
        "ab",
        ("accuracy",),
        labelled(0.9),
        labelled(0.85),
        lambda: _n_normal(proportion_effectsize(0.9, 0.85)) / LABEL_SHARE,
    ),
)


def run_scenario(
    scenario: Scenario, metric: str, reps: int, batches: int, batch: int, seed: int
) -> list[dict[str, Any]]:
    guardrails = parse_guardrails([metric])
    rng = np.random.default_rng(seed)
    stops: dict[str, list[float]] = {"shelf": [], "naive": []}
    no_harm_at_end = 0
    for _ in range(reps):
        champion = scenario.champion(rng, batches, batch)
        challenger = scenario.challenger(rng, batches, batch)
        stop = {"shelf": math.inf, "naive": math.inf}
        verdict = "continue"
        for k in range(batches):
            a, b = champion.at(k), challenger.at(k)
            n = batch * (k + 1)
            if stop["shelf"] == math.inf:
                verdict = evaluate(guardrails, a, b, ALPHA).verdict
                if verdict == "harm":
                    stop["shelf"] = n
            ready = n >= guardrails[0].min_samples
            if stop["naive"] == math.inf and ready and naive_p(metric, a, b) <= ALPHA:
                stop["naive"] = n
            if stop["shelf"] < math.inf and stop["naive"] < math.inf:
                break
        no_harm_at_end += verdict == "no_harm_within_margin"
        for method in stops:
            stops[method].append(stop[method])
    fixed = scenario.fixed_horizon_n() if scenario.fixed_horizon_n else None
    rows = []
    for method, values in stops.items():
        flagged = int(np.isfinite(values).sum())
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "kind": scenario.kind,
            "method": method,
            "metric": metric,
            "reps": reps,
            "horizon_n": batches * batch,
        }
        if scenario.kind == "aa":
            row["false_positive_rate"] = flagged / reps
            row["false_positive_rate_upper95"] = (
                1.0
                if flagged == reps
                else float(scipy_stats.beta.ppf(0.95, flagged + 1, reps - flagged))
            )
            if method == "shelf":
                row["no_harm_at_horizon"] = no_harm_at_end / reps
        else:
            median = float(np.median(values))
            row["power"] = flagged / reps
            row["median_stop"] = median if math.isfinite(median) else None
            row["fixed_horizon_n"] = round(fixed) if fixed else None
        rows.append(row)
    return rows


# -- evaluate() timing -----------------------------------------------------------------------


def time_evaluate(seed: int) -> dict[str, Any]:
    """Microseconds per ``evaluate`` of the default guardrails on two arms of 20,000 requests."""
    rng = np.random.default_rng(seed)
    arms = []
    for rate, median in ((0.01, 0.05), (0.012, 0.052)):
        lat = latencies(median, tail_share=0.05)(rng, 1, 20_000)
        lat.errors = errors(rate)(rng, 1, 20_000).errors
        arms.append(lat.at(0))
    guardrails = parse_guardrails(())
    evaluate(guardrails, arms[0], arms[1], ALPHA)
    number = 2000
    start = time.perf_counter()
    for _ in range(number):
        evaluate(guardrails, arms[0], arms[1], ALPHA)
    micros = (time.perf_counter() - start) / number * 1e6
    return {
        "benchmark": "evaluate",
        "guardrails": [g.metric for g in guardrails],
        "us_per_evaluation": round(micros, 1),
        "ratio_to_1ms": round(micros / 1000.0, 4),
    }


# -- output ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value < 10 else f"{value:.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        "scenario",
        "kind",
        "method",
        "metric",
        "reps",
        "FPR",
        "FPR up95",
        "power",
        "median stop",
        "fixed n",
    )
    table = [header] + [
        (
            r["scenario"], r["kind"], r["method"], r["metric"], str(r["reps"]),
            _fmt(r.get("false_positive_rate")), _fmt(r.get("false_positive_rate_upper95")),
            _fmt(r.get("power")), _fmt(r.get("median_stop")), _fmt(r.get("fixed_horizon_n")),
        )
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replications (< 60 s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--reps", type=int, default=None, help="replications per scenario")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--batches", type=int, default=300, help="looks per replication")
    parser.add_argument("--batch", type=int, default=100, help="observations per arm per look")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = parser.parse_args()
    reps = args.reps or (200 if args.quick else 1000)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, scenario in enumerate(SCENARIOS):
        if args.only not in scenario.name:
            continue
        for metric in scenario.metrics:
            seed = args.seed + 1000 * index + len(rows)
            for row in run_scenario(scenario, metric, reps, args.batches, args.batch, seed):
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
    timing = time_evaluate(args.seed)
    timing["seconds_total"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(timing))
        return
    print_table(rows)
    print(
        f"\nevaluate({', '.join(timing['guardrails'])}): {timing['us_per_evaluation']} us per "
        f"evaluation = {timing['ratio_to_1ms']} x 1 ms; benchmark took {timing['seconds_total']} s"
    )


if __name__ == "__main__":
    main()
