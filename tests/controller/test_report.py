"""The HTML report shows every rollout's data, in the units people read, even after one look."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from controller.api.schemas import ArmSummary, ObservationOut, RolloutOut
from controller.report import RolloutHistory, render_html
from controller.stats import ArmStats, evaluate, parse_guardrails

START = datetime(2026, 1, 1, tzinfo=UTC)


def rolled_back_after_one_look() -> RolloutHistory:
    champion = ArmStats(requests=5_000, errors=50, status_classes={"2xx": 4_950})
    challenger = ArmStats(requests=5_000, errors=400, status_classes={"2xx": 4_600})
    report = evaluate(parse_guardrails(["error_rate"]), champion, challenger, 0.05)
    assert report.verdict == "harm"
    rollout = RolloutOut(
        id=1,
        model="fraud",
        champion_version=1,
        challenger_version=2,
        strategy="canary",
        state="rolled_back",
        resume_state=None,
        step_index=0,
        steps=[10.0, 100.0],
        challenger_weight_bp=0,
        mirror=False,
        plan={},
        reason=report.reason,
        created_at=START,
        created_by="test",
        updated_at=START,
        ended_at=START,
        observed_at=START,
        evidence=report,
        arms={"champion": ArmSummary.of(champion), "challenger": ArmSummary.of(challenger)},
    )
    look = ObservationOut(
        at=START + timedelta(milliseconds=300),
        state="rolled_back",
        step_index=0,
        challenger_weight_bp=1000,
        champion_requests=5_000,
        challenger_requests=5_000,
        evidence=report,
    )
    return RolloutHistory(rollout, [look])


def test_a_rollout_decided_at_its_first_look_still_shows_its_points() -> None:
    html = render_html([rolled_back_after_one_look()])
    assert html.count("<circle") >= 3  # weight, effect and p-value: one point each
    assert "percentage" not in html and "(pp)" in html  # rates in percentage points
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.-]+)"', html)]
    assert all(0 <= y <= 180 for y in ys)  # every point lies inside its panel
    # The effect (+7 pp) is on the chart, not clipped to a few margins: the axis covers it.
    labels = [float(v) for v in re.findall(r'font-size="10">([\d.e+-]+)</text>', html)]
    assert max(labels) >= 7.0
