"""One sequential comparison per guardrail metric: two arms' sufficient statistics in,
:class:`~controller.stats.evidence.Evidence` out.

Each comparison reduces the arms to an asymptotically normal effect estimate and applies the
normal-mixture tests of :mod:`controller.stats.mixture`:

- harm: the one-sided (half-normal) mixture SPRT of ``H0: challenger no worse``; its
  always-valid p-value is ``1 / Lambda`` (Johari et al. 2017, eq. (11); Howard et al. 2021,
  Sec. 3.4);
- the effect: the two-sided normal-mixture confidence sequence (Howard et al. 2021, eq. (14));
  the guardrail shows ``no_harm_within_margin`` once its harm-side bound is inside the margin.

The mixing variance is ``tau2 = (mixing * sigma)^2`` where ``sigma`` is the pooled
per-observation standard deviation (plugged in, as Lindon et al. 2022 do with the variance), so
``mixing`` is a standardised effect size (Cohen's d or h, or w for shifts) the test is tuned to
detect fastest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from controller.stats import mixture
from controller.stats.evidence import CONTINUE, HARM, NO_HARM, Evidence, Verdict
from controller.stats.guardrails import Guardrail
from controller.stats.sufficient import ArmStats, latency_bucket_upper

Comparison = Callable[[Guardrail, ArmStats, ArmStats, float], Evidence]

# A shift test merges categories expected to hold fewer observations than this in the smaller
# arm into one "other" category, where the normal approximation would not hold.
MIN_EXPECTED_PER_CATEGORY = 5.0


def _evidence(
    g: Guardrail,
    alpha: float,
    n_a: int,
    n_b: int,
    detail: str,
    verdict: Verdict = CONTINUE,
    p_value: float | None = None,
    ci: tuple[float, float] | None = None,
    effect: float | None = None,
) -> Evidence:
    """What every comparison reports, filled in from the guardrail it judged."""
    low, high = ci if ci is not None else (None, None)
    return Evidence(
        metric=g.metric,
        verdict=verdict,
        p_value=p_value,
        ci_low=low,
        ci_high=high,
        effect=effect,
        margin=g.margin,
        n_champion=n_a,
        n_challenger=n_b,
        alpha=alpha,
        worse=g.worse,
        detail=detail,
    )


def _waiting(g: Guardrail, alpha: float, n_a: int, n_b: int, detail: str) -> Evidence:
    return _evidence(g, alpha, n_a, n_b, detail)


def _too_few(g: Guardrail, alpha: float, n_a: int, n_b: int, what: str) -> Evidence | None:
    if min(n_a, n_b) >= g.min_samples:
        return None
    return _waiting(g, alpha, n_a, n_b, f"need {g.min_samples} {what} per arm, have {n_a}/{n_b}")


def scalar_evidence(
    g: Guardrail,
    alpha: float,
    *,
    effect: float,
    variance: float,
    test_variance: float,
    sigma2: float,
    n_a: int,
    n_b: int,
    detail: str,
) -> Evidence:
    """Harm test and confidence sequence for a scalar effect (challenger minus champion).

    ``variance`` is the estimate's variance for the confidence sequence, ``test_variance`` its
    variance under the null (pooled, where the null fixes it), ``sigma2`` the pooled
    per-observation variance that scales the mixing prior.
    """
    tau2 = g.mixing * g.mixing * sigma2
    if not (variance > 0.0 and test_variance > 0.0 and tau2 > 0.0):
        return _waiting(g, alpha, n_a, n_b, "no variation yet")
    harm_side = effect if g.worse == "higher" else -effect
    p = mixture.p_value(mixture.one_sided_log_lr(harm_side, test_variance, tau2))
    radius = mixture.cs_radius(variance, tau2, alpha)
    low, high = effect - radius, effect + radius
    verdict: Verdict
    if p <= alpha:
        verdict = HARM
    elif (high <= g.margin) if g.worse == "higher" else (low >= -g.margin):
        verdict = NO_HARM
    else:
        verdict = CONTINUE
    return _evidence(g, alpha, n_a, n_b, detail, verdict, p, (low, high), effect)


def proportions_evidence(
    g: Guardrail, alpha: float, x_a: int, n_a: int, x_b: int, n_b: int, what: str
) -> Evidence:
    """Difference of two binomial proportions ``x_b/n_b - x_a/n_a``.

    The null variance uses the pooled rate and the confidence sequence the per-arm rates, both
    with add-one smoothing ((x + 1) / (n + 2)) so that zero counts still give a finite, honest
    width: with no events in either arm after many observations the bound still tightens and
    non-inferiority can be shown.
    """
    waiting = _too_few(g, alpha, n_a, n_b, what)
    if waiting is not None:
        return waiting
    pooled = (x_a + x_b + 1.0) / (n_a + n_b + 2.0)
    sigma2 = pooled * (1.0 - pooled)
    s_a = (x_a + 1.0) / (n_a + 2.0)
    s_b = (x_b + 1.0) / (n_b + 2.0)
    return scalar_evidence(
        g,
        alpha,
        effect=x_b / n_b - x_a / n_a,
        variance=s_a * (1.0 - s_a) / n_a + s_b * (1.0 - s_b) / n_b,
        test_variance=sigma2 * (1.0 / n_a + 1.0 / n_b),
        sigma2=sigma2,
        n_a=n_a,
        n_b=n_b,
        detail=f"{what}: {x_a}/{n_a} vs {x_b}/{n_b}",
    )


def means_evidence(
    g: Guardrail,
    alpha: float,
    moments_a: tuple[int, float, float],
    moments_b: tuple[int, float, float],
    what: str,
) -> Evidence:
    """Difference of means from ``(count, sum, sum of squares)``, Welch variance (Lindon et al.
    2022, Sec. 3.2)."""
    n_a, sum_a, sq_a = moments_a
    n_b, sum_b, sq_b = moments_b
    waiting = _too_few(g, alpha, n_a, n_b, what)
    if waiting is not None:
        return waiting
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    var_a = max(sq_a - n_a * mean_a * mean_a, 0.0) / (n_a - 1) if n_a > 1 else 0.0
    var_b = max(sq_b - n_b * mean_b * mean_b, 0.0) / (n_b - 1) if n_b > 1 else 0.0
    variance = var_a / n_a + var_b / n_b
    return scalar_evidence(
        g,
        alpha,
        effect=mean_b - mean_a,
        variance=variance,
        test_variance=variance,
        sigma2=(n_a * var_a + n_b * var_b) / (n_a + n_b),
        n_a=n_a,
        n_b=n_b,
        detail=f"{what}: mean {mean_a:.4g} vs {mean_b:.4g}",
    )


def shift_evidence(
    g: Guardrail, alpha: float, counts_a: np.ndarray, counts_b: np.ndarray, what: str
) -> Evidence:
    """Has the distribution over categories changed? Mixture test on the difference of the two
    frequency vectors (:func:`~controller.stats.mixture.chi2_mixture_log_lr`); the effect is the
    total-variation distance ``TV = 1/2 sum_k |d_k|``.

    The confidence sequence is the ellipsoid ``sum_k (d_k - delta_k)^2 / p_k <= R^2``; by
    Cauchy-Schwarz ``sum_k |u_k| <= sqrt(sum_k u_k^2 / p_k) * sqrt(sum_k p_k) = R`` on it, so the
    true TV lies in ``[TV(d) - R/2, TV(d) + R/2]``. Rare categories are merged first (see
    ``MIN_EXPECTED_PER_CATEGORY``), so TV is measured on the merged categories.
    """
    n_a, n_b = int(counts_a.sum()), int(counts_b.sum())
    waiting = _too_few(g, alpha, n_a, n_b, what)
    if waiting is not None:
        return waiting
    pooled = (counts_a + counts_b) / float(n_a + n_b)
    common = pooled * min(n_a, n_b) >= MIN_EXPECTED_PER_CATEGORY
    freq_a, freq_b = counts_a / float(n_a), counts_b / float(n_b)
    if not common.all():
        rare = ~common
        pooled = np.append(pooled[common], pooled[rare].sum())
        freq_a = np.append(freq_a[common], freq_a[rare].sum())
        freq_b = np.append(freq_b[common], freq_b[rare].sum())
    present = pooled > 0.0
    diff = freq_b[present] - freq_a[present]
    dof = max(int(present.sum()) - 1, 0)
    distance2 = float((diff * diff / pooled[present]).sum())
    scale = 1.0 / n_a + 1.0 / n_b
    tau2 = g.mixing * g.mixing
    p = mixture.p_value(mixture.chi2_mixture_log_lr(distance2, scale, tau2, dof))
    half_radius = 0.5 * mixture.chi2_cs_radius(scale, tau2, dof, alpha)
    tv = 0.5 * float(np.abs(diff).sum())
    high = min(tv + half_radius, 1.0)
    verdict: Verdict = HARM if p <= alpha else NO_HARM if high <= g.margin else CONTINUE
    detail = f"{what}: {dof + 1} categories, chi-square distance {math.sqrt(distance2):.3g}"
    ci = (max(tv - half_radius, 0.0), high)
    return _evidence(g, alpha, n_a, n_b, detail, verdict, p, ci, tv)


# -- the metrics ---------------------------------------------------------------------------


def error_rate(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    return proportions_evidence(g, alpha, a.errors, a.requests, b.errors, b.requests, "requests")


def latency(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    """Shift of mean log latency: ``exp(effect)`` is the ratio of geometric means (the median
    ratio for a log-location shift)."""
    return means_evidence(
        g,
        alpha,
        (a.latency_n, a.log_latency_sum, a.log_latency_sumsq),
        (b.latency_n, b.log_latency_sum, b.log_latency_sumsq),
        "latencies",
    )


def latency_tail(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    """Tail latency as an exceedance proportion: the share of each arm's requests above the
    pooled ``g.quantile`` (a histogram bucket edge), compared as two binomial proportions.
    Robust to heavy tails: it uses only which side of the threshold a request fell on. The
    effect is challenger minus champion exceedance (e.g. +0.005 at p99: 1.5 % instead of 1 %
    of the challenger's requests are slower than the pooled p99)."""
    n_a, n_b = a.latency_n, b.latency_n
    waiting = _too_few(g, alpha, n_a, n_b, "latencies")
    if waiting is not None:
        return waiting
    cum_a = np.cumsum(np.asarray(a.latency_counts))
    cum_b = np.cumsum(np.asarray(b.latency_counts))
    pooled = cum_a + cum_b
    bucket = int(np.searchsorted(pooled, (g.quantile or 0.5) * pooled[-1], side="left"))
    x_a, x_b = int(cum_a[-1] - cum_a[bucket]), int(cum_b[-1] - cum_b[bucket])
    evidence = proportions_evidence(g, alpha, x_a, int(cum_a[-1]), x_b, int(cum_b[-1]), "latencies")
    threshold_ms = latency_bucket_upper(bucket) * 1000.0
    return _with_detail(
        evidence, f"above pooled threshold {threshold_ms:.4g} ms: {x_a}/{n_a} vs {x_b}/{n_b}"
    )


def accuracy(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    return proportions_evidence(g, alpha, a.correct, a.labels, b.correct, b.labels, "labels")


def reward(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    return means_evidence(
        g,
        alpha,
        (a.rewards, a.reward_sum, a.reward_sumsq),
        (b.rewards, b.reward_sum, b.reward_sumsq),
        "rewards",
    )


def class_shift(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    classes = sorted(set(a.predicted) | set(b.predicted))
    counts_a = np.array([a.predicted.get(c, 0) for c in classes], dtype=float)
    counts_b = np.array([b.predicted.get(c, 0) for c in classes], dtype=float)
    return shift_evidence(g, alpha, counts_a, counts_b, "predictions")


def confidence_shift(g: Guardrail, a: ArmStats, b: ArmStats, alpha: float) -> Evidence:
    counts_a = np.asarray(a.confidence_counts, dtype=float)
    counts_b = np.asarray(b.confidence_counts, dtype=float)
    return shift_evidence(g, alpha, counts_a, counts_b, "confidences")


def _with_detail(evidence: Evidence, detail: str) -> Evidence:
    return (
        evidence.model_copy(update={"detail": detail}) if evidence.p_value is not None else evidence
    )


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
