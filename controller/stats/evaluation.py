"""The verdict over all guardrails of a rollout.

Each guardrail runs an anytime-valid sequential test (:mod:`controller.stats.comparisons`) at
its Bonferroni share ``alpha / len(guardrails)`` of the family-wise error rate, so the chance
that *any* guardrail ever raises a false harm alarm, however often the reconciler looks, is at
most ``alpha`` (and likewise for a false non-inferiority claim). Within a guardrail the share is
split again between the cumulative test and the change detector
(:class:`~controller.stats.comparisons.Judging`).
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.stats.comparisons import COMPARISONS, Judging, Stratum
from controller.stats.evidence import CONTINUE, HARM, NO_HARM, Evidence, Report, Verdict
from controller.stats.guardrails import Guardrail, parse_guardrails
from controller.stats.sufficient import ArmStats


def evaluate(
    guardrails: Sequence[Guardrail], champion: ArmStats, challenger: ArmStats, alpha: float
) -> Report:
    """:func:`evaluate_strata` on one stratum (no change detector)."""
    return evaluate_strata(guardrails, [(champion, challenger)], alpha)


def evaluate_strata(
    guardrails: Sequence[Guardrail],
    strata: Sequence[Stratum],
    alpha: float,
    max_strata: int = 1,
    labels: Sequence[str] = (),
) -> Report:
    """Every guardrail's evidence at its share ``alpha / len(guardrails)``, and the overall
    verdict: ``harm`` if any guardrail shows harm, ``no_harm_within_margin`` if all do, else
    ``continue``. No guardrails means ``DEFAULT_GUARDRAILS``.

    ``strata`` are (champion, challenger) statistics per stratum in time order; ``max_strata``
    is the most strata the plan can produce (fixed in advance): the change detector may start a
    window at each of the first ``max_strata`` strata after the first."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    chosen = tuple(guardrails) or parse_guardrails(())
    judging = Judging(alpha / len(chosen), max(max_strata - 1, 0), tuple(labels))
    strata = list(strata) or [(ArmStats(), ArmStats())]
    evidence = tuple(COMPARISONS[g.metric](g, strata, judging) for g in chosen)
    harmful = [e for e in evidence if e.verdict == HARM]
    verdict: Verdict
    if harmful:
        verdict, reason = HARM, "; ".join(_harm_reason(e) for e in harmful)
    elif all(e.verdict == NO_HARM for e in evidence):
        verdict = NO_HARM
        reason = "all guardrails within margin: " + "; ".join(_bound(e) for e in evidence)
    else:
        verdict = CONTINUE
        reason = "waiting on " + "; ".join(
            f"{e.metric} ({_bound(e, named=False) if e.p_value is not None else e.detail})"
            for e in evidence
            if e.verdict == CONTINUE
        )
    return Report(verdict=verdict, guardrails=evidence, reason=reason)


def _harm_reason(e: Evidence) -> str:
    what = "distribution changed" if e.worse == "shift" else "challenger worse"
    return (
        f"{e.metric}: {what} beyond tolerance {e.shown(e.tolerance, signed=False)}, "
        f"p={e.p_value:.3g}, effect {e.summary()} ({e.detail})"
    )


def _bound(e: Evidence, named: bool = True) -> str:
    name = f"{e.metric} " if named else ""
    if e.worse == "lower":
        return f"{name}lower bound {e.shown(e.ci_low)} vs margin -{e.shown(e.margin, False)}"
    return f"{name}upper bound {e.shown(e.ci_high)} vs margin {e.shown(e.margin, False)}"
