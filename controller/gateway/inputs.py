"""Numeric input summaries of an Open Inference Protocol v2 request, for the champion watch.

Only a bounded sample of requests is read (one in ``gateway_input_sample_every``), and of each
input at most ``MAX_VALUES`` values, so the request path stays cheap. Per input name the result
is ``(n, sum, sum of squares)`` of its numeric values, mergeable into
:attr:`ArmStats.inputs`. Anything that is not an OIP v2 request with numeric inputs yields
nothing, never an error: measurement must not break serving."""

from __future__ import annotations

import math
from typing import Any

import orjson

MAX_INPUTS = 64
MAX_VALUES = 256
MAX_NAME = 64
Summary = tuple[float, float, float]


def _flatten(data: Any, out: list[float]) -> None:
    for item in data:
        if len(out) >= MAX_VALUES:
            return
        if isinstance(item, list):
            _flatten(item, out)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            value = float(item)
            if math.isfinite(value):
                out.append(value)


def input_summaries(body: bytes) -> dict[str, Summary]:
    """Per numeric input of an OIP v2 request body: (n, sum, sum of squares)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list):
        return {}
    summaries: dict[str, Summary] = {}
    for tensor in inputs[:MAX_INPUTS]:
        if not isinstance(tensor, dict):
            continue
        name, data = tensor.get("name"), tensor.get("data")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            continue
        if not isinstance(data, list):
            continue
        values: list[float] = []
        _flatten(data, values)
        if values:
            summaries[name] = (float(len(values)), sum(values), sum(v * v for v in values))
    return summaries
