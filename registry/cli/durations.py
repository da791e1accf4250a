"""Durations as people type them on the command line: ``90`` (seconds), ``250ms``, ``30s``,
``5m``, ``1.5h``, ``7d``."""

from __future__ import annotations

import re

from registry.errors import InvalidInput

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """Seconds; InvalidInput for anything else (a negative number never matches)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30s, 5m, 12h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]
