"""Change detection on a mean whose expected value is itself an estimate: change-point
contrasts (pure, no I/O, no clocks).

The betting detectors of :mod:`controller.stats.drift` test against ``expected ± tolerance``
and widen the tolerance by the expected value's own 99.9 % half-width, so that a reference of
20,000 held-out rows does not turn its sampling error into alarms. For a class share that
widening costs a third of a 3-point change (a 25 % class's half-width is 1 point). This detector
spends nothing on it: it treats the expected value as what it is, an average of ``n0`` earlier
observations, and compares averages.

For each candidate change time ``tau`` and block ``b >= tau``, the contrast

    d = mean(blocks tau..b) - mean(expected value's n0 observations, blocks before tau)

(each a count-weighted mean of per-observation values of standard deviation ``sigma``) is, when
nothing has changed, ``N(0, V)`` with ``V = sigma^2 (1 / N_after + 1 / N_before)`` **whatever
the true mean**: the unknown mean cancels. Against "the mean moved by ``delta`` from ``tau``
on", its likelihood ratio is ``exp((delta d - delta^2 / 2) / V)``. It is the likelihood ratio of
the data's contrasts (the statistics that do not depend on the unknown mean; equivalently, the
Bayes factor with a flat prior on it), so for each ``tau`` it is a nonnegative martingale in
``b`` under the null, and so is its average over a grid of ``delta`` and directions (the
invariance argument of Pollak & Siegmund 1991, "Sequential detection of a change in a normal
mean when the initial value is unknown", Ann. Statist. 19). By Ville's inequality each ``tau``'s
process ever reaches ``A`` with probability at most ``1 / A``; the check alarms when the
largest over ``tau`` does (a CUSUM over change times, Page 1954), and one ``tau`` starts per
judged block, so it alarms within ``m`` blocks with probability at most ``m / A``: the bound of
the mixture Shiryaev-Roberts detectors, with the same thresholds.

The smallest ``delta`` is twice the policy's allowed change: a change no larger than the
allowed one loses every bet on average (``delta s - delta^2 / 2 < 0`` for ``s < delta / 2``)
and is never detected but by the bound's chance. An offset ``s`` from the reference that the
champion has had from its first block builds at most ``n0 (delta s - delta^2 / 2) / sigma^2``
of evidence however long it serves (``V`` stays above ``sigma^2 / n0``): the reference's own
size caps what a profile that is a little off can do.

Assumptions, stated as in :mod:`controller.stats.drift`: blocks independent given the past;
the two means normal (the central limit theorem: a change time is judged only once each side
holds ``MIN_INFORMATION / sigma^2`` observations, tested by simulation down to a 0.5 % class at
500 requests a block); ``sigma`` from the expected value. State
is bounded: every ``tau`` of the last ``RECENT_STARTS`` blocks, then fewer the older they get
(16 per doubling of age); dropping candidates only shrinks the union, so the bound holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from controller.stats.drift import Observation, Target

STEPS = 11  # bets: 2 * allowed * sqrt(2)^k, k < STEPS (0.01 … 0.32 for the 0.5-point default)
MAX_BET = 0.5
MIN_BET = 0.002  # with no allowed change at all, still a finite grid
RECENT_STARTS = 32
MIN_SD = 1e-6
# Observations on each side of a change time before it is judged: n sigma^2 at least this. For
# values in [0, 1] the Berry-Esseen distance to the normal law is at most about
# 0.5 / sqrt(n sigma^2), so a rare class is judged once it has been seen some tens of times.
MIN_INFORMATION = 25.0


def bets(target: Target) -> tuple[float, ...]:
    """The shifts bet on: from twice the allowed change up by factors of sqrt(2)."""
    smallest = max(2.0 * target.tolerance, MIN_BET)
    grid = tuple(smallest * 2.0 ** (k / 2.0) for k in range(STEPS))
    return tuple(d for d in grid if d <= MAX_BET) or (smallest,)


def fresh(target: Target) -> dict[str, Any]:
    """A detector with no candidate change time; the expected value counts as ``target.n``
    observations. Re-arming (after an alarm or an acknowledgement) starts afresh too: blocks of
    a change already reported must not become what later blocks are compared with."""
    return {"n": target.n, "sum": target.n * target.mean, "starts": []}


def step(
    target: Target, state: dict[str, Any], block: int, observation: Observation
) -> tuple[dict[str, Any], float]:
    """Add one block: a new candidate change time at it, then ``log`` of the largest
    candidate's mixture likelihood ratio, or 0 when none exceeds 1 (a CUSUM's floor)."""
    n_before, sum_before = float(state["n"]), float(state["sum"])
    starts = _thinned([*state["starts"], [block, n_before, sum_before]], block)
    n = n_before + observation.n
    total = sum_before + observation.n * (observation.observed_mean or 0.0)
    variance = max(target.scale, MIN_SD) ** 2
    grid = bets(target)
    shifts = [d * direction for d in grid for direction in target.directions]
    candidates = []
    enough = MIN_INFORMATION / variance
    for _start, n_c, sum_c in starts:
        n_s = n - n_c
        if n_c >= enough and n_s >= enough:
            contrast = (total - sum_c) / n_s - sum_c / n_c
            v = variance * (1.0 / n_s + 1.0 / n_c)
            candidates.append((_largest_term(abs(contrast), grid[0]) / v, contrast, v))
    best = 0.0
    # No bet's log ratio exceeds the bound, so candidates are tried from the largest bound down
    # and the rest skipped once it falls below the best mixture found.
    for bound, contrast, v in sorted(candidates, reverse=True):
        if bound <= best:
            break
        best = max(best, _log_mean_exp([(d * contrast - d * d / 2.0) / v for d in shifts]))
    return {"n": n, "sum": total, "starts": starts}, best


def _largest_term(size: float, smallest: float) -> float:
    """``max (d size - d^2 / 2)`` over ``d >= smallest``: at ``d = size`` when that is allowed."""
    return size * size / 2.0 if size >= smallest else smallest * size - smallest * smallest / 2.0


def _thinned(starts: list[list[float]], block: int) -> list[list[float]]:
    """Every candidate of the last ``RECENT_STARTS`` blocks; older ones only at multiples of
    a power of two that doubles as their age doubles."""
    kept = []
    for start in starts:
        at = int(start[0])
        age = block - at
        if age < RECENT_STARTS or at % (1 << (age // RECENT_STARTS).bit_length()) == 0:
            kept.append(start)
    return kept


def _log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))
