"""observations keep their evidence in the one Report schema

Each reconciler look used to store a per-metric summary (``{metric: {verdict, p_value, ci_low,
ci_high, effect, margin}}``); it now stores the statistics engine's Report (``{verdict,
reason, guardrails: [Evidence, ...]}``), the shape the API, CLI and report read everywhere.
Rows written before are converted; the fields a summary lacked are filled in from the row
(sample sizes) and the rollout (alpha split across its guardrails).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BATCH = 1000
_WORSE = {
    "accuracy": "lower",
    "reward": "lower",
    "class_shift": "shift",
    "confidence_shift": "shift",
}
_SUMMARY_KEYS = ("verdict", "p_value", "ci_low", "ci_high", "effect", "margin")

observations = sa.table(
    "rollout_observations",
    sa.column("id", sa.Integer),
    sa.column("rollout_id", sa.Integer),
    sa.column("champion_requests", sa.BigInteger),
    sa.column("challenger_requests", sa.BigInteger),
    sa.column("evidence", sa.JSON),
)
rollouts = sa.table("rollouts", sa.column("id", sa.Integer), sa.column("alpha", sa.Float))


def _overall(verdicts: list[str]) -> str:
    if "harm" in verdicts:
        return "harm"
    if verdicts and all(v == "no_harm_within_margin" for v in verdicts):
        return "no_harm_within_margin"
    return "continue"


def _as_report(summary: dict[str, Any], n_a: int, n_b: int, alpha: float) -> dict[str, Any]:
    share = alpha / max(len(summary), 1)
    guardrails = [
        {
            "metric": metric,
            "verdict": item.get("verdict") or "continue",
            "p_value": item.get("p_value"),
            "effect": item.get("effect"),
            "ci_low": item.get("ci_low"),
            "ci_high": item.get("ci_high"),
            "margin": item.get("margin") or 0.0,
            "worse": _WORSE.get(metric, "higher"),
            "n_champion": n_a,
            "n_challenger": n_b,
            "alpha": share,
            "detail": "",
        }
        for metric, item in summary.items()
    ]
    return {
        "verdict": _overall([g["verdict"] for g in guardrails]),
        "reason": "",
        "guardrails": guardrails,
    }


def _as_summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        item["metric"]: {key: item.get(key) for key in _SUMMARY_KEYS}
        for item in report.get("guardrails", [])
    }


def _rewrite(convert: Any, needs: Any) -> None:
    connection = op.get_bind()
    alphas = dict(connection.execute(sa.select(rollouts.c.id, rollouts.c.alpha)).all())
    last = 0
    while True:
        rows = connection.execute(
            sa.select(observations)
            .where(observations.c.id > last)
            .order_by(observations.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            if needs(row.evidence or {}):
                connection.execute(
                    observations.update()
                    .where(observations.c.id == row.id)
                    .values(evidence=convert(row, alphas.get(row.rollout_id, 0.05)))
                )
        last = rows[-1].id


def upgrade() -> None:
    _rewrite(
        lambda row, alpha: _as_report(
            row.evidence or {}, row.champion_requests, row.challenger_requests, alpha
        ),
        lambda evidence: "guardrails" not in evidence,
    )


def downgrade() -> None:
    _rewrite(
        lambda row, _alpha: _as_summary(row.evidence),
        lambda evidence: "guardrails" in evidence,
    )
