"""Numeric input summaries of an Open Inference Protocol v2 request, for the champion watch.

Only a bounded sample of requests is read (:class:`InputSampler`: at most
``gateway_input_samples_per_s`` a second per champion, a big body counting as several), and of
each input at most ``MAX_VALUES`` values, so the request path stays cheap. A budget per second
rather than a fixed fraction keeps every request of a quiet model (whose watch needs all the
data it can get) and bounds the cost at any rate. Per input name the result is ``(n, sum, sum
of squares)`` of its numeric values, mergeable into :attr:`ArmStats.inputs`. Anything that is
not an OIP v2 request with numeric inputs yields nothing, never an error: measurement must not
break serving."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from time import monotonic
from typing import Any

import orjson

MAX_INPUTS = 64
MAX_VALUES = 256
MAX_NAME = 64
BODY_BYTES_PER_SAMPLE = 16 * 1024  # a body this big costs one sample of the budget, or more
Summary = tuple[float, float, float]


class InputSampler:
    """A token bucket per champion: up to ``per_s`` bodies a second, bursts of one second.
    Which requests are read depends only on their arrival times, never on their content, so
    the sample is unbiased; under the budget every request is read."""

    def __init__(self, per_s: float, clock: Callable[[], float] = monotonic) -> None:
        self._per_s = per_s
        self._clock = clock
        self._buckets: dict[Hashable, list[float]] = {}  # key -> [tokens, at]

    def take(self, key: Hashable, body_bytes: int) -> bool:
        """Whether to read this body (and spend its cost from ``key``'s bucket)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self._per_s, now]
        tokens = min(self._per_s, bucket[0] + (now - bucket[1]) * self._per_s)
        bucket[1] = now
        cost = max(1.0, body_bytes / BODY_BYTES_PER_SAMPLE)
        if tokens < min(cost, self._per_s):
            bucket[0] = tokens
            return False
        bucket[0] = tokens - cost  # a body above the whole budget leaves the bucket in debt
        return True


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
