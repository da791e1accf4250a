"""The closed forms in controller.stats.mixture against numerical integration."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, stats

from controller.stats import mixture


def _mixture_by_quadrature(x: float, v: float, tau2: float, one_sided: bool) -> float:
    def integrand(delta: float) -> float:
        ratio = math.exp((delta * x - 0.5 * delta * delta) / v)
        prior = stats.norm.pdf(delta, scale=math.sqrt(tau2))
        return ratio * (2.0 * prior if one_sided else prior)

    lower = 0.0 if one_sided else -math.inf
    return integrate.quad(integrand, lower, math.inf)[0]


@pytest.mark.parametrize("x", [-0.02, 0.0, 0.005, 0.03])
@pytest.mark.parametrize("one_sided", [False, True])
def test_likelihood_ratio_matches_its_integral(x: float, one_sided: bool) -> None:
    v, tau2 = 1e-4, 4e-4
    closed = (mixture.one_sided_log_lr if one_sided else mixture.two_sided_log_lr)(x, v, tau2)
    assert closed == pytest.approx(math.log(_mixture_by_quadrature(x, v, tau2, one_sided)))


def test_one_sided_is_stable_far_in_the_improvement_tail() -> None:
    # Phi underflows to 0 here; the asymptotic branch keeps the log finite and matches.
    log_lr = mixture.one_sided_log_lr(-1.0, 1e-6, 1e-4)
    assert math.isfinite(log_lr) and log_lr < 0
    # Laplace: the integral is dominated by delta near 0, 2 phi_tau(0) * V / |x|.
    expected = math.log(2.0 / (math.sqrt(2.0 * math.pi) * 0.01) * 1e-6)
    assert log_lr == pytest.approx(expected, abs=1e-3)
    assert mixture.p_value(mixture.one_sided_log_lr(-1.0, 1e-6, 1e-4)) == 1.0


def test_cs_radius_inverts_the_mixture_at_alpha() -> None:
    v, tau2, alpha = 2e-4, 1e-3, 0.05
    r = mixture.cs_radius(v, tau2, alpha)
    assert mixture.two_sided_log_lr(r, v, tau2) == pytest.approx(math.log(1 / alpha))


def test_chi2_mixture_with_one_dof_is_the_scalar_mixture() -> None:
    # d = (+e, -e) on two categories with p = (1/2, 1/2): w2 = 4 e^2, variance of d_1 is
    # scale / 4, prior variance tau2 / 4.
    e, scale, tau2 = 0.01, 2e-3, 1e-2
    chi2 = mixture.chi2_mixture_log_lr(4 * e * e, scale, tau2, 1)
    assert chi2 == pytest.approx(mixture.two_sided_log_lr(e, scale / 4, tau2 / 4))
    radius = mixture.chi2_cs_radius(scale, tau2, 1, 0.05)
    assert radius / 2 == pytest.approx(mixture.cs_radius(scale / 4, tau2 / 4, 0.05))


@pytest.mark.parametrize(
    ("variance", "tau2", "alpha"), [(1e-6, 2e-6, 0.01), (1e-3, 1e-5, 1e-4), (2.0, 0.01, 0.3)]
)
def test_one_sided_radius_inverts_the_one_sided_mixture(
    variance: float, tau2: float, alpha: float
) -> None:
    u = mixture.one_sided_radius(variance, tau2, alpha)
    assert mixture.one_sided_log_lr(u, variance, tau2) == pytest.approx(math.log(1 / alpha))
    assert u < mixture.cs_radius(variance, tau2, alpha)  # tighter than the two-sided bound


def test_shift_p_value_beyond_tolerance_matches_the_ellipsoid() -> None:
    scale, tau2, dof, alpha = 1e-4, 0.01, 3, 0.01
    half = 0.5 * mixture.chi2_cs_radius(scale, tau2, dof, alpha)
    # At TV(d) = tolerance + R/2 the lower end of the TV interval is exactly the tolerance.
    p = mixture.chi2_p_value_beyond(0.05 + half, 0.05, scale, tau2, dof)
    assert p == pytest.approx(alpha)
    assert mixture.chi2_p_value_beyond(0.04, 0.05, scale, tau2, dof) == 1.0
