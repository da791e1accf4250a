"""Sequential guardrail tests under continuous monitoring, driven through the reconciler's own
judge-and-decide path: false alarms, power, stopping time.

Each replication simulates a rollout look by look (``LOOK_S`` simulated seconds each): traffic
is split by the plan's current step, recorded per stratum (step and time block) like the
gateway records it, judged like the reconciler judges it (``controller.reconciler.judge``:
per-stratum totals, ``evaluate_strata`` with the change detector), and ``controller.plans.
decide`` moves the rollout (advance, promote, roll back). Methods on the same data:

- ``shelf``: that path;
- ``pooled`` (the new scenario families only): what Shelf did before stratification, unit
  variance and the change detector: one cumulative total per arm, per-request variance
  (``evaluate`` on the pooled totals), so the effect of those changes shows side by side;
- ``naive`` (the stationary families): the plain fixed-horizon test (one-sided z-test, or
  chi-square for shifts) at alpha 0.05 repeated at every look, which is what peeking at a
  dashboard amounts to.

No-difference and within-tolerance scenarios ("aa") report the share of replications rolled
back on harm (with a one-sided Clopper-Pearson 95 % upper bound); real differences ("ab")
report power within the horizon and the median stopping point in challenger requests, next to
the fixed-horizon sample size per arm for that effect (alpha 0.05, power 0.9, statsmodels); a
late change also reports ``post_change_median``, the median number of challenger requests
between the change and its detection. Also times ``evaluate`` on the default guardrails.

    python benchmarks/sequential.py [--quick] [--json] [--reps N] [--seed S] [--only TEXT]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.power import GofChisquarePower, NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize
from table import print_text_table

from controller.plans import ActionKind, Position, RolloutPlan, decide
from controller.reconciler.judge import judge
from controller.reconciler.totals import ArmTotals
from controller.stats import ArmStats, evaluate, parse_guardrails
from controller.stats.mixture import normal_sf
from controller.stats.sufficient import GAMMA, LATENCY_BUCKETS, LATENCY_MIN_S, UNIT_BUCKETS
from controller.vocabulary import RolloutState

ALPHA = 0.05
POWER = 0.9
LABEL_SHARE = 0.3
MAX_LABEL_DELAY = 20  # looks
LOG_MIN, INV_LOG_GAMMA = math.log(LATENCY_MIN_S), 1.0 / math.log(GAMMA)
LOG_SD = 0.5
CLASSES = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
CLASSES_3_POINTS = np.array([0.37, 0.25, 0.15, 0.12, 0.11])
CLASSES_8_POINTS = np.array([0.32, 0.25, 0.15, 0.12, 0.16])
LOOK_S = 60.0
BLOCK_LOOKS = 10  # the plans' time block: 10 looks
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- simulated arms ------------------------------------------------------------------------


@dataclass
class Trajectory:
    """Cumulative sufficient statistics of one arm after each look (row k = look k)."""

    requests: np.ndarray
    errors: np.ndarray | None = None
    hist: np.ndarray | None = None
    log_sum: np.ndarray | None = None
    log_sumsq: np.ndarray | None = None
    predicted: np.ndarray | None = None
    labels: np.ndarray | None = None
    correct: np.ndarray | None = None
    unit_requests: np.ndarray | None = None  # looks x UNIT_BUCKETS
    unit_errors: np.ndarray | None = None

    def between(self, k0: int, k1: int) -> ArmStats:
        """The statistics of looks ``k0 + 1 .. k1`` (``k0 = -1``: from the start), as the
        gateway would have recorded them in one stratum."""

        def part(values: np.ndarray) -> Any:
            return values[k1] - values[k0] if k0 >= 0 else values[k1]

        arm = ArmStats(requests=int(part(self.requests)))
        if self.errors is not None:
            arm.errors = int(part(self.errors))
        if self.hist is not None and self.log_sum is not None and self.log_sumsq is not None:
            arm.latency_counts = part(self.hist).tolist()
            arm.latency_n = arm.requests
            arm.log_latency_sum = float(part(self.log_sum))
            arm.log_latency_sumsq = float(part(self.log_sumsq))
        if self.predicted is not None:
            arm.predicted = {str(i): int(c) for i, c in enumerate(part(self.predicted))}
        if self.labels is not None and self.correct is not None:
            arm.labels = int(part(self.labels))
            arm.correct = int(part(self.correct))
        if self.unit_requests is not None and self.unit_errors is not None:
            units = np.zeros((UNIT_BUCKETS, 5))
            units[:, 0], units[:, 1] = part(self.unit_requests), part(self.unit_errors)
            arm.units = units.ravel().tolist()
        return arm


# Arguments: generator, looks, requests per look for this arm (array over looks).
Simulator = Callable[[np.random.Generator, int, np.ndarray], Trajectory]


def errors(rate: float, later: float | None = None, after: int = 0) -> Simulator:
    """Errors at ``rate``; from the arm's ``after``-th request on at ``later``."""

    def simulate(rng: np.random.Generator, looks: int, n: np.ndarray) -> Trajectory:
        counts = rng.binomial(n, rate)
        if later is not None:
            served = np.cumsum(n)
            changed = np.clip(served - after, 0, n)
            counts = rng.binomial(n - changed, rate) + rng.binomial(changed, later)
        return Trajectory(np.cumsum(n), errors=np.cumsum(counts))

    return simulate


def errors_over_the_day(low: float, high: float) -> Simulator:
    """Error rate rising linearly from ``low`` to ``high`` over the horizon, in both arms."""

    def simulate(rng: np.random.Generator, looks: int, n: np.ndarray) -> Trajectory:
        rate = low + (high - low) * np.arange(looks) / max(looks - 1, 1)
        return Trajectory(np.cumsum(n), errors=np.cumsum(rng.binomial(n, rate)))

    return simulate


def latencies(median_s: float, tail_share: float = 0.0, tail_alpha: float = 1.5) -> Simulator:
    """Log-normal latency (log sd ``LOG_SD``); a ``tail_share`` of requests instead comes from a
    Pareto tail (shape ``tail_alpha``) starting at the body's 95th percentile."""

    def simulate(rng: np.random.Generator, looks: int, n: np.ndarray) -> Trajectory:
        total = int(n.sum())
        logs = math.log(median_s) + LOG_SD * rng.standard_normal(total)
        if tail_share:
            tail = rng.random(total) < tail_share
            start = math.log(median_s) + 1.645 * LOG_SD
            logs[tail] = start + rng.exponential(1.0 / tail_alpha, int(tail.sum()))
        rows = np.repeat(np.arange(looks), n)
        index = np.floor((logs - LOG_MIN) * INV_LOG_GAMMA).astype(np.int64) + 1
        np.clip(index, 0, LATENCY_BUCKETS - 1, out=index)
        flat = np.bincount(rows * LATENCY_BUCKETS + index, minlength=looks * LATENCY_BUCKETS)
        return Trajectory(
            np.cumsum(n),
            hist=np.cumsum(flat.reshape(looks, LATENCY_BUCKETS), axis=0),
            log_sum=np.cumsum(np.bincount(rows, weights=logs, minlength=looks)),
            log_sumsq=np.cumsum(np.bincount(rows, weights=logs * logs, minlength=looks)),
        )

    return simulate


def classes(probs: np.ndarray) -> Simulator:
    def simulate(rng: np.random.Generator, looks: int, n: np.ndarray) -> Trajectory:
        counts = np.array([rng.multinomial(int(m), probs) for m in n])
        return Trajectory(np.cumsum(n), predicted=np.cumsum(counts, axis=0))

    return simulate


def labelled(accuracy: float) -> Simulator:
    """Ground truth for ``LABEL_SHARE`` of requests, each arriving 1..MAX_LABEL_DELAY looks
    after its request (recorded in the stratum of its arrival); labels due after the horizon
    never arrive."""

    def simulate(rng: np.random.Generator, looks: int, n: np.ndarray) -> Trajectory:
        count = rng.binomial(n, LABEL_SHARE)
        origin = np.repeat(np.arange(looks), count)
        arrival = origin + rng.integers(1, MAX_LABEL_DELAY + 1, origin.size)
        right = rng.random(origin.size) < accuracy
        keep = arrival < looks
        labels = np.bincount(arrival[keep], minlength=looks)
        correct = np.bincount(arrival[keep], weights=right[keep], minlength=looks)
        return Trajectory(np.cumsum(n), labels=np.cumsum(labels), correct=np.cumsum(correct))

    return simulate


@dataclass(frozen=True)
class StickyUsers:
    """Requests routed by user key: ``users`` users with heavy-tailed activity (Pareto 1.2
    weights) and their own error propensity (mean ``rate``, gamma-distributed with shape
    ``shape``: a few users fail often). A user's arm is fixed by the hash of their key, and
    their unit bucket is independent of it."""

    users: int = 4000
    rate: float = 0.01
    shape: float = 0.1

    def simulate_pair(
        self, rng: np.random.Generator, looks: int, n: int, weight: float
    ) -> tuple[Trajectory, Trajectory]:
        activity = rng.pareto(1.2, self.users) + 1.0
        activity /= activity.sum()
        propensity = np.minimum(rng.gamma(self.shape, self.rate / self.shape, self.users), 1.0)
        challenger = rng.random(self.users) < weight
        unit = rng.integers(0, UNIT_BUCKETS, self.users)
        who = rng.choice(self.users, size=(looks, n), p=activity)
        failed = rng.random((looks, n)) < propensity[who]
        pair = []
        for arm in (False, True):
            mine = challenger[who] == arm
            rows = np.repeat(np.arange(looks)[:, None], n, axis=1)
            cells = rows * UNIT_BUCKETS + unit[who]
            req = np.bincount(cells[mine], minlength=looks * UNIT_BUCKETS)
            err = np.bincount(cells[mine & failed], minlength=looks * UNIT_BUCKETS)
            req, err = req.reshape(looks, UNIT_BUCKETS), err.reshape(looks, UNIT_BUCKETS)
            pair.append(
                Trajectory(
                    np.cumsum(req.sum(axis=1)),
                    errors=np.cumsum(err.sum(axis=1)),
                    unit_requests=np.cumsum(req, axis=0),
                    unit_errors=np.cumsum(err, axis=0),
                )
            )
        return pair[0], pair[1]


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
    """A rollout to simulate. ``steps`` with ``step_looks`` looks each (multi-step plans split
    ``requests_per_look`` by the step's weight); a single step gives each arm half of it."""

    name: str
    kind: str  # "aa": no difference or within tolerance; "ab": a real difference
    metric: str
    champion: Simulator | None = None
    challenger: Simulator | None = None
    family: str = "stationary"
    steps: tuple[float, ...] = (50.0,)
    step_looks: int = 0
    requests_per_look: int = 200
    fixed_horizon_n: Callable[[], float] | None = None
    change_at: int | None = None  # challenger request from which a late change applies
    sticky: StickyUsers | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def plan(self, looks: int) -> RolloutPlan:
        multi = len(self.steps) > 1
        return RolloutPlan(
            steps=self.steps,
            # One step: never promote, so a false alarm has the whole horizon to happen.
            min_samples=500 if multi else 10**9,
            min_step_duration_s=self.step_looks * LOOK_S,
            max_duration_s=(looks + 1) * LOOK_S,
            guardrails=(self.metric,),
            guardrail_options={self.metric: self.options} if self.options else {},
            time_block_s=BLOCK_LOOKS * LOOK_S,
        )

    def step_of(self, look: int) -> int:
        if len(self.steps) == 1:
            return 0
        return min(look // self.step_looks, len(self.steps) - 1)

    def stratum_of(self, look: int) -> tuple[tuple[int, int], int]:
        """(step, block) of a look, and the first look of that stratum."""
        step = self.step_of(look)
        step_start = step * self.step_looks if len(self.steps) > 1 else 0
        block = (look - step_start) // BLOCK_LOOKS
        return (step, block), step_start + block * BLOCK_LOOKS

    def traffic(self, rng: np.random.Generator, looks: int) -> tuple[Trajectory, Trajectory]:
        if self.sticky is not None:
            return self.sticky.simulate_pair(rng, looks, self.requests_per_look, 0.5)
        assert self.champion is not None and self.challenger is not None
        if len(self.steps) == 1:
            half = np.full(looks, self.requests_per_look // 2)
            return self.champion(rng, looks, half), self.challenger(rng, looks, half)
        weights = np.array([self.steps[self.step_of(k)] / 100.0 for k in range(looks)])
        to_challenger = rng.binomial(self.requests_per_look, weights)
        return (
            self.champion(rng, looks, self.requests_per_look - to_challenger),
            self.challenger(rng, looks, to_challenger),
        )


def _n_normal(effect_size: float) -> float:
    return float(
        NormalIndPower().solve_power(
            effect_size=effect_size, alpha=ALPHA, power=POWER, ratio=1.0, alternative="larger"
        )
    )


def _n_classes(shifted: np.ndarray) -> Callable[[], float]:
    def n() -> float:
        pooled = (CLASSES + shifted) / 2
        w = math.sqrt(float(((shifted - CLASSES) ** 2 / (2 * pooled)).sum()))
        return float(
            GofChisquarePower().solve_power(
                effect_size=w, alpha=ALPHA, power=POWER, n_bins=len(CLASSES)
            )
        )

    return n


SCENARIOS = (
    Scenario("error 1% vs 1%", "aa", "error_rate", errors(0.01), errors(0.01)),
    Scenario(
        "error 1% vs 1.5%",
        "ab",
        "error_rate",
        errors(0.01),
        errors(0.015),
        fixed_horizon_n=lambda: _n_normal(proportion_effectsize(0.015, 0.01)),
    ),
    Scenario(
        "error 1% vs 1.5%, tolerance 0.01 pp",
        "ab",
        "error_rate",
        errors(0.01),
        errors(0.015),
        fixed_horizon_n=lambda: _n_normal(proportion_effectsize(0.015, 0.01)),
        options={"margin": 0.0001, "tolerance": 0.0001},
    ),
    Scenario("lognormal latency equal", "aa", "latency", latencies(0.05), latencies(0.05)),
    Scenario(
        "lognormal latency +25% median",
        "ab",
        "latency",
        latencies(0.05),
        latencies(0.0625),
        fixed_horizon_n=lambda: _n_normal(math.log(1.25 / 1.10) / LOG_SD),
    ),
    Scenario(
        "pareto-tail latency equal",
        "aa",
        "latency",
        latencies(0.05, tail_share=0.05),
        latencies(0.05, tail_share=0.05),
    ),
    Scenario(
        "pareto-tail latency equal",
        "aa",
        "latency_p99",
        latencies(0.05, tail_share=0.05),
        latencies(0.05, tail_share=0.05),
    ),
    Scenario("classes equal", "aa", "class_shift", classes(CLASSES), classes(CLASSES)),
    Scenario(
        "one class +8 points",
        "ab",
        "class_shift",
        classes(CLASSES),
        classes(CLASSES_8_POINTS),
        fixed_horizon_n=_n_classes(CLASSES_8_POINTS),
    ),
    Scenario(
        "accuracy 90% vs 90%, 30% late labels", "aa", "accuracy", labelled(0.9), labelled(0.9)
    ),
    Scenario(
        "accuracy 90% vs 85%, 30% late labels",
        "ab",
        "accuracy",
        labelled(0.9),
        labelled(0.85),
        fixed_horizon_n=lambda: _n_normal(proportion_effectsize(0.9, 0.85)) / LABEL_SHARE,
    ),
    # -- real traffic: the families of issue 15 ---------------------------------------------
    Scenario(
        "ramp 10>25>50%, errors 0.5%>2% over the day, equal arms",
        "aa",
        "error_rate",
        errors_over_the_day(0.005, 0.02),
        errors_over_the_day(0.005, 0.02),
        family="real",
        steps=(10.0, 25.0, 50.0),
        step_looks=100,
        requests_per_look=2000,
    ),
    Scenario(
        "sticky users, own error propensity, equal arms",
        "aa",
        "error_rate",
        family="real",
        requests_per_look=400,
        sticky=StickyUsers(),
    ),
    Scenario(
        "late spike 1%>4% after 21000 requests",
        "ab",
        "error_rate",
        errors(0.01),
        errors(0.01, later=0.04, after=21_000),
        family="real",
        change_at=21_000,
    ),
    Scenario(
        "latency +3% (within 10% tolerance)",
        "aa",
        "latency",
        latencies(0.05),
        latencies(0.0515),
        family="real",
    ),
    Scenario(
        "one class +3 points (within 0.05 TV margin)",
        "aa",
        "class_shift",
        classes(CLASSES),
        classes(CLASSES_3_POINTS),
        family="real",
    ),
)


def run_scenario(scenario: Scenario, reps: int, looks: int, seed: int) -> list[dict[str, Any]]:
    plan = scenario.plan(looks)
    guardrails = plan.judged_by()
    rng = np.random.default_rng(seed)
    other = "naive" if scenario.family == "stationary" else "pooled"
    stops: dict[str, list[float]] = {"shelf": [], other: []}
    promoted = 0
    for _ in range(reps):
        champion, challenger = scenario.traffic(rng, looks)
        stop = {"shelf": math.inf, other: math.inf}
        shelf_done = False
        position = Position(RolloutState.canary, 0, T0, T0, 0)
        closed: dict[tuple[int, int], tuple[ArmStats, ArmStats]] = {}
        for k in range(looks):
            served = int(challenger.requests[k])
            if not shelf_done:
                key, first = scenario.stratum_of(k)
                current = (champion.between(first - 1, k), challenger.between(first - 1, k))
                report = judge(plan, ArmTotals({**closed, key: current}))
                now = T0 + timedelta(seconds=(k + 1) * LOOK_S)
                action = decide(plan, position, report.verdict, report.reason, served, now)
                if action.kind == ActionKind.roll_back:
                    shelf_done = True
                    if report.verdict == "harm":
                        stop["shelf"] = served
                elif action.kind == ActionKind.promote:
                    shelf_done = True
                    promoted += 1
                elif action.kind == ActionKind.set_step:
                    if action.step_index != scenario.step_of(k + 1):
                        raise AssertionError("simulated traffic split out of step with decide()")
                    position = Position(RolloutState.canary, action.step_index, T0, now, served)
                if k + 1 < looks and scenario.stratum_of(k + 1)[0] != key:
                    closed[key] = current
            if stop[other] == math.inf:
                a, b = champion.between(-1, k), challenger.between(-1, k)
                if other == "pooled":
                    a.units = b.units = None
                    if evaluate(guardrails, a, b, ALPHA).verdict == "harm":
                        stop[other] = served
                elif (
                    served >= guardrails[0].min_samples and naive_p(scenario.metric, a, b) <= ALPHA
                ):
                    stop[other] = served
            if shelf_done and stop[other] < math.inf:
                break
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
            "metric": scenario.metric,
            "reps": reps,
            "horizon_n": int(scenario.requests_per_look * looks),
        }
        if scenario.kind == "aa":
            row["false_positive_rate"] = flagged / reps
            row["false_positive_rate_upper95"] = (
                1.0
                if flagged == reps
                else float(scipy_stats.beta.ppf(0.95, flagged + 1, reps - flagged))
            )
            if method == "shelf":
                row["promoted"] = promoted / reps
        else:
            median = float(np.median(values))
            row["power"] = flagged / reps
            row["median_stop"] = median if math.isfinite(median) else None
            row["fixed_horizon_n"] = round(fixed) if fixed else None
            if scenario.change_at is not None:
                after = np.array(values) - scenario.change_at
                caught = after[np.isfinite(after) & (after >= 0)]
                row["power"] = len(caught) / reps
                row["post_change_median"] = float(np.median(caught)) if len(caught) else None
                row["caught_within_2000"] = float((caught <= 2000).sum() / reps)
        rows.append(row)
    return rows


# -- evaluate() timing -----------------------------------------------------------------------


def time_evaluate(seed: int) -> dict[str, Any]:
    """Microseconds per ``evaluate`` of the default guardrails on two arms of 20,000 requests."""
    rng = np.random.default_rng(seed)
    arms = []
    for rate, median in ((0.01, 0.05), (0.012, 0.052)):
        n = np.array([20_000])
        lat = latencies(median, tail_share=0.05)(rng, 1, n)
        lat.errors = errors(rate)(rng, 1, n).errors
        arms.append(lat.between(-1, 0))
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
        "post-change",
        "fixed n",
    )
    table = [header] + [
        (
            r["scenario"], r["kind"], r["method"], r["metric"], str(r["reps"]),
            _fmt(r.get("false_positive_rate")), _fmt(r.get("false_positive_rate_upper95")),
            _fmt(r.get("power")), _fmt(r.get("median_stop")),
            _fmt(r.get("post_change_median")), _fmt(r.get("fixed_horizon_n")),
        )
        for r in rows
    ]  # fmt: skip
    print_text_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replications (< 2 min)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--reps", type=int, default=None, help="replications per scenario")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--looks", type=int, default=300, help="looks per replication")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = parser.parse_args()
    reps = args.reps or (100 if args.quick else 1000)

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, scenario in enumerate(SCENARIOS):
        if args.only not in scenario.name:
            continue
        seed = args.seed + 1000 * index
        for row in run_scenario(scenario, reps, args.looks, seed):
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
