"""One sequential comparison per guardrail metric: per-stratum sufficient statistics of the two
arms in, :class:`~controller.stats.evidence.Evidence` out.

**Strata.** Traffic is stratified by rollout step and time block (the gateway records each
stratum apart), and no comparison sets one arm's data from one stratum against the other arm's
from another: each stratum gives a within-stratum difference ``d_s`` with variance ``v_s``, and
the comparison combines them with Cochran-Mantel-Haenszel sample-size weights
``w_s = n_a n_b / (n_a + n_b)`` (Mantel & Haenszel 1959; the risk-difference form of
Greenland & Robins 1985)::

    x = sum_s w_s d_s / W,   V = sum_s w_s^2 v_s / W^2,   W = sum_s w_s

The weights are the inverse-variance weights when the per-observation variance is the same in
every stratum and, unlike estimated inverse variances, never depend on the outcomes, so rare
events cannot tilt them. A stratum where one arm has no data has ``w_s = 0``. ``x`` is a
weighted sum of independent, asymptotically normal stratum estimates, so it is asymptotically
normal with variance ``V``, and its sequence over looks has the independent-increments
structure the mixture tests assume (Jennison & Turnbull 1997, "Group-sequential analysis
incorporating covariate information", JASA 92; Lindon, Ham, Tingley & Bojinov 2022,
"Anytime-valid linear models and regression adjusted causal inference", where stratum
indicators are the covariates).

**Tests.** On ``x`` the one-sided (half-normal) mixture SPRT of ``H0: harm-side effect <=
tolerance`` (Johari et al. 2017 eq. (11); Howard et al. 2021 Sec. 3.4) gives the always-valid
p-value, and the same mixture inverted gives one-sided confidence sequences on either side
(:func:`~controller.stats.mixture.one_sided_radius`): harm iff the harm-side bound is beyond the
tolerance, non-inferiority iff the other bound is within the margin. The printed interval and
the verdict therefore always agree.

**Late changes.** Besides the cumulative test (stratum 0 onwards) the same test runs on every
window "stratum j onwards", j = 1 .. ``windows``: a change that starts mid-rollout is judged on
post-change data instead of being diluted by the pre-change strata. It is Lorden's (1971)
CUSUM idea (the maximum over change points of the likelihood ratio since each) with each start
point's mixture martingale at its own level, as in the e-detectors of Shin, Ramdas & Rinaldo
(2022), but with a union bound over start points instead of an average-run-length guarantee,
so the probability of *ever* a false alarm stays bounded: the guardrail's share ``alpha`` is
split ``(1 - DETECTOR_SHARE) alpha`` for the cumulative test and ``DETECTOR_SHARE alpha /
windows`` for each window (Bonferroni; the number of windows is fixed by the plan in advance).

**Variance by randomisation unit.** When requests are routed by key, each arm's per-request
variance in a stratum is multiplied by its design effect from the per-key-bucket sums
(:func:`~controller.stats.sufficient.unit_variance_ratio`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from controller.stats import mixture
from controller.stats.evidence import CONTINUE, HARM, NO_HARM, EffectUnit, Evidence, Verdict
from controller.stats.guardrails import Guardrail
from controller.stats.sufficient import (
    LOG_LATENCY_UNITS,
    PROPORTION_UNITS,
    ArmStats,
    UnitFields,
    latency_bucket_upper,
    unit_design_effect,
)

# (champion, challenger) statistics of one stratum.
Stratum = tuple[ArmStats, ArmStats]

# A shift test merges categories expected to hold fewer observations than this in the smaller
# arm into one "other" category, where the normal approximation would not hold.
MIN_EXPECTED_PER_CATEGORY = 5.0
# The share of each guardrail's alpha spent on the change detector's windows when a plan has
# any: small, because the cumulative test is the one that detects a challenger worse from the
# start, and a late change of a size worth rolling back for is large against a window's noise.
DETECTOR_SHARE = 0.1


@dataclass(frozen=True)
class Judging:
    """How one guardrail is judged: its share ``alpha`` of the family-wise error rate, how many
    later start points the change detector may use (``windows``, fixed by the plan; 0 for
    none), and labels of the strata for the detail line."""

    alpha: float
    windows: int = 0
    labels: tuple[str, ...] = ()

    @property
    def alpha_cumulative(self) -> float:
        return self.alpha * (1.0 - DETECTOR_SHARE) if self.windows > 0 else self.alpha

    @property
    def alpha_window(self) -> float:
        return self.alpha * DETECTOR_SHARE / self.windows if self.windows > 0 else 0.0


Comparison = Callable[[Guardrail, Sequence[Stratum], Judging], Evidence]


def _evidence(
    g: Guardrail,
    judging: Judging,
    n_a: int,
    n_b: int,
    detail: str,
    unit: EffectUnit,
    thresholds: tuple[float, float] | None = None,
    verdict: Verdict = CONTINUE,
    p_value: float | None = None,
    ci: tuple[float, float] | None = None,
    effect: float | None = None,
) -> Evidence:
    """What every comparison reports, filled in from the guardrail it judged."""
    low, high = ci if ci is not None else (None, None)
    margin, tolerance = thresholds if thresholds is not None else (g.margin, None)
    conservative = None
    if verdict == HARM and ci is not None:
        conservative = high if g.worse == "lower" else low
    return Evidence(
        metric=g.metric,
        verdict=verdict,
        p_value=p_value,
        ci_low=low,
        ci_high=high,
        effect=effect,
        margin=margin,
        tolerance=tolerance,
        effect_conservative=conservative,
        unit=unit,
        n_champion=n_a,
        n_challenger=n_b,
        alpha=judging.alpha,
        worse=g.worse,
        detail=detail,
    )


def _too_few(
    g: Guardrail, judging: Judging, n_a: int, n_b: int, what: str, unit: EffectUnit
) -> Evidence | None:
    if min(n_a, n_b) >= g.min_samples:
        return None
    detail = f"need {g.min_samples} {what} per arm, have {n_a}/{n_b}"
    return _evidence(g, judging, n_a, n_b, detail, unit)


# -- scalar effects --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarParts:
    """Per-stratum pieces of a scalar comparison (arrays over strata): CMH weight, difference,
    its variance, the pooled per-observation variance (scales the mixing prior) and counts."""

    weight: np.ndarray
    diff: np.ndarray
    variance_a: np.ndarray  # the champion's part of the difference's variance
    variance_b: np.ndarray
    sigma2: np.ndarray
    n_a: np.ndarray
    n_b: np.ndarray
    champion_level: float

    def with_units(
        self, strata: Sequence[Stratum], fields: UnitFields, counts: Sequence[tuple[float, float]]
    ) -> ScalarParts:
        """The variance by randomisation unit: each arm's variance parts times its design effect
        (:func:`~controller.stats.sufficient.unit_design_effect`) for the combined estimate.
        ``counts`` are each stratum's (champion, challenger) observation counts. Windows of
        the change detector reuse the whole rollout's design effects."""
        total = float(self.weight.sum())
        if total <= 0.0 or all(a.units is None and b.units is None for a, b in strata):
            return self
        share = self.weight / total
        coef_a = [float(x / n[0]) if n[0] else 0.0 for x, n in zip(share, counts, strict=True)]
        coef_b = [float(x / n[1]) if n[1] else 0.0 for x, n in zip(share, counts, strict=True)]
        deff_a = unit_design_effect([a for a, _ in strata], coef_a, fields)
        deff_b = unit_design_effect([b for _, b in strata], coef_b, fields)
        return ScalarParts(
            self.weight,
            self.diff,
            deff_a * self.variance_a,
            deff_b * self.variance_b,
            self.sigma2,
            self.n_a,
            self.n_b,
            self.champion_level,
        )

    def suffix(self) -> np.ndarray:
        """Rows ``j``: sums over strata ``j..`` of ``w, w d, w^2 v, w sigma2, n_a, n_b``."""
        w = self.weight
        variance = self.variance_a + self.variance_b
        columns = np.stack(
            [w, w * self.diff, w * w * variance, w * self.sigma2, self.n_a, self.n_b], axis=1
        )
        return np.cumsum(columns[::-1], axis=0)[::-1]


def _combined(row: np.ndarray) -> tuple[float, float, float]:
    w, wd, w2v, ws2 = float(row[0]), float(row[1]), float(row[2]), float(row[3])
    return wd / w, w2v / (w * w), ws2 / w


def scalar_evidence(
    g: Guardrail, judging: Judging, parts: ScalarParts, what: str, unit: EffectUnit, detail: str
) -> Evidence:
    """Cumulative test and change detector on the combined scalar effect (challenger minus
    champion), three zones against margin and tolerance."""
    sums = parts.suffix()
    n_a, n_b = (int(sums[0, 4]), int(sums[0, 5])) if len(sums) else (0, 0)
    waiting = _too_few(g, judging, n_a, n_b, what, unit)
    if waiting is not None:
        return waiting
    thresholds = g.thresholds(parts.champion_level)
    margin, tolerance = thresholds
    sign = -1.0 if g.worse == "lower" else 1.0

    def look(row: np.ndarray) -> tuple[float, float, float, float] | None:
        """(p for harm beyond tolerance, harm-side estimate, variance, tau2), or None without
        variation."""
        if row[0] <= 0.0:
            return None
        estimate, variance, sigma2 = _combined(row)
        tau2 = g.mixing * g.mixing * sigma2
        if not (variance > 0.0 and tau2 > 0.0):
            return None
        harm_side = sign * estimate
        p = mixture.p_value(mixture.one_sided_log_lr(harm_side - tolerance, variance, tau2))
        return p, harm_side, variance, tau2

    cumulative = look(sums[0])
    if cumulative is None:
        return _evidence(g, judging, n_a, n_b, "no variation yet", unit, thresholds)
    p_cum, harm_side, variance, tau2 = cumulative
    radius = mixture.one_sided_radius(variance, tau2, judging.alpha_cumulative)
    p_reported = min(1.0, p_cum * judging.alpha / judging.alpha_cumulative)
    chosen = (harm_side, radius)
    verdict: Verdict = CONTINUE
    if p_cum <= judging.alpha_cumulative:
        verdict = HARM
    elif harm_side + radius <= margin:
        verdict = NO_HARM
    last = min(judging.windows, len(sums) - 1)
    best: tuple[float, int, tuple[float, float, float, float]] | None = None
    for j in range(1, last + 1):
        row = sums[j]
        if min(row[4], row[5]) < g.min_samples:
            break  # later windows hold even fewer observations
        window = look(row)
        if window is not None and (best is None or window[0] < best[0]):
            best = (window[0], j, window)
    if best is not None:
        p_window, j, (_, w_harm_side, w_variance, w_tau2) = best
        p_reported = min(p_reported, p_window * judging.alpha / judging.alpha_window)
        if p_window <= judging.alpha_window and verdict != HARM:
            verdict = HARM
            w_radius = mixture.one_sided_radius(w_variance, w_tau2, judging.alpha_window)
            chosen = (w_harm_side, w_radius)
            label = judging.labels[j] if j < len(judging.labels) else f"stratum {j + 1}"
            detail = f"change since {label}: " + detail
    harm_side, radius = chosen
    effect = sign * harm_side
    ci = (effect - radius, effect + radius)
    return _evidence(
        g, judging, n_a, n_b, detail, unit, thresholds, verdict, p_reported, ci, effect
    )


def _proportion_parts(counts: Sequence[tuple[int, int, int, int]]) -> ScalarParts:
    """``counts`` per stratum ``(x_a, n_a, x_b, n_b)``. A stratum's per-arm variance uses its
    rate shrunk by two pseudo-observations towards the arm's rate over all strata, itself
    add-one smoothed ((x + 1) / (n + 2)): zero counts still give a finite, honest width, and
    many small strata do not each add a pseudo-event (which would inflate the variance)."""
    k = len(counts)
    weight, diff, var_a, var_b, sigma2 = (np.zeros(k) for _ in range(5))
    rows = np.array(counts, dtype=float).reshape(k, 4)
    x_a_all, n_a_all, x_b_all, n_b_all = rows.T
    prior_a = (x_a_all.sum() + 1.0) / (n_a_all.sum() + 2.0)
    prior_b = (x_b_all.sum() + 1.0) / (n_b_all.sum() + 2.0)
    prior = (x_a_all.sum() + x_b_all.sum() + 1.0) / (n_a_all.sum() + n_b_all.sum() + 2.0)
    for i, (x_a, n_a, x_b, n_b) in enumerate(counts):
        if n_a == 0 or n_b == 0:
            continue
        s_a, s_b = (x_a + 2.0 * prior_a) / (n_a + 2.0), (x_b + 2.0 * prior_b) / (n_b + 2.0)
        pooled = (x_a + x_b + 2.0 * prior) / (n_a + n_b + 2.0)
        weight[i] = n_a * n_b / (n_a + n_b)
        diff[i] = x_b / n_b - x_a / n_a
        var_a[i], var_b[i] = s_a * (1.0 - s_a) / n_a, s_b * (1.0 - s_b) / n_b
        sigma2[i] = pooled * (1.0 - pooled)
    level = float(x_a_all.sum() / n_a_all.sum()) if n_a_all.sum() else 0.0
    return ScalarParts(weight, diff, var_a, var_b, sigma2, n_a_all, n_b_all, level)


def _mean_parts(
    moments: Sequence[tuple[tuple[int, float, float], tuple[int, float, float]]],
) -> ScalarParts:
    """``moments`` per stratum: each arm's ``(count, sum, sum of squares)``; Welch variance
    (Lindon et al. 2022, Sec. 3.2). Strata with fewer than two observations in an arm have no
    variance estimate and count only towards the sample sizes."""
    k = len(moments)
    weight, diff, part_a, part_b, sigma2 = (np.zeros(k) for _ in range(5))
    n_a_all, n_b_all = np.zeros(k), np.zeros(k)
    sum_total = n_total = 0.0
    for i, ((n_a, sum_a, sq_a), (n_b, sum_b, sq_b)) in enumerate(moments):
        n_a_all[i], n_b_all[i] = n_a, n_b
        sum_total, n_total = sum_total + sum_a, n_total + n_a
        if n_a < 2 or n_b < 2:
            continue
        mean_a, mean_b = sum_a / n_a, sum_b / n_b
        var_a = max(sq_a - n_a * mean_a * mean_a, 0.0) / (n_a - 1)
        var_b = max(sq_b - n_b * mean_b * mean_b, 0.0) / (n_b - 1)
        weight[i] = n_a * n_b / (n_a + n_b)
        diff[i] = mean_b - mean_a
        part_a[i], part_b[i] = var_a / n_a, var_b / n_b
        sigma2[i] = (n_a * var_a + n_b * var_b) / (n_a + n_b)
    level = sum_total / n_total if n_total else 0.0
    return ScalarParts(weight, diff, part_a, part_b, sigma2, n_a_all, n_b_all, level)


def _strata_note(strata: Sequence[Stratum]) -> str:
    return f" over {len(strata)} strata" if len(strata) > 1 else ""


# -- distribution shifts ---------------------------------------------------------------------


def shift_evidence(
    g: Guardrail, judging: Judging, counts_a: np.ndarray, counts_b: np.ndarray, what: str
) -> Evidence:
    """Has the distribution over categories changed by more than the tolerance?

    ``counts_a``/``counts_b`` are strata x categories. The CMH-weighted difference of the
    frequency vectors ``d = sum_s w_s (f_b,s - f_a,s) / W`` has covariance ``S / W`` (as
    ``w_s = 1 / (1/n_a + 1/n_b)``), with ``S`` the multinomial covariance of the pooled
    frequencies, so the mixture of :func:`~controller.stats.mixture.chi2_mixture_log_lr` applies
    with ``scale = 1 / W``. Its confidence ellipsoid ``sum_k (d_k - delta_k)^2 / p_k <= R^2``
    bounds the total-variation distance: by Cauchy-Schwarz the true TV lies in
    ``[TV(d) - R/2, TV(d) + R/2]``. Harm when the lower end is beyond the tolerance (p-value in
    closed form, :func:`~controller.stats.mixture.chi2_p_value_beyond`), non-inferiority when
    the upper end is within the margin. Rare categories are merged first (see
    ``MIN_EXPECTED_PER_CATEGORY``), so TV is measured on the merged categories.
    """
    n_a, n_b = int(counts_a.sum()), int(counts_b.sum())
    waiting = _too_few(g, judging, n_a, n_b, what, "tv")
    if waiting is not None:
        return waiting
    thresholds = g.thresholds(0.0)
    margin, tolerance = thresholds
    total_a, total_b = counts_a.sum(axis=0), counts_b.sum(axis=0)
    pooled = (total_a + total_b) / float(n_a + n_b)
    common = pooled * min(n_a, n_b) >= MIN_EXPECTED_PER_CATEGORY
    if not common.all():
        rare = ~common
        pooled = np.append(pooled[common], pooled[rare].sum())
        counts_a = np.column_stack([counts_a[:, common], counts_a[:, rare].sum(axis=1)])
        counts_b = np.column_stack([counts_b[:, common], counts_b[:, rare].sum(axis=1)])
    rows_a, rows_b = counts_a.sum(axis=1), counts_b.sum(axis=1)
    both = (rows_a > 0) & (rows_b > 0)
    weight = np.where(both, rows_a * rows_b / np.maximum(rows_a + rows_b, 1.0), 0.0)
    total_weight = float(weight.sum())
    present = pooled > 0.0
    dof = max(int(present.sum()) - 1, 0)
    if total_weight <= 0.0 or dof == 0:
        return _evidence(g, judging, n_a, n_b, "no variation yet", "tv", thresholds)
    freq_a = counts_a[both] / rows_a[both, None]
    freq_b = counts_b[both] / rows_b[both, None]
    diff = (weight[both, None] * (freq_b - freq_a)).sum(axis=0)[present] / total_weight
    distance2 = float((diff * diff / pooled[present]).sum())
    scale = 1.0 / total_weight
    tau2 = g.mixing * g.mixing
    alpha = judging.alpha
    half_radius = 0.5 * mixture.chi2_cs_radius(scale, tau2, dof, alpha)
    tv = 0.5 * float(np.abs(diff).sum())
    p = mixture.chi2_p_value_beyond(tv, tolerance, scale, tau2, dof)
    low, high = max(tv - half_radius, 0.0), min(tv + half_radius, 1.0)
    verdict: Verdict = HARM if p <= alpha else NO_HARM if high <= margin else CONTINUE
    detail = (
        f"{what}: {dof + 1} categories{_strata_note(list(rows_a))}, chi-square distance "
        f"{math.sqrt(distance2):.3g}"
    )
    return _evidence(g, judging, n_a, n_b, detail, "tv", thresholds, verdict, p, (low, high), tv)


# -- the metrics ---------------------------------------------------------------------------


def error_rate(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    counts = [(a.errors, a.requests, b.errors, b.requests) for a, b in strata]
    sizes = [(float(c[1]), float(c[3])) for c in counts]
    parts = _proportion_parts(counts).with_units(strata, PROPORTION_UNITS, sizes)
    x_a, n_a = sum(c[0] for c in counts), sum(c[1] for c in counts)
    x_b, n_b = sum(c[2] for c in counts), sum(c[3] for c in counts)
    detail = f"requests: {x_a}/{n_a} vs {x_b}/{n_b}{_strata_note(strata)}"
    return scalar_evidence(g, judging, parts, "requests", "rate", detail)


def latency(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    """Shift of mean log latency: ``exp(effect)`` is the ratio of geometric means (the median
    ratio for a log-location shift), shown as a percentage change."""
    moments = [
        (
            (a.latency_n, a.log_latency_sum, a.log_latency_sumsq),
            (b.latency_n, b.log_latency_sum, b.log_latency_sumsq),
        )
        for a, b in strata
    ]
    sizes = [(float(m[0][0]), float(m[1][0])) for m in moments]
    parts = _mean_parts(moments).with_units(strata, LOG_LATENCY_UNITS, sizes)
    n_a, n_b = sum(m[0][0] for m in moments), sum(m[1][0] for m in moments)
    gm_a = math.exp(sum(m[0][1] for m in moments) / n_a) * 1000 if n_a else 0.0
    gm_b = math.exp(sum(m[1][1] for m in moments) / n_b) * 1000 if n_b else 0.0
    detail = f"latencies: geometric mean {gm_a:.4g} vs {gm_b:.4g} ms{_strata_note(strata)}"
    return scalar_evidence(g, judging, parts, "latencies", "log_ratio", detail)


def latency_tail(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    """Tail latency as an exceedance proportion: the share of each arm's requests above the
    pooled ``g.quantile`` (a histogram bucket edge over all strata), compared within strata as
    two binomial proportions. Robust to heavy tails: it uses only which side of the threshold a
    request fell on. The effect is challenger minus champion exceedance (e.g. +0.5 pp at p99:
    1.5 % instead of 1 % of the challenger's requests are slower than the pooled p99)."""
    n_a = sum(a.latency_n for a, _ in strata)
    n_b = sum(b.latency_n for _, b in strata)
    waiting = _too_few(g, judging, n_a, n_b, "latencies", "rate")
    if waiting is not None:
        return waiting
    hist_a = np.array([a.latency_counts for a, _ in strata], dtype=float)
    hist_b = np.array([b.latency_counts for _, b in strata], dtype=float)
    pooled = np.cumsum(hist_a.sum(axis=0) + hist_b.sum(axis=0))
    bucket = int(np.searchsorted(pooled, (g.quantile or 0.5) * pooled[-1], side="left"))
    above_a = hist_a[:, bucket + 1 :].sum(axis=1)
    above_b = hist_b[:, bucket + 1 :].sum(axis=1)
    counts = [
        (int(above_a[i]), int(hist_a[i].sum()), int(above_b[i]), int(hist_b[i].sum()))
        for i in range(len(strata))
    ]
    threshold_ms = latency_bucket_upper(bucket) * 1000.0
    detail = (
        f"above pooled threshold {threshold_ms:.4g} ms: {int(above_a.sum())}/{n_a} vs "
        f"{int(above_b.sum())}/{n_b}{_strata_note(strata)}"
    )
    return scalar_evidence(g, judging, _proportion_parts(counts), "latencies", "rate", detail)


def accuracy(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    counts = [(a.correct, a.labels, b.correct, b.labels) for a, b in strata]
    x_a, n_a = sum(c[0] for c in counts), sum(c[1] for c in counts)
    x_b, n_b = sum(c[2] for c in counts), sum(c[3] for c in counts)
    detail = f"labels: {x_a}/{n_a} vs {x_b}/{n_b} correct{_strata_note(strata)}"
    return scalar_evidence(g, judging, _proportion_parts(counts), "labels", "rate", detail)


def reward(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    moments = [
        ((a.rewards, a.reward_sum, a.reward_sumsq), (b.rewards, b.reward_sum, b.reward_sumsq))
        for a, b in strata
    ]
    n_a, n_b = sum(m[0][0] for m in moments), sum(m[1][0] for m in moments)
    mean_a = sum(m[0][1] for m in moments) / n_a if n_a else 0.0
    mean_b = sum(m[1][1] for m in moments) / n_b if n_b else 0.0
    detail = f"rewards: mean {mean_a:.4g} vs {mean_b:.4g}{_strata_note(strata)}"
    return scalar_evidence(g, judging, _mean_parts(moments), "rewards", "mean", detail)


def class_shift(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    classes = sorted({c for a, b in strata for c in (*a.predicted, *b.predicted)})
    counts_a = np.array([[a.predicted.get(c, 0) for c in classes] for a, _ in strata], float)
    counts_b = np.array([[b.predicted.get(c, 0) for c in classes] for _, b in strata], float)
    if not classes:
        counts_a = counts_b = np.zeros((len(strata), 0))
    return shift_evidence(g, judging, counts_a, counts_b, "predictions")


def confidence_shift(g: Guardrail, strata: Sequence[Stratum], judging: Judging) -> Evidence:
    counts_a = np.array([a.confidence_counts for a, _ in strata], dtype=float)
    counts_b = np.array([b.confidence_counts for _, b in strata], dtype=float)
    return shift_evidence(g, judging, counts_a, counts_b, "confidences")


COMPARISONS: dict[str, Comparison] = {
    "error_rate": error_rate,
    "latency": latency,
    "latency_p95": latency_tail,
    "latency_p99": latency_tail,
    "accuracy": accuracy,
    "reward": reward,
    "class_shift": class_shift,
    "confidence_shift": confidence_shift,
}
