"""Pure statistics for rollout decisions: no I/O, no clocks."""

from controller.stats.evidence import Evidence, Report, Verdict
from controller.stats.guardrails import (
    DEFAULT_GUARDRAILS,
    GUARDRAIL_METRICS,
    Guardrail,
    evaluate,
    parse_guardrails,
)
from controller.stats.sufficient import ArmStats

__all__ = [
    "DEFAULT_GUARDRAILS",
    "GUARDRAIL_METRICS",
    "ArmStats",
    "Evidence",
    "Guardrail",
    "Report",
    "Verdict",
    "evaluate",
    "parse_guardrails",
]
