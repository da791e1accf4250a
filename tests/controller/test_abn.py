"""A/B/n decisions and pause on harm: dropping, choosing the best, the weights' cap, the
review timeout; and the family-wise split of alpha over challengers by guardrails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.abn import Contender, best, decide_arms
from controller.plans import Position, RolloutPlan
from controller.reconciler.judge import judge_all
from controller.reconciler.totals import ArmTotals
from controller.stats import Evidence, Report
from controller.stats.sufficient import ArmStats
from registry.errors import InvalidInput

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=120)
PLAN = RolloutPlan(steps=(10, 50), min_samples=100, min_step_duration_s=60)
PAUSING = RolloutPlan(
    steps=(10, 50), min_samples=100, min_step_duration_s=60, on_harm="pause",
    review_timeout_s=600,
)  # fmt: skip


def report(verdict: str, effect: float | None = 0.0, metric: str = "error_rate") -> Report:
    evidence = Evidence(
        metric=metric,
        verdict=verdict,  # type: ignore[arg-type]
        p_value=0.5,
        effect=effect,
        ci_low=None,
        ci_high=None,
        margin=0.001,
        worse="lower" if metric == "accuracy" else "higher",
        n_champion=1000,
        n_challenger=1000,
        alpha=0.01,
    )
    return Report(verdict=verdict, reason=f"{metric} {verdict}", guardrails=(evidence,))  # type: ignore[arg-type]


def contenders(*verdicts: tuple[str, float | None], in_step: int = 500) -> dict[str, Contender]:
    arms = ("challenger", "challenger-2", "challenger-3")
    return {
        arm: Contender(arm, i + 2, report(v, e), in_step)
        for i, (arm, (v, e)) in enumerate(zip(arms, verdicts, strict=False))
    }


def at(state: str, step: int = 0) -> Position:
    return Position(state, step, T0, T0, 0)  # type: ignore[arg-type]


def test_several_challengers_share_the_step_capped_so_the_champion_keeps_as_much() -> None:
    plan = RolloutPlan(steps=(1, 10, 50, 100))
    assert [plan.challenger_weight_bp(i, 1) for i in range(4)] == [100, 1000, 5000, 10000]
    assert [plan.challenger_weight_bp(i, 2) for i in range(4)] == [100, 1000, 3333, 3333]
    assert [plan.challenger_weight_bp(i, 3) for i in range(4)] == [100, 1000, 2500, 2500]
    first = decide_arms(plan, at("pending"), contenders(("continue", 0.0)), T0, 3)
    assert first.kind == "set_step" and first.weight_bp == 100
    halves = RolloutPlan(steps=(50, 100))
    opening = decide_arms(halves, at("pending"), contenders(("continue", 0.0)), T0, 2)
    assert opening.kind == "set_step" and opening.weight_bp == 3333


def test_a_harmful_challenger_is_dropped_while_the_others_go_on() -> None:
    action = decide_arms(
        PLAN, at("canary"), contenders(("continue", 0.0), ("harm", 0.2), ("continue", 0.0)), T0, 3
    )
    assert action.kind == "drop" and action.arms == ("challenger-2",)
    assert "challenger-2 (v3)" in action.reason
    # The last one in play shown harmful: nothing is left, the rollout rolls back.
    last = decide_arms(
        PLAN, at("canary"), {"challenger": contenders(("harm", 0.2))["challenger"]}, T0, 3
    )
    assert last.kind == "roll_back"


def test_one_challenger_keeps_the_plain_rules() -> None:
    harm = decide_arms(PLAN, at("canary"), contenders(("harm", 0.2)), T0, 1)
    assert harm.kind == "roll_back" and harm.reason == "error_rate harm"
    advance = decide_arms(PLAN, at("canary"), contenders(("continue", 0.0)), LATER, 1)
    assert advance.kind == "set_step" and advance.weight_bp == 5000
    few = decide_arms(PLAN, at("canary"), contenders(("continue", 0.0), in_step=99), LATER, 1)
    assert few.kind == "hold"
    promote = decide_arms(
        PLAN, at("canary", 1), contenders(("no_harm_within_margin", 0.0)), LATER, 1
    )
    assert promote.kind == "promote" and promote.arms == ("challenger",)


def test_a_step_advances_when_every_challenger_in_play_has_its_samples() -> None:
    waiting = contenders(("continue", 0.0), ("continue", 0.0))
    waiting["challenger-2"] = Contender("challenger-2", 3, report("continue"), 99)
    assert decide_arms(PLAN, at("canary"), waiting, LATER, 2).kind == "hold"
    ready = contenders(("continue", 0.0), ("continue", 0.0))
    moved = decide_arms(PLAN, at("canary"), ready, LATER, 2)
    assert moved.kind == "set_step" and moved.step_index == 1 and moved.weight_bp == 3333


def test_the_best_non_inferior_challenger_is_promoted_at_the_last_step() -> None:
    # Lower error rate is better: challenger-3 (effect -0.004) beats the others.
    all_fine = contenders(
        ("no_harm_within_margin", 0.001),
        ("no_harm_within_margin", -0.002),
        ("no_harm_within_margin", -0.004),
    )
    action = decide_arms(PLAN, at("canary", 1), all_fine, LATER, 3)
    assert action.kind == "promote" and action.arms == ("challenger-3",)
    assert "best by error_rate: challenger-3 (v4)" in action.reason
    # Not every challenger shown non-inferior yet: several challengers wait for all.
    one_open = contenders(("no_harm_within_margin", -0.004), ("continue", 0.0))
    assert decide_arms(PLAN, at("canary", 1), one_open, LATER, 2).kind == "hold"
    # For accuracy (lower is worse) the largest effect wins; no estimate ranks last.
    ranked = {
        "challenger": Contender(
            "challenger", 2, report("no_harm_within_margin", 0.01, "accuracy"), 1
        ),
        "challenger-2": Contender(
            "challenger-2", 3, report("no_harm_within_margin", 0.03, "accuracy"), 1
        ),
        "challenger-3": Contender(
            "challenger-3", 4, report("no_harm_within_margin", None, "accuracy"), 1
        ),
    }
    assert best(ranked, "accuracy").arm == "challenger-2"


def test_on_timeout_promote_picks_the_best_challenger_in_play() -> None:
    plan = RolloutPlan(steps=(10, 50), max_duration_s=60, on_timeout="promote")
    action = decide_arms(
        plan, at("canary"), contenders(("continue", 0.01), ("continue", -0.01)), LATER, 2
    )
    assert action.kind == "promote" and action.arms == ("challenger-2",)


def test_pause_on_harm_suspends_the_harmful_challenger_and_times_out_into_rollback() -> None:
    action = decide_arms(PAUSING, at("canary"), contenders(("harm", 0.2)), T0, 1)
    assert action.kind == "pause_on_harm" and action.arms == ("challenger",)
    assert action.kind.target_state == "paused_on_harm"
    # A/B/n: the harmful one is suspended, the rollout pauses with the others held.
    several = decide_arms(
        PAUSING, at("canary"), contenders(("continue", 0.0), ("harm", 0.2)), T0, 2
    )
    assert several.kind == "pause_on_harm" and several.arms == ("challenger-2",)
    # While paused: nothing moves until the review timeout, then it rolls back.
    paused = at("paused_on_harm")
    held = contenders(("no_harm_within_margin", 0.0))
    assert decide_arms(PAUSING, paused, held, T0 + timedelta(seconds=599), 1, T0).kind == "hold"
    expired = decide_arms(PAUSING, paused, {}, T0 + timedelta(seconds=600), 1, T0)
    assert expired.kind == "roll_back" and "no review within 600s" in expired.reason
    # Another challenger shown harmful during the pause is suspended too.
    more = decide_arms(PAUSING, paused, contenders(("harm", 0.3)), T0, 2, T0)
    assert more.kind == "pause_on_harm"


def test_plans_check_the_new_fields() -> None:
    for bad in [
        dict(on_harm="shrug"),
        dict(review_timeout_s=0),
        dict(primary_metric="accuracy", guardrails=("error_rate",)),
    ]:
        with pytest.raises(InvalidInput):
            RolloutPlan(**bad)  # type: ignore[arg-type]
    assert RolloutPlan(guardrails=("latency", "error_rate")).primary() == "latency"
    assert RolloutPlan.from_json(RolloutPlan(on_harm="pause").to_json()).on_harm == "pause"


def test_each_challenger_is_judged_at_its_share_of_alpha() -> None:
    """Bonferroni over k challengers and g guardrails: each comparison at alpha / (k g)."""
    plan = RolloutPlan(alpha=0.06, guardrails=("error_rate", "latency"))
    totals = ArmTotals()
    for arm in ("champion", "challenger", "challenger-2", "challenger-3"):
        stats = ArmStats()
        for _ in range(50):
            stats.record_response("2xx", 0.01)
        totals.add((0, 0), arm, stats)
    reports = judge_all(plan, totals, ["challenger", "challenger-2", "challenger-3"])
    assert set(reports) == {"challenger", "challenger-2", "challenger-3"}
    for one in reports.values():
        # Each guardrail's share, itself split again inside a guardrail's own tests.
        assert all(e.alpha == pytest.approx(0.06 / 3 / 2) for e in one.guardrails)
        assert all(e.n_challenger == 50 for e in one.guardrails)
