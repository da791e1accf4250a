"""Sequential change detection on a champion's time blocks: pure, no I/O, no clocks.

Each *target* is one quantity of the champion's traffic compared with what it should be: the
error rate, the share of slow requests, one class's share, the mean confidence, the accuracy on
delayed labels, or the mean of one numeric input, each against the version's reference profile
or against the champion's own first period in production (its *baseline*). A null hypothesis
allows a tolerance around the expected value; a change beyond it is what we detect.

Method: e-detectors (Shin, Ramdas & Rinaldo 2022, "E-detectors: a nonparametric framework for
sequential change detection"). Every time block ``b`` gives, for each bet size ``lam`` and
direction, an e-value ``e_b`` (``E[e_b | past] <= 1`` under the null):

- bounded values ``x`` in [0, 1] (a 0/1 outcome, or a confidence bin's midpoint), null mean at
  most ``m`` in the bet's direction: ``e_b = prod_i (1 + lam (x_i - m))`` over the block's
  observations, the betting martingale of Waudby-Smith & Ramdas (2024, JRSS-B, eq. 4), with
  ``lam`` a fraction of ``1 / m`` (or ``1 / (1 - m)``) so every factor stays positive;
- numeric inputs: the block mean's z-statistic, ``e_b = exp(lam z - lam^2 / 2)`` (a Gaussian
  likelihood ratio; valid as the block's sampled n grows, by the central limit theorem).

Each check's statistic is a mixture Shiryaev-Roberts e-detector (Shin et al. 2022, Sec. 2.2;
Shiryaev 1963, Roberts 1966): for every (direction, lam) ``R_b = (1 + R_{b-1}) e_b`` (the sum,
over every possible change time, of the e-process started there), averaged with equal weights
over directions and bets. The average ``M_b`` is what alarms: it adapts to the size of the
change (the best bet dominates the average, at a cost of at most ``log`` of the number of bets,
usually less as neighbouring bets also grow) and, unlike a Bonferroni correction over bets, the
threshold does not grow with the grid. ``M_b - b`` is a supermartingale under the null, so by Doob's
inequality a check whose threshold is ``A`` alarms within its first ``m`` blocks with
probability at most ``m / A``, and its average run length is at least ``A`` blocks (Pollak
1987).

The weekly budget ``alpha_week`` is split across checks (Bonferroni weights ``w``, summing to at
most 1; ``controller.stats.drift_targets.check_weights``): a check alarms when ``log M_b >=
log(blocks per week / (w alpha_week))``. The probability of *any* false alarm in a champion's
first week, or in the week after an acknowledgement (which restarts every detector), is then at
most ``alpha_week`` whatever the traffic rate (the number of blocks a week does not depend on
it). After a change of per-block Kullback-Leibler divergence
``I`` the detector alarms after about ``log(A) / I`` blocks (Lorden 1971; Pollak 1985), the
optimal order.

Null hypotheses: a target's expected value comes from a finite sample (a reference profile or
the first period), so the e-values bet against the edge ``mean +- tolerance`` with ``tolerance
= max(allowed change, half-width of the estimate)`` (:mod:`controller.stats.drift_targets`). The
bound above therefore holds for traffic that is unchanged (and for changes smaller than the
tolerance minus the estimate's error) unless the estimate itself missed by more than its 99.9 %
half-width. Class shares and the mean confidence avoid that widening: their ``contrast`` targets
account for the estimate's error exactly (:mod:`controller.stats.contrast`), with the same bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from controller.stats.sufficient import CONFIDENCE_BUCKETS, ArmStats

# Bet sizes as fractions of the largest safe bet: 1/2 … 1/1024, from large to small effects.
BOUNDED_BETS: tuple[float, ...] = tuple(2.0**-k for k in range(1, 11))
GAUSSIAN_BETS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
MIN_INPUT_SAMPLES = 30  # a block's z-statistic needs the central limit theorem
SECONDS_PER_WEEK = 7 * 24 * 3600.0

Kind = Literal["bounded", "gaussian", "contrast"]
Against = Literal["reference", "baseline", "previous"]
# Which checks mean the model got worse (decayed) rather than its traffic changed (drifting).
DECAY_CHECKS = frozenset({"error_rate", "latency", "accuracy"})


@dataclass(frozen=True, slots=True)
class Target:
    """One quantity and what it should be. ``check`` names it (``error_rate``, ``latency``,
    ``class:<name>``, ``confidence``, ``accuracy``, ``input:<name>``); ``mean`` is the expected
    value, ``tolerance`` the allowed distance (absolute; in standard deviations of ``scale`` for
    inputs); ``directions`` +1 (an increase is a change), -1 (a decrease) or both; ``cut`` is the
    latency bucket above which a request counts as slow. ``contrast`` targets
    (:mod:`controller.stats.contrast`) take ``scale`` as one observation's standard deviation and
    ``n`` as the number of observations ``mean`` was estimated from; their tolerance is the
    allowed change itself, not widened."""

    check: str
    against: Against
    kind: Kind
    mean: float
    tolerance: float
    directions: tuple[int, ...]
    scale: float = 1.0
    cut: int = 0
    n: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.check}@{self.against}"

    @property
    def width(self) -> int:
        if self.kind == "contrast":
            return 1  # one statistic: the largest change time's (see controller.stats.contrast)
        bets = BOUNDED_BETS if self.kind == "bounded" else GAUSSIAN_BETS
        return len(bets) * len(self.directions)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one block shows of a target: bounded values with counts, or (n, mean, sd)."""

    n: float
    values: tuple[tuple[float, float], ...] = ()  # (value in [0, 1], count)
    mean: float = 0.0
    sd: float = 0.0

    @property
    def observed_mean(self) -> float | None:
        if self.n <= 0:
            return None
        if self.values:
            return sum(v * c for v, c in self.values) / self.n
        return self.mean


def _bernoulli(hits: float, total: float) -> Observation | None:
    if total <= 0:
        return None
    return Observation(n=total, values=((1.0, hits), (0.0, total - hits)))


def observe(target: Target, stats: ArmStats) -> Observation | None:
    """The block's data for ``target``; None when the block has none."""
    check = target.check
    if check == "error_rate":
        return _bernoulli(stats.errors, stats.requests)
    if check == "latency":
        slow = sum(stats.latency_counts[target.cut + 1 :])
        return _bernoulli(slow, stats.latency_n)
    if check == "accuracy":
        return _bernoulli(stats.correct, stats.labels)
    if check == "confidence":
        counts = stats.confidence_counts
        total = float(sum(counts))
        if total <= 0:
            return None
        mids = tuple(((i + 0.5) / CONFIDENCE_BUCKETS, float(c)) for i, c in enumerate(counts) if c)
        return Observation(n=total, values=mids)
    if check.startswith("class:"):
        return _bernoulli(stats.predicted.get(check[6:], 0), sum(stats.predicted.values()))
    if check.startswith("input:"):
        sums = stats.inputs.get(check[6:])
        if sums is None or sums[0] < MIN_INPUT_SAMPLES:
            return None
        n, total, sumsq = sums
        mean = total / n
        variance = max(sumsq - n * mean * mean, 0.0) / (n - 1)
        return Observation(n=n, mean=mean, sd=math.sqrt(variance))
    raise ValueError(f"unknown check {check!r}")


def log_evalues(target: Target, observation: Observation) -> list[float]:
    """log e-value of the block for every (direction, bet), in ``Target.width`` order."""
    if target.kind == "contrast":
        raise ValueError(f"{target.key} is a contrast target (controller.stats.contrast.step)")
    out: list[float] = []
    for direction in target.directions:
        if target.kind == "gaussian":
            # z of the block mean against the edge of the null nearest the data's side
            edge = target.mean + direction * target.tolerance * target.scale
            sd = max(observation.sd, 1e-12 * max(1.0, abs(target.scale)))
            z = direction * (observation.mean - edge) * math.sqrt(observation.n) / sd
            out.extend(lam * z - lam * lam / 2.0 for lam in GAUSSIAN_BETS)
            continue
        edge = min(max(target.mean + direction * target.tolerance, 0.0), 1.0)
        room = edge if direction > 0 else 1.0 - edge  # the factor at the far end of [0, 1]
        for fraction in BOUNDED_BETS:
            if room <= 0.0:
                out.append(0.0)  # nothing beyond the null's edge is possible
                continue
            lam = fraction / room
            total = 0.0
            for value, count in observation.values:
                if count:
                    total += count * math.log1p(lam * direction * (value - edge))
            out.append(total)
    return out


LOG_R_FLOOR = -50.0  # log R is kept above this, so the state stays finite (R < 2e-22 is 0)


def sr_step(log_r: Sequence[float], logs: Sequence[float]) -> list[float]:
    """One block of the Shiryaev-Roberts recursion in log space, per (direction, bet):
    ``log R_b = log(1 + R_{b-1}) + log e_b``. A new detector starts at ``LOG_R_FLOOR``."""
    return [max(_log1p_exp(r) + x, LOG_R_FLOOR) for r, x in zip(log_r, logs, strict=True)]


def mixture_statistic(log_r: Sequence[float]) -> float:
    """``log M_b``: the log of the equal-weight average of the detectors' ``R``."""
    top = max(log_r)
    return top + math.log(sum(math.exp(r - top) for r in log_r) / len(log_r))


def _log1p_exp(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def log_threshold(weight: float, block_s: float, alpha_week: float) -> float:
    """``log A`` for a check holding the share ``weight`` of the weekly budget: ``A = blocks
    per week / (weight alpha_week)`` (see the module docstring)."""
    if weight <= 0.0 or alpha_week <= 0.0:
        return math.inf
    blocks_per_week = SECONDS_PER_WEEK / block_s
    return math.log(blocks_per_week / (weight * alpha_week))


def estimate_halfwidth(variance: float, n: float, confidence: float = 0.999) -> float:
    """Half-width of a normal-approximation interval for a mean estimated from ``n``
    observations of the given variance: what an expected value learned from finite data may be
    off by. The detectors widen their tolerance by it, so their guarantee holds unless the
    estimate itself missed (probability ``1 - confidence``)."""
    if n <= 0:
        return 1.0
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    return z * math.sqrt(max(variance, 0.25 / n) / n)


def latency_cut(stats: ArmStats, quantile: float = 0.9) -> tuple[int, float] | None:
    """The latency bucket holding the baseline's ``quantile`` and the share of requests above
    it (the expected share of slow requests)."""
    if stats.latency_n <= 0:
        return None
    rank = quantile * stats.latency_n
    seen = 0
    for index, count in enumerate(stats.latency_counts):
        seen += count
        if seen >= rank:
            return index, (stats.latency_n - seen) / stats.latency_n
    return len(stats.latency_counts) - 1, 0.0


def class_shares(predicted: Mapping[str, int]) -> dict[str, float]:
    total = sum(predicted.values())
    return {k: v / total for k, v in predicted.items()} if total else {}
