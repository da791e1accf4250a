"""A rollout's outcome as Markdown for a CI job's summary page (``$GITHUB_STEP_SUMMARY`` on
GitHub Actions, or any file a CI system shows): what ran, how it ended, and each guardrail's
evidence, from the same typed evidence the API serves."""

from __future__ import annotations

from pathlib import Path

from controller.api.schemas import RolloutOut
from controller.stats import Evidence, Report

_ARM_ROWS = ("requests", "error_rate", "latency_p50_ms", "latency_p99_ms", "accuracy")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _evidence_row(e: Evidence) -> str:
    interval = f"[{_number(e.ci_low)}, {_number(e.ci_high)}]"
    cells = (e.metric, e.verdict, _number(e.p_value), _number(e.effect), interval, e.margin)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def markdown(rollout: RolloutOut, timed_out: bool = False) -> str:
    """The summary of one rollout; ``timed_out`` when the CI job stopped waiting first."""
    outcome = f"still {rollout.state} (the job stopped waiting)" if timed_out else rollout.state
    several = len(rollout.challengers) > 1
    versus = (
        ", ".join(f"v{c.version}" for c in rollout.challengers)
        if several
        else f"v{rollout.challenger_version}"
    )
    lines = [
        f"### Shelf rollout {rollout.id}: {rollout.model} "
        f"v{rollout.champion_version} → {versus}: **{outcome}**",
        "",
        f"{_cell(rollout.reason)}",
        "",
        f"Strategy {rollout.strategy_label}, "
        f"steps {', '.join(f'{s:g}%' for s in rollout.steps) or '-'}"
        f", started {rollout.created_at:%Y-%m-%d %H:%M:%S} UTC by {_cell(rollout.created_by)}"
        + (f", ended {rollout.ended_at:%Y-%m-%d %H:%M:%S} UTC." if rollout.ended_at else "."),
        "",
    ]
    if several:
        lines += [
            "| challenger | version | status | verdict | reason |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {c.arm} | v{c.version} | {c.status} | "
                f"{c.evidence.verdict if c.evidence else '-'} | {_cell(c.reason)} |"
                for c in rollout.challengers
            ),
            "",
        ]
    judged: list[tuple[str, Report | None]] = [
        (f"{c.arm} (v{c.version}): " if several else "", c.evidence)
        for c in rollout.challengers
        if c.evidence is not None
    ] or [("", rollout.evidence)]
    for prefix, evidence in judged:
        if evidence is None or not evidence.guardrails:
            continue
        lines += [
            f"| {prefix}guardrail | verdict | p-value | effect | confidence sequence | margin |",
            "| --- | --- | --- | --- | --- | --- |",
            *(_evidence_row(e) for e in evidence.guardrails),
            "",
        ]
    arms = {arm: summary.model_dump() for arm, summary in rollout.arms.items()}
    lines += [
        "| | " + " | ".join(arms) + " |",
        "| --- |" + " --- |" * len(arms),
        *(
            f"| {key} | " + " | ".join(_cell(_shown(arms[arm][key])) for arm in arms) + " |"
            for key in _ARM_ROWS
        ),
        "",
    ]
    return "\n".join(lines) + "\n"


def _shown(value: object) -> str:
    return _number(value) if isinstance(value, float) else "-" if value is None else str(value)


def append(path: Path, rollout: RolloutOut, timed_out: bool = False) -> None:
    """Appends, as CI summary files expect (several steps may write to the same file)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown(rollout, timed_out))
