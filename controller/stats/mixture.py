"""Normal-mixture sequential probability ratio tests and confidence sequences.

Every guardrail reduces its two arms to an asymptotically normal estimate of the effect
(challenger minus champion) with variance ``V``, and mixes the likelihood ratio of
``N(delta, V)`` against ``N(0, V)`` over a normal prior ``delta ~ N(0, tau2)``. The mixture is a
nonnegative martingale under the null, so by Ville's inequality it crosses ``1/alpha`` with
probability at most ``alpha`` *ever*: the test may be looked at after every batch.

- Johari, Koomen, Pekelis, Walsh (2017), "Always valid inference", KDD / arXiv:1512.04922,
  eq. (11): the two-sided mixture likelihood ratio and the always-valid p-value
  ``p_n = min(1, 1 / Lambda_n)``.
- Howard, Ramdas, McAuliffe, Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
  confidence sequences", Ann. Statist. 49(2), Prop. 6 / eq. (14) ("normal mixture"
  boundary) and its one-sided variant (Sec. 3.4, half-normal mixture).
- Lindon, Sanden, Shirikian, Liu, Malek (2022), "Rapid regression detection in software
  deployments through sequential testing", KDD, Sec. 3: the same mixture on difference-in-means
  of two arms, with plug-in variances.

All functions are closed forms on floats (``math`` only) so that a guardrail evaluation costs
microseconds; nothing here calls scipy.
"""

from __future__ import annotations

import math

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_normal_cdf(z: float) -> float:
    """``log Phi(z)``, accurate in the far left tail where ``Phi`` underflows."""
    if z > -30.0:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2.0)))
    # Mills-ratio asymptotics: Phi(z) ~ phi(z) / -z (1 - 1/z^2).
    return -0.5 * z * z - math.log(-z) - _HALF_LOG_2PI + math.log1p(-1.0 / (z * z))


def normal_sf(z: float) -> float:
    """``P(Z > z)`` for a standard normal: the fixed-horizon one-sided p-value."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_sided_log_lr(estimate: float, variance: float, tau2: float) -> float:
    """Log of the normal-mixture likelihood ratio, Johari et al. (2017) eq. (11)::

    Lambda = sqrt(V / (V + tau2)) * exp(tau2 * x^2 / (2 V (V + tau2)))
    """
    total = variance + tau2
    return 0.5 * math.log(variance / total) + tau2 * estimate * estimate / (2.0 * variance * total)


def one_sided_log_lr(estimate: float, variance: float, tau2: float) -> float:
    """Log of the half-normal mixture likelihood ratio for ``H0: delta <= 0`` against
    ``delta > 0`` (prior ``2 N(0, tau2)`` restricted to ``delta > 0``; Howard et al. 2021,
    Sec. 3.4)::

        Lambda = 2 sqrt(V / (V + tau2)) exp(tau2 x^2 / (2 V (V + tau2)))
                 * Phi(x tau / sqrt(V (V + tau2)))

    For every ``delta <= 0`` this is a nonnegative supermartingale, so ``1 / Lambda`` is an
    anytime-valid one-sided p-value. It spends no power on the improvement side, which the
    two-sided form does.
    """
    total = variance + tau2
    z = estimate * math.sqrt(tau2 / (variance * total))
    return _LOG_2 + two_sided_log_lr(estimate, variance, tau2) + log_normal_cdf(z)


def p_value(log_lr: float) -> float:
    """Always-valid p-value ``min(1, 1 / Lambda)`` (Johari et al. 2017, Prop. 2)."""
    return 1.0 if log_lr <= 0.0 else math.exp(-log_lr)


def cs_radius(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence at level ``alpha``.

    Inverting ``Lambda(theta) < 1 / alpha`` in eq. (11) of Johari et al. (2017), equivalently
    Howard et al. (2021) eq. (14)::

        r = sqrt(2 V (V + tau2) / tau2 * (log(1 / alpha) + 1/2 log((V + tau2) / V)))
    """
    total = variance + tau2
    return math.sqrt(
        2.0 * variance * total / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log(total / variance))
    )


def chi2_mixture_log_lr(distance2: float, scale: float, tau2: float, dof: int) -> float:
    """Log mixture likelihood ratio for a ``dof``-dimensional normal difference of category
    frequencies (the multivariate analogue of eq. (11) in Johari et al. 2017).

    The difference of two arms' frequency vectors is approximately ``N(delta, scale * S)`` with
    ``S = diag(p) - p p^T`` the multinomial covariance of the pooled frequencies ``p`` and
    ``scale = 1/n_a + 1/n_b``. With the prior ``delta ~ N(0, tau2 * S)`` the mixture has the
    closed form::

        Lambda = (scale / (scale + tau2))^(dof/2) * exp(tau2 * w2 / (2 scale (scale + tau2)))

    where ``w2 = sum_k d_k^2 / p_k`` (the chi-square distance, ``d^T S^+ d``). Compare the
    Dirichlet-multinomial Bayes factor of Lindon & Malek (2020), "Anytime-valid inference for
    multinomial count data", which this approximates for large counts.
    """
    total = scale + tau2
    return 0.5 * dof * math.log(scale / total) + tau2 * distance2 / (2.0 * scale * total)


def chi2_cs_radius(scale: float, tau2: float, dof: int, alpha: float) -> float:
    """Radius, in the chi-square norm ``sqrt(sum d_k^2 / p_k)``, of the ellipsoidal confidence
    sequence obtained by inverting :func:`chi2_mixture_log_lr` at level ``alpha``."""
    total = scale + tau2
    return math.sqrt(
        2.0 * scale * total / tau2 * (math.log(1.0 / alpha) + 0.5 * dof * math.log(total / scale))
    )


def one_sided_radius(variance: float, tau2: float, alpha: float) -> float:
    """The ``u`` at which the one-sided mixture (2) reaches ``1 / alpha``: ``x - u`` is a lower
    confidence sequence for ``delta`` at level ``alpha`` (every ``theta <= x - u`` is rejected
    by the test of ``H0: delta <= theta``; Howard et al. 2021, Sec. 3.4), and ``x + u`` the
    mirrored upper one. The harm-side bound and the harm test therefore always agree.

    The mixture is increasing in ``u``. Without its ``Phi`` factor (at most 1) the root is the
    two-sided radius at ``2 alpha``, a lower bracket; at the two-sided radius at ``alpha`` the
    mixture is at least ``1 / alpha`` (there ``2 Phi >= 1``), an upper one. Newton steps from
    the lower bracket, kept inside it by bisection, converge in a few iterations."""
    target = math.log(1.0 / alpha)
    low = cs_radius(variance, tau2, min(2.0 * alpha, 0.999))
    high = cs_radius(variance, tau2, alpha)
    total = variance + tau2
    slope = math.sqrt(tau2 / (variance * total))
    u = low
    for _ in range(50):
        f = one_sided_log_lr(u, variance, tau2) - target
        if abs(f) < 1e-12:
            return u
        if f < 0.0:
            low = u
        else:
            high = u
        z = u * slope
        mills = math.exp(-0.5 * z * z - _HALF_LOG_2PI - log_normal_cdf(z))
        derivative = tau2 * u / (variance * total) + slope * mills
        step = u - f / derivative if derivative > 0.0 else high
        u = step if low < step < high else 0.5 * (low + high)
        if high - low <= 1e-14 * high:
            break
    return high


def chi2_p_value_beyond(
    distance: float, tolerance: float, scale: float, tau2: float, dof: int
) -> float:
    """Anytime-valid p-value for ``TV > tolerance`` from the ellipsoid of
    :func:`chi2_cs_radius`: the smallest ``alpha`` at which ``TV(d) - R(alpha)/2 > tolerance``,
    in closed form from ``R^2 = 2 c (c + tau2) / tau2 (log(1/alpha) + dof/2 log((c + tau2)/c))``."""
    gap = distance - tolerance
    if gap <= 0.0:
        return 1.0
    total = scale + tau2
    log_inv_alpha = 2.0 * gap * gap * tau2 / (scale * total) - 0.5 * dof * math.log(total / scale)
    return 1.0 if log_inv_alpha <= 0.0 else math.exp(-log_inv_alpha)
