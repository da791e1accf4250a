"""Pure statistics for rollout decisions: no I/O, no clocks.

The boundary: sufficient statistics (:class:`ArmStats`) in, :class:`Report` of
:class:`Evidence` out. Nothing here knows about rollouts, databases or HTTP.

Names load on first use (PEP 562), so the client library and the CLI, which only read
evidence, do not pay for numpy and scipy."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.stats.evaluation import evaluate, evaluate_strata
    from controller.stats.evidence import (
        CONTINUE,
        HARM,
        NO_HARM,
        Evidence,
        Report,
        Verdict,
        Worse,
    )
    from controller.stats.guardrails import (
        DEFAULT_GUARDRAILS,
        GUARDRAIL_METRICS,
        Guardrail,
        parse_guardrails,
    )
    from controller.stats.sufficient import ArmStats

_HOMES = {
    "evaluate": "evaluation",
    "evaluate_strata": "evaluation",
    **dict.fromkeys(
        ("CONTINUE", "HARM", "NO_HARM", "Evidence", "Report", "Verdict", "Worse"), "evidence"
    ),
    **dict.fromkeys(
        ("DEFAULT_GUARDRAILS", "GUARDRAIL_METRICS", "Guardrail", "parse_guardrails"),
        "guardrails",
    ),
    "ArmStats": "sufficient",
}

__all__ = [
    "CONTINUE",
    "DEFAULT_GUARDRAILS",
    "GUARDRAIL_METRICS",
    "HARM",
    "NO_HARM",
    "ArmStats",
    "Evidence",
    "Guardrail",
    "Report",
    "Verdict",
    "Worse",
    "evaluate",
    "evaluate_strata",
    "parse_guardrails",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
