"""The champion watch on simulated streams: false alarms, detection rate and delay.

A champion serves ``RATE`` requests per one-minute block: five predicted classes, a confidence
histogram, 0.5 % errors, 16 numeric inputs (summarised on at most ``SAMPLES_PER_S`` requests a
second, as the gateway samples them), and labels for 80 % of requests, half of them late (1 to
10 blocks, each counted with the block its request was served in, as the gateway's feedback
intake does), a fifth never arriving. Its reference profile is built from 20,000 held-out rows
of the same distribution. Scenarios:

- ``a_no_change``: nothing changes; false alarms per million requests;
- ``b_class_share``: one class's share grows by 3 points;
- ``c_accuracy``: accuracy falls from 90 % to 85 % (labels late or missing as above);
- ``d_input_shift``: the mean of one input of 16 shifts by 0.2 standard deviations.

Methods on the same data:

- ``shelf``: the watch's detectors (``controller.stats.drift``: mixture Shiryaev-Roberts
  e-detectors of betting e-values, and ``controller.stats.contrast``'s change-point contrasts
  for class shares and the mean confidence, against the reference, and against the first
  ``BASELINE_BLOCKS`` once they have passed, thresholds for at most ``ALPHA_WEEK``
  probability of any false alarm a week over every check), judged block by block;
- ``naive``: what drift tools do by default: every window of ``WINDOW`` blocks, a fixed test
  per check at 0.05 (chi-square for classes and confidence, a z-test for accuracy and error
  rate, two-sample Kolmogorov-Smirnov per input against the held-out sample); ``naive_any``
  alarms when any test does, ``naive_check`` counts only the test of the changed quantity;
- ``oracle``: the floor under the stated bound (:class:`OracleWatch`): what a detector that
  knew which quantity changes and its exact law before and after could do with the whole
  budget.

Per scenario and method: false alarms per million requests before the change, detection rate
after it, the median delay (requests from the change to the alarm) and that delay as a ratio to
``naive_check``'s in the same run (``delay_vs_naive``). The stated bound for ``shelf`` is
``(1e6 / RATE) / A`` false alarms per million requests with ``A = blocks per week /
ALPHA_WEEK``.

    python benchmarks/drift.py [--quick] [--json] [--reps N] [--seed S] [--scenario NAME]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from controller.stats.check_step import Detector, step_check
from controller.stats.drift import (
    LOG_R_FLOOR,
    SECONDS_PER_WEEK,
    Target,
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
from controller.stats.late_labels import fresh_window, label_counts, window_step
from controller.stats.sufficient import CONFIDENCE_BUCKETS, ArmStats

RATE = 2000  # requests per block
BLOCK_S = 60.0
ALPHA_WEEK = 0.01
INPUTS = 16
SAMPLES_PER_S = 50.0  # the gateway's default input sample budget
BASELINE_BLOCKS = 30  # the watch's first period (the policy's default, 30 minutes)
WINDOW = 5  # naive window, in blocks (10,000 requests)
HELD_OUT = 20_000
LABELLED, LATE_SHARE, MAX_LATE = 0.8, 0.5, 10
CLASSES = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
NAIVE_ALPHA = 0.05
SAMPLED = int(min(RATE, SAMPLES_PER_S * BLOCK_S))  # requests whose inputs a block summarises


@dataclass(frozen=True)
class World:
    """The champion's traffic at one time."""

    classes: np.ndarray = field(default_factory=lambda: CLASSES)
    accuracy: float = 0.90
    error_rate: float = 0.005
    input_means: np.ndarray = field(default_factory=lambda: np.zeros(INPUTS))


def confidence_bins(rng: np.random.Generator, n: int) -> np.ndarray:
    values = rng.beta(6.0, 2.0, n)
    return np.bincount(np.minimum((values * CONFIDENCE_BUCKETS).astype(int), 19), minlength=20)


def reference(rng: np.random.Generator, world: World) -> tuple[dict[str, Any], np.ndarray]:
    """A held-out profile (and the held-out inputs, for the naive KS tests)."""
    n = HELD_OUT
    classes = rng.multinomial(n, world.classes)
    confidence = confidence_bins(rng, n)
    inputs = rng.normal(world.input_means, 1.0, size=(n, INPUTS))
    profile = {
        "samples": n,
        "class_frequencies": {str(i): c / n for i, c in enumerate(classes)},
        "confidence_histogram": list(confidence / n),
        "accuracy": rng.binomial(n, world.accuracy) / n,
        "labels": n,
        "error_rate": rng.binomial(n, world.error_rate) / n,
        "inputs": {
            f"x{i}": {"n": n, "mean": float(inputs[:, i].mean()), "std": float(inputs[:, i].std())}
            for i in range(INPUTS)
        },
    }
    return profile, inputs


@dataclass
class Block:
    index: int
    stats: ArmStats
    inputs: np.ndarray  # the sampled raw inputs (for the naive KS tests)


class Stream:
    """Blocks of traffic with late and missing labels."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        # arrival block -> served block -> [labels, correct]
        self.pending: defaultdict[int, dict[int, list[int]]] = defaultdict(dict)

    def block(self, index: int, world: World) -> Block:
        rng = self.rng
        stats = ArmStats()
        errors = int(rng.binomial(RATE, world.error_rate))
        answered = RATE - errors
        stats.requests, stats.errors = RATE, errors
        counts = rng.multinomial(answered, world.classes)
        stats.predicted = {str(i): int(c) for i, c in enumerate(counts)}
        stats.confidence_counts = [int(c) for c in confidence_bins(rng, answered)]
        labelled = int(rng.binomial(answered, LABELLED))
        correct = int(rng.binomial(labelled, world.accuracy))
        late = int(rng.binomial(labelled, LATE_SHARE))
        late_correct = int(rng.hypergeometric(correct, labelled - correct, late)) if late else 0
        for right, many in ((1, late_correct), (0, late - late_correct)):
            delays, numbers = np.unique(
                rng.integers(1, MAX_LATE + 1, size=many), return_counts=True
            )
            for delay, number in zip(delays, numbers, strict=True):
                pair = self.pending[index + int(delay)].setdefault(index, [0, 0])
                pair[0] += int(number)
                pair[1] += int(number) * right
        arrived = self.pending.pop(index, {})
        stats.labels = labelled - late + sum(pair[0] for pair in arrived.values())
        stats.correct = correct - late_correct + sum(pair[1] for pair in arrived.values())
        stats.label_blocks = {str(served): list(pair) for served, pair in arrived.items()}
        sampled = rng.normal(world.input_means, 1.0, size=(SAMPLED, INPUTS))
        stats.inputs = {
            f"x{i}": [
                float(len(sampled)),
                float(sampled[:, i].sum()),
                float((sampled[:, i] ** 2).sum()),
            ]
            for i in range(INPUTS)
        }
        return Block(index, stats, sampled)


class ShelfWatch:
    """The checks as ``controller.watch.watcher`` runs them: against the reference from the
    start (half of the weekly budget), and against the champion's own first
    ``BASELINE_BLOCKS`` once they have passed (the other half); same targets, same detectors."""

    def __init__(self, profile: dict[str, Any]) -> None:
        self.targets: list[Target] = reference_targets(profile, Tolerances())
        self.shares = group_shares(t.against for t in self.targets)
        self.thresholds: dict[str, float] = {}
        self.log_r: dict[str, list[float]] = {}
        self.detectors: dict[str, Detector] = {}  # late-label windows, change times
        self._arm(self.targets)
        self.baseline: list[ArmStats] = []

    def _arm(self, targets: list[Target]) -> None:
        for key, weight in check_weights(targets, self.shares).items():
            self.thresholds[key] = log_threshold(weight, BLOCK_S, ALPHA_WEEK)
        for target in targets:
            self.log_r[target.key] = [LOG_R_FLOOR] * target.width

    def look(self, block: Block) -> set[str]:
        if len(self.baseline) < BASELINE_BLOCKS:
            self.baseline.append(block.stats)
            if len(self.baseline) == BASELINE_BLOCKS:
                added = baseline_targets(ArmStats.merge_all(self.baseline), Tolerances())
                self._arm(added)
                self.targets = self.targets + added
        alarms = set()
        for target in self.targets:
            key = target.key
            observation = observe(target, block.stats)
            judged = step_check(
                target,
                self.log_r[key],
                self.detectors.get(key),
                block.index,
                block.stats,
                observation,
            )
            if judged is None:
                continue
            log_r, detector = judged
            if detector is not None:
                self.detectors[key] = detector
            if mixture_statistic(log_r) >= self.thresholds[key]:
                alarms.add(target.check)
                log_r = [LOG_R_FLOOR] * len(log_r)  # re-armed
                self.detectors.pop(key, None)
            self.log_r[key] = log_r
        return alarms


@cache
def ks_critical(n_a: int, n_b: int, alpha: float) -> float:
    """The two-sample Kolmogorov-Smirnov statistic beyond which ``scipy.stats.ks_2samp`` (its
    asymptotic p-value, what it uses for samples this large) rejects at ``alpha``."""
    return float(scipy_stats.kstwo.isf(alpha, round(n_a * n_b / (n_a + n_b))))


def ks_rejects(a: np.ndarray, b: np.ndarray, alpha: float) -> bool:
    """``ks_2samp(a, b).pvalue < alpha`` for sorted samples of continuous values, without
    sorting the held-out sample again for every window or computing a p-value."""
    if max(len(a), len(b)) <= 10_000:  # where scipy would compute the exact p-value
        return bool(scipy_stats.ks_2samp(a, b).pvalue < alpha)
    # Both empirical CDFs at every point of each sample (no ties in continuous data).
    at_a = np.arange(1, len(a) + 1) / len(a) - np.searchsorted(b, a, side="right") / len(b)
    at_b = np.searchsorted(a, b, side="right") / len(a) - np.arange(1, len(b) + 1) / len(b)
    statistic = max(float(np.abs(at_a).max()), float(np.abs(at_b).max()))
    return statistic > ks_critical(len(a), len(b), alpha)


class NaiveWindows:
    """A fixed test per check on each window of ``WINDOW`` blocks, at ``NAIVE_ALPHA``."""

    def __init__(self, profile: dict[str, Any], held_out_inputs: np.ndarray) -> None:
        self.profile = profile
        self.held_out = np.sort(held_out_inputs, axis=0)  # sorted once, per input
        self.window: list[Block] = []

    def look(self, block: Block) -> set[str] | None:
        """The checks whose test rejects at the end of a window; None mid-window."""
        self.window.append(block)
        if len(self.window) < WINDOW:
            return None
        total = ArmStats.merge_all([b.stats for b in self.window])
        inputs = np.concatenate([b.inputs for b in self.window])
        self.window = []
        p = self.profile
        alarms = set()
        counts = np.array([total.predicted.get(str(i), 0) for i in range(len(CLASSES))])
        expected = np.array([p["class_frequencies"][str(i)] for i in range(len(CLASSES))])
        if scipy_stats.chisquare(counts, expected * counts.sum()).pvalue < NAIVE_ALPHA:
            alarms.add("class")
        histogram = np.array(total.confidence_counts, dtype=float)
        reference_bins = np.array(p["confidence_histogram"]) * histogram.sum()
        keep = reference_bins >= 5
        if keep.sum() >= 2:
            observed, wanted = histogram[keep], reference_bins[keep]
            wanted *= observed.sum() / wanted.sum()
            if scipy_stats.chisquare(observed, wanted).pvalue < NAIVE_ALPHA:
                alarms.add("confidence")
        if total.labels:
            rate = total.correct / total.labels
            se = math.sqrt(p["accuracy"] * (1 - p["accuracy"]) / total.labels)
            if abs(rate - p["accuracy"]) / se > scipy_stats.norm.ppf(1 - NAIVE_ALPHA / 2):
                alarms.add("accuracy")
        se = math.sqrt(max(p["error_rate"] * (1 - p["error_rate"]), 1e-6) / total.requests)
        if (total.error_rate - p["error_rate"]) / se > scipy_stats.norm.ppf(1 - NAIVE_ALPHA):
            alarms.add("error_rate")
        for i in range(INPUTS):
            if ks_rejects(np.sort(inputs[:, i]), self.held_out[:, i], NAIVE_ALPHA):
                alarms.add(f"input:x{i}")
        return alarms


class OracleWatch:
    """The floor under the stated bound, for comparison: one Shiryaev-Roberts detector that
    knows which quantity changes and its exact law before and after (the per-block likelihood
    ratio of the changed world to the unchanged one), with the whole weekly budget and no
    tolerance. SR and CUSUM with the true likelihood ratio are optimal for this trade-off
    (Pollak 1985; Lorden 1971), so no detector that keeps ``P(any false alarm a week) <=
    ALPHA_WEEK`` can be expected to be much faster; a detector that must also guess which check
    changes, by how much, and allow for its reference's own error is slower."""

    def __init__(self, base: World, changed: World, check: str) -> None:
        self.base, self.changed, self.check = base, changed, check
        self.threshold = log_threshold(1.0, BLOCK_S, ALPHA_WEEK)
        self.log_r = LOG_R_FLOOR
        self.window = fresh_window(1)
        right = math.log(changed.accuracy / base.accuracy)
        self.label_factors = np.array(
            [[right], [math.log((1 - changed.accuracy) / (1 - base.accuracy))]]
        )

    def log_lr(self, stats: ArmStats) -> float:
        base, changed = self.base, self.changed
        if self.check == "class":
            return sum(
                count * math.log(changed.classes[int(name)] / base.classes[int(name)])
                for name, count in stats.predicted.items()
            )
        if self.check == "accuracy":
            wrong = stats.labels - stats.correct
            return stats.correct * math.log(changed.accuracy / base.accuracy) + wrong * math.log(
                (1 - changed.accuracy) / (1 - base.accuracy)
            )
        index = int(self.check.removeprefix("input:x"))
        n, total, _ = stats.inputs[f"x{index}"]
        shift = float(changed.input_means[index] - base.input_means[index])
        return shift * (total - n * float(base.input_means[index])) - n * shift * shift / 2.0

    def look(self, block: Block) -> set[str]:
        if self.check == "accuracy":  # the same attribution of late labels as the watch
            counts = label_counts(block.stats, block.index)
            self.window, log_r = window_step(self.label_factors, self.window, block.index, counts)
            self.log_r = log_r[0]
        else:
            self.log_r = sr_step([self.log_r], [self.log_lr(block.stats)])[0]
        if self.log_r >= self.threshold:
            self.log_r = LOG_R_FLOOR
            self.window = fresh_window(1)
            return {self.check}
        return set()


@dataclass(frozen=True)
class Scenario:
    name: str
    changed: World | None
    check: str  # the check that should see the change (for naive_check)


def scenarios() -> list[Scenario]:
    shifted_classes = CLASSES.copy()
    shifted_classes[1] += 0.03
    shifted_classes[0] -= 0.03
    shifted_input = np.zeros(INPUTS)
    shifted_input[3] = 0.2
    return [
        Scenario("a_no_change", None, ""),
        Scenario("b_class_share", World(classes=shifted_classes), "class"),
        Scenario("c_accuracy", World(accuracy=0.85), "accuracy"),
        Scenario("d_input_shift", World(input_means=shifted_input), "input:x3"),
    ]


def relevant(check: str, alarm: str) -> bool:
    return alarm == check or alarm.startswith(f"{check}:")


def run(
    scenario: Scenario, reps: int, blocks: int, change_at: int, seed: int
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    methods = ("shelf", "naive_any", "naive_check") + (("oracle",) if scenario.changed else ())
    results: dict[str, dict[str, list[float]]] = {
        m: {"false": [], "delay": [], "detected": []} for m in methods
    }
    pre_requests = 0
    for _ in range(reps):
        base = World()
        profile, held_out = reference(rng, base)
        stream = Stream(rng)
        shelf, naive = ShelfWatch(profile), NaiveWindows(profile, held_out)
        oracle = (
            None
            if scenario.changed is None
            else OracleWatch(base, scenario.changed, scenario.check)
        )
        first: dict[str, int | None] = dict.fromkeys(results)
        false_alarms = dict.fromkeys(results, 0)
        horizon = blocks if scenario.changed is None else change_at
        for index in range(blocks):
            changed = scenario.changed is not None and index >= change_at
            block = stream.block(index, scenario.changed if changed and scenario.changed else base)
            seen = {"shelf": shelf.look(block)}
            if oracle is not None:
                seen["oracle"] = oracle.look(block)
            naive_alarms = naive.look(block)
            if naive_alarms is not None:
                seen["naive_any"] = naive_alarms
                seen["naive_check"] = {a for a in naive_alarms if relevant(scenario.check, a)}
            for method, alarms in seen.items():
                if not alarms:
                    continue
                if index < horizon:
                    false_alarms[method] += 1
                elif first[method] is None and (
                    method != "shelf" or any(relevant(scenario.check, a) for a in alarms)
                ):
                    first[method] = index
        pre_requests += horizon * RATE
        for method, result in results.items():
            result["false"].append(false_alarms[method])
            if scenario.changed is not None:
                hit = first[method]
                result["detected"].append(hit is not None)
                if hit is not None:
                    result["delay"].append((hit - change_at + 1) * RATE)
    rows = []
    bound = (1e6 / RATE) / (SECONDS_PER_WEEK / BLOCK_S / ALPHA_WEEK)
    for method, result in results.items():
        if method == "naive_check" and scenario.changed is None:
            continue  # no changed quantity to test
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "method": method,
            "reps": reps,
            "false_alarms_per_million": sum(result["false"]) / pre_requests * 1e6,
        }
        if method == "shelf":
            row["stated_bound_per_million"] = bound
        if scenario.changed is not None:
            row["detection_rate"] = float(np.mean(result["detected"]))
            row["median_delay_requests"] = (
                float(np.median(result["delay"])) if result["delay"] else None
            )
        rows.append(row)
    reference_row = next((r for r in rows if r["method"] == "naive_check"), None)
    baseline = None if reference_row is None else reference_row["median_delay_requests"]
    for row in rows:  # the figure to compare: median delay over the naive test's, same run
        if baseline and row.get("median_delay_requests"):
            row["delay_vs_naive"] = row["median_delay_requests"] / baseline
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replications (< 2 min)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument(
        "--scenario", action="append", help="only this scenario (repeatable; same seeds)"
    )
    args = parser.parse_args()
    reps = args.reps or (10 if args.quick else 50)
    blocks, change_at = (300, 50) if args.quick else (600, 100)
    started = time.monotonic()
    for number, scenario in enumerate(scenarios()):
        if args.scenario and scenario.name not in args.scenario:
            continue
        for row in run(scenario, reps, blocks, change_at, args.seed + number):
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                delay = row.get("median_delay_requests")
                detail = (
                    ""
                    if "detection_rate" not in row
                    else f"  detected {row['detection_rate']:.2f}  median delay "
                    f"{'-' if delay is None else f'{delay:,.0f}'} requests"
                )
                if "delay_vs_naive" in row:
                    detail += f" ({row['delay_vs_naive']:.2f}x naive)"
                bound = row.get("stated_bound_per_million")
                stated = "" if bound is None else f" (bound {bound:.2g})"
                print(
                    f"{row['scenario']:<14} {row['method']:<12} false alarms/M "
                    f"{row['false_alarms_per_million']:.3g}{stated}{detail}",
                    flush=True,
                )
    if not args.json:
        print(f"({time.monotonic() - started:.0f}s; {RATE} requests per {BLOCK_S:g}s block)")


if __name__ == "__main__":
    main()
