import math
from datetime import UTC, datetime, timedelta

import pytest

from controller.plans import Position, RolloutPlan, decide, first_action
from registry.errors import InvalidInput

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(
    state: str,
    step: int = 0,
    step_start: int = 0,
    started: datetime = T0,
    step_started: datetime = T0,
) -> Position:
    return Position(state, step, started, step_started, step_start)


PLAN = RolloutPlan(steps=(5, 50, 100), min_samples=100, min_step_duration_s=60)


def test_plans_validate_their_fields() -> None:
    for bad in [
        dict(strategy="yolo"),
        dict(steps=(50, 5)),
        dict(steps=(0, 10)),
        dict(steps=(120,)),
        dict(alpha=0.7),
        dict(on_timeout="pray"),
        dict(min_samples=0),
        dict(steps=()),
        dict(time_block_s=0.5),
        dict(warmup_s=-1),
        dict(guardrails=("latency",), guardrail_options={"latency": {"tolerance": "fast"}}),
    ]:
        with pytest.raises(InvalidInput):
            RolloutPlan(**bad)  # type: ignore[arg-type]
    assert RolloutPlan(strategy="blue-green").steps == (100.0,)
    assert RolloutPlan(strategy="shadow", steps=()).steps == ()


def test_a_shadow_mirrors_a_share_in_basis_points_and_only_a_shadow_does() -> None:
    assert RolloutPlan(strategy="shadow", mirror_percent=12.5).mirror_bp == 1250
    assert RolloutPlan(strategy="shadow").mirror_bp == 10_000
    for bad in (0, -5, 100.5, 0.001):
        with pytest.raises(InvalidInput, match="mirror_percent must be"):
            RolloutPlan(strategy="shadow", mirror_percent=bad)
    with pytest.raises(InvalidInput, match="shadow strategy only"):
        RolloutPlan(strategy="canary", mirror_percent=25)
    plan = RolloutPlan(strategy="shadow", mirror_percent=25)
    assert RolloutPlan.from_json(plan.to_json()) == plan


def test_max_strata_is_fixed_by_the_plan() -> None:
    # 6 h of 10-minute blocks, one partial block per step and one for the shadow phase.
    assert RolloutPlan().max_strata() == 36 + 5 + 1
    assert RolloutPlan(time_block_s=60, max_duration_s=600, steps=(50,)).max_strata() == 12


def test_cli_thresholds_are_absolute_or_relative() -> None:
    from controller.cli.rollout_commands import parse_margins, parse_thresholds

    options = parse_thresholds(
        ("error_rate=+20%", "latency=10%"), "tolerance", parse_margins(("error_rate=0.002",))
    )
    assert options == {
        "error_rate": {"margin": 0.002, "tolerance": "+20%"},
        "latency": {"tolerance": "10%"},
    }
    plan = RolloutPlan(guardrails=("error_rate", "latency"), guardrail_options=options)
    errors, latency = plan.judged_by()
    assert errors.tolerance_relative and errors.tolerance == pytest.approx(0.2)
    assert latency.thresholds(0.05) == pytest.approx((math.log(1.05), math.log(1.1)))
    for bad in ("error_rate", "error_rate=", "error_rate=fast", "=0.1", "latency=-5%"):
        with pytest.raises(InvalidInput, match="METRIC=VALUE"):
            parse_thresholds((bad,), "tolerance")


def test_plan_json_round_trip() -> None:
    plan = RolloutPlan(
        strategy="shadow",
        steps=(10, 100),
        guardrails=("error_rate",),
        guardrail_options={"error_rate": {"tolerance": "+20%"}},
        time_block_s=300,
        warmup_s=60,
    )
    assert RolloutPlan.from_json(plan.to_json()) == plan


def test_pending_starts_at_the_first_step_or_shadow() -> None:
    start = decide(PLAN, at("pending"), "continue", "", 0, T0)
    assert (start.kind, start.weight_bp) == ("set_step", 500)
    shadow = first_action(RolloutPlan(strategy="shadow"))
    assert shadow.kind == "start_shadow" and shadow.kind.target_state == "shadowing"
    assert first_action(RolloutPlan(strategy="blue-green")).weight_bp == 10_000


def test_harm_rolls_back_at_once_even_when_paused() -> None:
    for state in ("canary", "shadowing", "paused"):
        action = decide(PLAN, at(state), "harm", "error_rate: harm", 1, T0)
        assert action.kind == "roll_back" and "error_rate" in action.reason


def test_a_step_advances_only_with_enough_samples_and_time() -> None:
    later = T0 + timedelta(seconds=61)
    assert decide(PLAN, at("canary"), "continue", "", 99, later).kind == "hold"
    assert (
        decide(PLAN, at("canary"), "continue", "", 500, T0 + timedelta(seconds=59)).kind == "hold"
    )
    advance = decide(PLAN, at("canary"), "continue", "", 100, later)
    assert (advance.kind, advance.step_index, advance.weight_bp) == ("set_step", 1, 5000)
    # samples count from the start of the step
    assert decide(PLAN, at("canary", 1, step_start=100), "continue", "", 150, later).kind == "hold"


def test_last_partial_step_promotes_only_on_non_inferiority() -> None:
    later = T0 + timedelta(seconds=61)
    plan = RolloutPlan(steps=(5, 50), min_samples=100, min_step_duration_s=60)
    last = at("canary", 1)
    assert decide(plan, last, "continue", "", 1000, later).kind == "hold"
    assert decide(plan, last, "no_harm_within_margin", "", 1000, later).kind == "promote"


def test_full_switch_needs_non_inferiority_then_bakes_without_harm() -> None:
    later = T0 + timedelta(seconds=61)
    before_full = at("canary", 1)
    assert decide(PLAN, before_full, "continue", "", 1000, later).kind == "hold"
    moved = decide(PLAN, before_full, "no_harm_within_margin", "", 1000, later)
    assert (moved.kind, moved.weight_bp) == ("set_step", 10_000)
    full = at("canary", 2, step_start=1000)
    assert decide(PLAN, full, "continue", "", 1050, later).kind == "hold"
    assert decide(PLAN, full, "continue", "", 1100, later).kind == "promote"
    assert decide(PLAN, full, "harm", "worse", 1100, later).kind == "roll_back"
    shadow_then_switch = RolloutPlan(
        strategy="shadow", steps=(100,), shadow_min_samples=50, shadow_duration_s=0
    )
    assert decide(shadow_then_switch, at("shadowing"), "continue", "", 50, later).kind == "hold"
    switched = decide(shadow_then_switch, at("shadowing"), "no_harm_within_margin", "", 50, later)
    assert switched.kind == "set_step"


def test_timeout_follows_the_explicit_policy() -> None:
    expired = T0 + timedelta(seconds=PLAN.max_duration_s + 1)
    assert decide(PLAN, at("canary"), "continue", "", 0, expired).kind == "roll_back"
    eager = RolloutPlan(steps=(5,), on_timeout="promote")
    assert decide(eager, at("canary"), "continue", "", 0, expired).kind == "promote"


def test_shadow_then_canary_or_promote() -> None:
    later = T0 + timedelta(seconds=400)
    with_steps = RolloutPlan(
        strategy="shadow", steps=(10, 100), shadow_min_samples=50, shadow_duration_s=300
    )
    assert decide(with_steps, at("shadowing"), "continue", "", 49, later).kind == "hold"
    assert decide(with_steps, at("shadowing"), "continue", "", 50, later).kind == "set_step"
    only = RolloutPlan(strategy="shadow", steps=(), shadow_min_samples=50, shadow_duration_s=300)
    assert decide(only, at("shadowing"), "continue", "", 50, later).kind == "hold"
    assert decide(only, at("shadowing"), "no_harm_within_margin", "", 50, later).kind == "promote"


def test_final_states_never_act() -> None:
    for state in ("promoted", "rolled_back", "aborted"):
        assert decide(PLAN, at(state), "harm", "", 10**6, T0 + timedelta(days=9)).kind == "hold"
