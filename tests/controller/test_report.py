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


def test_the_champion_page_charts_each_statistic_against_its_reference() -> None:
    from datetime import UTC, datetime, timedelta

    from controller.api.schemas import WatchOut, WatchPoint
    from controller.report import render_html
    from controller.stats.watch_report import WatchCheck, WatchReport

    start = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def check(name: str, expected: float, state: str) -> WatchCheck:
        return WatchCheck(
            check=name, against="reference", effect="decay" if name == "accuracy" else "drift",
            state=state, since=start, statistic=3.0, threshold=28.0, e_value=20.0,
            expected=expected, tolerance=0.02, observed=0.8, n=500, alarms=int(state == "alarm"),
        )  # fmt: skip

    report = WatchReport(
        model="fraud", version=3, status="decayed", since=start, reason="accuracy fell",
        checks=(check("accuracy", 0.95, "alarm"), check("class:1", 0.33, "ok")),
        started_at=start, baseline_until=None, bake_until=None, stale_at=None,
        on_decay="alert", block_s=1.0, false_alarms_per_week=0.01, updated_at=start,
    )  # fmt: skip
    history = [
        WatchPoint(
            block=i,
            at=start + timedelta(seconds=i),
            status="fresh",
            summary={
                "accuracy": 0.95 if i < 5 else 0.6,
                "classes": {"1": 0.33},
                "statistics": {"accuracy@reference": float(i * 3)},
            },
        )
        for i in range(10)
    ]
    page = render_html([], title="t", champion=WatchOut(report=report, history=history))
    assert "champion fraud v3" in page and "decayed" in page
    assert "accuracy: alarm" in page and "class:1: ok" in page
    assert "accuracy vs reference: detector (log e)" in page
    assert page.count("<svg") == 4  # a value chart and a detector chart per check
    empty = render_html([], champion=WatchOut(report=report, history=[]))
    assert "No judged blocks yet" in empty


def test_a_sampled_shadow_says_its_share_in_the_report_and_the_ci_summary() -> None:
    from controller.cli.summary import markdown

    history = rolled_back_after_one_look()
    sampled = history.rollout.model_copy(update={"strategy": "shadow", "mirror_percent": 25.0})
    assert "(shadow, mirroring 25%)" in render_html([RolloutHistory(sampled, history.observations)])
    assert "Strategy shadow, mirroring 25%," in markdown(sampled)
    assert "Strategy canary," in markdown(history.rollout)  # a full shadow or canary: no share


def test_an_abn_rollout_shows_every_challenger_in_the_report_and_the_ci_summary() -> None:
    from controller.api.schemas import ChallengerLook, ChallengerOut
    from controller.cli.summary import markdown

    single = rolled_back_after_one_look()
    harm = single.rollout.evidence
    assert harm is not None
    fine = evaluate(
        parse_guardrails(["error_rate"]), ArmStats(requests=5_000), ArmStats(requests=5_000), 0.05
    )
    rollout = single.rollout.model_copy(
        update={
            "state": "promoted",
            "challenger_version": 3,
            "challengers": [
                ChallengerOut(
                    arm="challenger",
                    version=2,
                    weight_bp=0,
                    status="dropped",
                    reason="error_rate: harm",
                    evidence=harm,
                ),
                ChallengerOut(
                    arm="challenger-2", version=3, weight_bp=0, status="promoted", evidence=fine
                ),
            ],
            "arms": {
                **single.rollout.arms,
                "challenger-2": ArmSummary.of(ArmStats(requests=5_000)),
            },
        }
    )
    look = single.observations[0].model_copy(
        update={
            "challengers": {
                "challenger": ChallengerLook(
                    version=2, weight_bp=0, status="dropped", requests=5_000, evidence=harm
                ),
                "challenger-2": ChallengerLook(
                    version=3, weight_bp=1000, status="active", requests=5_000, evidence=fine
                ),
            }
        }
    )
    html = render_html([RolloutHistory(rollout, [look])])
    assert "v1 → v2, v3" in html
    assert "challenger (v2): error_rate" in html and "challenger-2 (v3): error_rate" in html
    assert "<td>dropped</td>" in html and "<th>challenger-2</th>" in html
    text = markdown(rollout)
    assert "v1 → v2, v3: **promoted**" in text
    assert "| challenger | v2 | dropped | harm | error_rate: harm |" in text
    assert "| challenger-2 (v3): guardrail |" in text
