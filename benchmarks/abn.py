"""A/B/n rollouts under continuous monitoring, driven through the reconciler's own path:
family-wise false alarms with several identical challengers, and the power to find (and
promote) the one better challenger among several.

Each replication simulates a rollout look by look (``LOOK_S`` simulated seconds each): the
traffic of a look is split by the challengers' current weights (a dropped challenger's share
returns to the champion), errors are drawn per arm, recorded per stratum (step, time block)
like the gateway records them, judged like the reconciler judges them
(``controller.reconciler.judge.judge_all``: every challenger against the champion) and moved by
``controller.abn.decide_arms`` (advance, drop, promote the best, roll back). Methods, each on
its own simulated rollouts from the same seeds:

- ``shelf``: each challenger judged at ``alpha / k`` (Bonferroni over the k challengers; the
  guardrails split that again), which holds the family-wise error at ``alpha``;
- ``uncorrected``: each challenger judged at the full ``alpha``, as k separate one-challenger
  rollouts would be; its family-wise error grows with k;
- ``naive`` (on the ``shelf`` rollouts' data): a one-sided two-proportion z-test of each
  challenger at ``alpha`` repeated at every look, what peeking at a dashboard of k challengers
  amounts to; its family-wise error is the baseline of the ratio printed.

Scenarios (error rate guardrail, champion 2 % errors, 2000 requests a look, steps 10 and 25 %):

- ``3 identical``: three challengers equal to the champion, with the default thresholds (0.1
  points: the most sensitive harm test). ``fwer`` is the share of
  replications in which any challenger was ever flagged harmful (dropped or rolled back), with
  its one-sided Clopper-Pearson 95 % upper bound; it must stay at or below alpha.
- ``1 better of 3``: two challengers equal to the champion, one at 1 % errors (margin and
  tolerance 0.5 points); ``1 slightly better of 3`` the same with the better one at 1.7 %,
  an improvement the sample sizes barely resolve. ``promoted_best``
  is the power to promote the better one, ``promoted_wrong`` how often another is chosen.
- ``1 harmful, 1 better of 3``: one challenger at 4 % errors (should be dropped), one equal,
  one better: ``dropped_harmful`` and ``promoted_best``.

    python benchmarks/abn.py [--quick] [--json] [--reps N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from table import print_text_table

from controller.abn import Contender, decide_arms
from controller.plans import ActionKind, Position, RolloutPlan
from controller.reconciler.judge import judge
from controller.reconciler.totals import ArmTotals
from controller.stats import ArmStats, Report
from controller.vocabulary import RolloutState, challenger_arm

ALPHA = 0.05
LOOK_S = 60.0
BLOCK_LOOKS = 10
REQUESTS_PER_LOOK = 2000
CHAMPION_ERRORS = 0.02
T0 = datetime(2026, 1, 1, tzinfo=UTC)
METHODS = ("shelf", "uncorrected")


@dataclass(frozen=True)
class Scenario:
    name: str
    challenger_errors: tuple[float, ...]
    best: int | None = None  # which challenger should be promoted
    harmful: int | None = None  # which challenger should be dropped
    threshold: float = 0.005  # the error rate's margin and tolerance


SCENARIOS = (
    # The default error-rate thresholds (0.1 points): the most sensitive harm test, and the
    # slowest to show non-inferiority, so the rollouts are watched for long.
    Scenario("3 identical", (0.02, 0.02, 0.02), threshold=0.001),
    Scenario("1 better of 3", (0.02, 0.02, 0.01), best=2),
    Scenario("1 slightly better of 3", (0.02, 0.02, 0.017), best=2),
    Scenario("1 harmful, 1 better of 3", (0.04, 0.02, 0.01), best=2, harmful=0),
)


def plan_for(looks: int, threshold: float) -> RolloutPlan:
    return RolloutPlan(
        steps=(10, 25),
        min_samples=2000,
        min_step_duration_s=0.0,
        max_duration_s=looks * LOOK_S,
        alpha=ALPHA,
        guardrails=("error_rate",),
        guardrail_options={"error_rate": {"margin": threshold, "tolerance": threshold}},
        time_block_s=BLOCK_LOOKS * LOOK_S,
    )


def _arm(requests: int, errors: int) -> ArmStats:
    return ArmStats(requests=requests, errors=errors)


def replicate(
    scenario: Scenario, plan: RolloutPlan, looks: int, rng: np.random.Generator, method: str
) -> dict[str, Any]:
    """One simulated rollout; what happened to each challenger and which one was promoted."""
    k = len(scenario.challenger_errors)
    arms = [challenger_arm(i) for i in range(k)]
    weights = dict.fromkeys(arms, 0)
    in_play = set(arms)
    totals = ArmTotals()
    step_start = dict.fromkeys(arms, 0)
    served = dict.fromkeys(arms, 0)
    position = Position(RolloutState.pending, 0, T0, T0, 0)
    step_look = 0
    flagged: set[str] = set()
    naive: set[str] = set()
    promoted: str | None = None
    for look in range(looks):
        now = T0 + timedelta(seconds=(look + 1) * LOOK_S)
        if position.state == RolloutState.canary:
            shares = [weights[a] / 10_000 for a in arms]
            counts = rng.multinomial(REQUESTS_PER_LOOK, [1.0 - sum(shares), *shares])
            key = (position.step_index, (look - step_look) // BLOCK_LOOKS)
            rates = (CHAMPION_ERRORS, *scenario.challenger_errors)
            for name, n, rate in zip(("champion", *arms), counts, rates, strict=True):
                if n:
                    totals.add(key, name, _arm(int(n), int(rng.binomial(n, rate))))
                    if name in served:
                        served[name] += int(n)
        naive.update(a for a in arms if a in in_play and _naive_harm(totals, a))
        reports: dict[str, Report] = {
            a: judge(plan, totals, a, k if method == "shelf" else 1) for a in arms
        }
        contenders = {
            a: Contender(a, i + 2, reports[a], served[a] - step_start[a])
            for i, a in enumerate(arms)
            if a in in_play
        }
        action = decide_arms(plan, position, contenders, now, k)
        if action.kind == ActionKind.set_step:
            for a in arms:
                weights[a] = action.weight_bp if a in in_play else 0
                step_start[a] = served[a]
            position = Position(RolloutState.canary, action.step_index, T0, now, 0)
            step_look = look + 1
        elif action.kind == ActionKind.drop:
            flagged.update(action.arms)
            in_play.difference_update(action.arms)
            for a in action.arms:
                weights[a] = 0
        elif action.kind == ActionKind.roll_back:
            flagged.update(a for a in action.arms if reports[a].verdict == "harm")
            break
        elif action.kind == ActionKind.promote:
            promoted = action.arms[0]
            break
    return {"flagged": flagged, "naive": naive, "promoted": promoted, "looks": look + 1}


def _naive_harm(totals: ArmTotals, arm: str) -> bool:
    """The fixed-horizon one-sided z-test of the pooled error rates at ``ALPHA``."""
    a, b = totals.champion, totals.arm(arm)
    if a.requests < 100 or b.requests < 100:
        return False
    pooled = (a.errors + b.errors) / (a.requests + b.requests)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.requests + 1 / b.requests))
    if se == 0:
        return False
    z = (b.errors / b.requests - a.errors / a.requests) / se
    return bool(scipy_stats.norm.sf(z) <= ALPHA)


def upper95(successes: int, n: int) -> float:
    """One-sided Clopper-Pearson 95 % upper bound of a proportion."""
    return (
        1.0 if successes == n else float(scipy_stats.beta.ppf(0.95, successes + 1, n - successes))
    )


def run(scenario: Scenario, reps: int, looks: int, seed: int) -> list[dict[str, Any]]:
    plan = plan_for(looks, scenario.threshold)
    arms = [challenger_arm(i) for i in range(len(scenario.challenger_errors))]
    harmless = {arms[i] for i in range(len(arms)) if i != scenario.harmful}
    rows = []
    naive_alarms = 0
    for method in METHODS:
        rng = np.random.default_rng(seed)
        outcomes = [replicate(scenario, plan, looks, rng, method) for _ in range(reps)]
        false_alarms = sum(bool(o["flagged"] & harmless) for o in outcomes)
        if method == "shelf":
            naive_alarms = sum(bool(o["naive"] & harmless) for o in outcomes)
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "method": method,
            "reps": reps,
            "alpha": ALPHA,
            "fwer": false_alarms / reps,
            "fwer_upper95": upper95(false_alarms, reps),
            "promoted_any": sum(o["promoted"] is not None for o in outcomes) / reps,
            "median_looks": float(np.median([o["looks"] for o in outcomes])),
        }
        if scenario.best is not None:
            best = arms[scenario.best]
            row["promoted_best"] = sum(o["promoted"] == best for o in outcomes) / reps
            row["promoted_wrong"] = sum(o["promoted"] not in (None, best) for o in outcomes) / reps
        if scenario.harmful is not None:
            bad = arms[scenario.harmful]
            row["dropped_harmful"] = sum(bad in o["flagged"] for o in outcomes) / reps
        rows.append(row)
    rows.append(
        {
            "scenario": scenario.name,
            "method": "naive",
            "reps": reps,
            "alpha": ALPHA,
            "fwer": naive_alarms / reps,
            "fwer_upper95": upper95(naive_alarms, reps),
        }
    )
    for row in rows:
        row["fwer_ratio_to_naive"] = row["fwer"] / rows[-1]["fwer"] if rows[-1]["fwer"] else None
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else str(value)
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = (
        ("scenario", "scenario"), ("method", "method"), ("reps", "reps"),
        ("fwer", "FWER"), ("fwer_upper95", "FWER up95"),
        ("fwer_ratio_to_naive", "FWER / naive"), ("promoted_any", "promoted"),
        ("promoted_best", "promoted best"), ("promoted_wrong", "promoted wrong"),
        ("dropped_harmful", "dropped harmful"), ("median_looks", "median looks"),
    )  # fmt: skip
    table = [tuple(title for _, title in columns)] + [
        tuple(_fmt(r.get(key)) for key, _ in columns) for r in rows
    ]
    print_text_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replications (about 2 min)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--reps", type=int, default=None, help="replications per scenario")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--looks", type=int, default=300, help="looks per replication")
    args = parser.parse_args()
    reps = args.reps or (60 if args.quick else 400)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for index, scenario in enumerate(SCENARIOS):
        for row in run(scenario, reps, args.looks, args.seed + 1000 * index):
            rows.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
    took = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps({"seconds_total": took}))
        return
    print_table(rows)
    print(f"\nalpha {ALPHA}; benchmark took {took} s")


if __name__ == "__main__":
    main()
