"""Mergeable sufficient statistics for one arm of a rollout.

Gateway replicas accumulate these in memory, flush deltas, and the reconciler merges every
delta into cumulative statistics. Everything here is a sum, so ``merge`` is associative and
commutative, and merging deltas gives exactly what one replica seeing all traffic would have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Latency buckets grow by GAMMA from LATENCY_MIN_S: a value reported as its bucket's geometric
# midpoint is off by at most sqrt(GAMMA) - 1 = 1.98 % (the DDSketch idea, Masson et al. 2019).
GAMMA = 1.04
LATENCY_MIN_S = 1e-5
LATENCY_MAX_S = 60.0
_LOG_GAMMA = math.log(GAMMA)
_INV_LOG_GAMMA = 1.0 / _LOG_GAMMA
_LOG_MIN = math.log(LATENCY_MIN_S)
# Bucket 0 holds everything below LATENCY_MIN_S and the last bucket everything from LATENCY_MAX_S.
LATENCY_BUCKETS = math.ceil((math.log(LATENCY_MAX_S) - _LOG_MIN) * _INV_LOG_GAMMA) + 2
CONFIDENCE_BUCKETS = 20
# Randomisation units: a routing key is hashed into one of UNIT_BUCKETS buckets, and each bucket
# keeps these sums (``ArmStats.units``), so the variance can follow the unit that was
# randomised (the key) with bounded memory and no per-user state.
UNIT_BUCKETS = 128
UNIT_FIELDS = ("requests", "errors", "latency_n", "log_latency_sum", "log_latency_sumsq")
_U_REQ, _U_ERR, _U_LAT_N, _U_LAT_SUM, _U_LAT_SQ = range(len(UNIT_FIELDS))


def latency_bucket(seconds: float) -> int:
    if seconds < LATENCY_MIN_S:
        return 0
    index = int((math.log(seconds) - _LOG_MIN) * _INV_LOG_GAMMA) + 1
    return index if index < LATENCY_BUCKETS else LATENCY_BUCKETS - 1


def latency_bucket_value(index: int) -> float:
    """Representative latency (seconds) of a bucket: its geometric midpoint."""
    if index <= 0:
        return LATENCY_MIN_S / math.sqrt(GAMMA)
    return math.exp(_LOG_MIN + (index - 0.5) * _LOG_GAMMA)


def latency_bucket_upper(index: int) -> float:
    """Upper edge (seconds) of a bucket; the overflow bucket reports infinity."""
    if index >= LATENCY_BUCKETS - 1:
        return math.inf
    return math.exp(_LOG_MIN + index * _LOG_GAMMA)


def _add_lists(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def _add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = merged.get(key, 0) + value
    return merged


def _add_units(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    if a is None:
        return None if b is None else list(b)
    if b is None:
        return list(a)
    return [x + y for x, y in zip(a, b, strict=True)]


InputSums = dict[str, list[float]]


def _add_inputs(a: Mapping[str, list[float]], b: Mapping[str, list[float]]) -> InputSums:
    merged = {name: list(sums) for name, sums in a.items()}
    for name, sums in b.items():
        have = merged.get(name)
        pairs = zip(have or [0.0] * len(sums), sums, strict=True)
        merged[name] = [x + y for x, y in pairs]
    return merged


def _add_pairs(a: Mapping[str, list[int]], b: Mapping[str, list[int]]) -> dict[str, list[int]]:
    out = {k: list(v) for k, v in a.items()}
    for k, v in b.items():
        mine = out.get(k)
        out[k] = list(v) if mine is None else [mine[0] + v[0], mine[1] + v[1]]
    return out


def _units_json(units: list[float] | None) -> dict[str, list[float]]:
    if units is None:
        return {}
    width = len(UNIT_FIELDS)
    return {
        str(i): units[i * width : (i + 1) * width]
        for i in range(UNIT_BUCKETS)
        if units[i * width + _U_REQ] or units[i * width + _U_LAT_N]
    }


def _units(data: Mapping[str, Any]) -> list[float] | None:
    if not data:
        return None
    width = len(UNIT_FIELDS)
    units = [0.0] * (UNIT_BUCKETS * width)
    for key, sums in data.items():
        index = int(key)
        if not 0 <= index < UNIT_BUCKETS or len(sums) != width:
            raise ValueError(f"unit bucket {key!r} malformed")
        units[index * width : (index + 1) * width] = [float(x) for x in sums]
    return units


def _sparse(counts: list[int]) -> dict[str, int]:
    return {str(i): c for i, c in enumerate(counts) if c}


def _dense(sparse: Mapping[str, int], size: int) -> list[int]:
    counts = [0] * size
    for key, value in sparse.items():
        index = int(key)
        if not 0 <= index < size:
            raise ValueError(f"bucket index {index} outside 0..{size - 1}")
        counts[index] = int(value)
    return counts


@dataclass(slots=True)
class ArmStats:
    """Sufficient statistics of one arm.

    - ``requests`` counts every request; ``errors`` those that failed on the server side
      (5xx, upstream timeout, connection error), with ``timeouts`` and ``connection_errors``
      broken out, and ``status_classes`` ({"2xx": n, "4xx": n, "5xx": n, "timeout": n, ...}).
    - Latency of successful responses: a log-bucket histogram plus the count, sum and sum of
      squares of log-seconds, so a test on log latency is exact and a quantile test can use the
      histogram.
    - ``predicted``: predicted-class counts; ``confidence``: histogram of top-class confidence
      over [0, 1] in CONFIDENCE_BUCKETS equal bins.
    - Delayed ground truth: ``labels``/``correct`` for a binary correctness label,
      ``rewards``/``reward_sum``/``reward_sumsq`` for a numeric outcome. For the champion
      outside rollouts ``label_blocks`` also counts them by the time block their request was
      *served* in (``{block: [labels, correct]}``; a subset of ``labels``/``correct``), so the
      watch can judge a late label with the traffic it belongs to.
    - Shadow mode: ``compared``/``agreed`` between this arm's prediction and the champion's.
    - ``inputs``: per numeric input name, ``[n, sum, sum of squares]`` of its values on a
      bounded sample of requests (the champion watch's input drift checks).
    - ``units``: for requests routed by key, per key bucket (0..UNIT_BUCKETS-1) the sums named
      in ``UNIT_FIELDS``, flat (bucket-major; ``None`` until a keyed request arrives);
      requests without a key are in the totals only, each its own unit.
    """

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    status_classes: dict[str, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)
    latency_n: int = 0
    log_latency_sum: float = 0.0
    log_latency_sumsq: float = 0.0
    predicted: dict[str, int] = field(default_factory=dict)
    confidence_counts: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BUCKETS)
    labels: int = 0
    correct: int = 0
    rewards: int = 0
    reward_sum: float = 0.0
    reward_sumsq: float = 0.0
    compared: int = 0
    agreed: int = 0
    units: list[float] | None = None
    inputs: dict[str, list[float]] = field(default_factory=dict)
    label_blocks: dict[str, list[int]] = field(default_factory=dict)

    # -- recording (the gateway's hot path: no allocation beyond dict growth) -------------

    def record_response(
        self,
        status_class: str,
        latency_s: float | None,
        predicted_class: str | None = None,
        confidence: float | None = None,
        unit: int | None = None,
    ) -> None:
        """Record one finished request. ``status_class`` is "2xx", "4xx", "5xx", "timeout" or
        "connection_error"; latency is recorded for non-error outcomes only. ``unit`` is the
        routing key's bucket, when the request was routed by key."""
        self.requests += 1
        self.status_classes[status_class] = self.status_classes.get(status_class, 0) + 1
        failed = True
        if status_class == "5xx":
            self.errors += 1
        elif status_class == "timeout":
            self.errors += 1
            self.timeouts += 1
        elif status_class == "connection_error":
            self.errors += 1
            self.connection_errors += 1
        else:
            failed = False
            if latency_s is not None:
                self.record_latency(latency_s)
        if unit is not None:
            sums = self.units
            if sums is None:
                sums = self.units = [0.0] * (UNIT_BUCKETS * len(UNIT_FIELDS))
            base = unit * len(UNIT_FIELDS)
            sums[base + _U_REQ] += 1.0
            if failed:
                sums[base + _U_ERR] += 1.0
            elif latency_s is not None:
                log_s = math.log(max(latency_s, 1e-9))
                sums[base + _U_LAT_N] += 1.0
                sums[base + _U_LAT_SUM] += log_s
                sums[base + _U_LAT_SQ] += log_s * log_s
        if predicted_class is not None:
            self.predicted[predicted_class] = self.predicted.get(predicted_class, 0) + 1
        if confidence is not None:
            self.record_confidence(confidence)

    def record_latency(self, seconds: float) -> None:
        self.latency_counts[latency_bucket(seconds)] += 1
        self.latency_n += 1
        log_s = math.log(max(seconds, 1e-9))
        self.log_latency_sum += log_s
        self.log_latency_sumsq += log_s * log_s

    def record_confidence(self, confidence: float) -> None:
        if confidence != confidence:  # NaN carries no information
            return
        index = int(min(max(confidence, 0.0), 1.0) * CONFIDENCE_BUCKETS)
        self.confidence_counts[min(index, CONFIDENCE_BUCKETS - 1)] += 1

    def record_label(self, correct: bool, served_block: int | None = None) -> None:
        self.labels += 1
        self.correct += int(correct)
        if served_block is not None:
            counts = self.label_blocks.get(str(served_block))
            if counts is None:
                counts = self.label_blocks[str(served_block)] = [0, 0]
            counts[0] += 1
            counts[1] += int(correct)

    def record_reward(self, value: float) -> None:
        self.rewards += 1
        self.reward_sum += value
        self.reward_sumsq += value * value

    def record_inputs(self, summaries: Mapping[str, tuple[float, float, float]]) -> None:
        """Add one request's input summaries (name -> (n, sum, sum of squares))."""
        for name, (n, total, sumsq) in summaries.items():
            sums = self.inputs.get(name)
            if sums is None:
                sums = self.inputs[name] = [0.0, 0.0, 0.0]
            sums[0] += n
            sums[1] += total
            sums[2] += sumsq

    def record_agreement(self, agreed: bool) -> None:
        self.compared += 1
        self.agreed += int(agreed)

    # -- algebra ---------------------------------------------------------------------------

    def merge(self, other: ArmStats) -> ArmStats:
        """The statistics of both sets of observations together (a new object)."""
        return ArmStats(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            timeouts=self.timeouts + other.timeouts,
            connection_errors=self.connection_errors + other.connection_errors,
            status_classes=_add_counts(self.status_classes, other.status_classes),
            latency_counts=_add_lists(self.latency_counts, other.latency_counts),
            latency_n=self.latency_n + other.latency_n,
            log_latency_sum=self.log_latency_sum + other.log_latency_sum,
            log_latency_sumsq=self.log_latency_sumsq + other.log_latency_sumsq,
            predicted=_add_counts(self.predicted, other.predicted),
            confidence_counts=_add_lists(self.confidence_counts, other.confidence_counts),
            labels=self.labels + other.labels,
            correct=self.correct + other.correct,
            rewards=self.rewards + other.rewards,
            reward_sum=self.reward_sum + other.reward_sum,
            reward_sumsq=self.reward_sumsq + other.reward_sumsq,
            compared=self.compared + other.compared,
            agreed=self.agreed + other.agreed,
            units=_add_units(self.units, other.units),
            inputs=_add_inputs(self.inputs, other.inputs),
            label_blocks=_add_pairs(self.label_blocks, other.label_blocks),
        )

    @classmethod
    def merge_all(cls, parts: list[ArmStats]) -> ArmStats:
        total = cls()
        for part in parts:
            total = total.merge(part)
        return total

    def is_empty(self) -> bool:
        return self.requests == 0 and self.labels == 0 and self.rewards == 0 and self.compared == 0

    # -- serialisation ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-able dict (histograms sparse, by bucket index)."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "connection_errors": self.connection_errors,
            "status_classes": dict(self.status_classes),
            "latency": _sparse(self.latency_counts),
            "latency_n": self.latency_n,
            "log_latency_sum": self.log_latency_sum,
            "log_latency_sumsq": self.log_latency_sumsq,
            "predicted": dict(self.predicted),
            "confidence": _sparse(self.confidence_counts),
            "labels": self.labels,
            "correct": self.correct,
            "rewards": self.rewards,
            "reward_sum": self.reward_sum,
            "reward_sumsq": self.reward_sumsq,
            "compared": self.compared,
            "agreed": self.agreed,
            "units": _units_json(self.units),
            **({"inputs": {k: list(v) for k, v in self.inputs.items()}} if self.inputs else {}),
            **(
                {"label_blocks": {k: list(v) for k, v in self.label_blocks.items()}}
                if self.label_blocks
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArmStats:
        return cls(
            requests=int(data.get("requests", 0)),
            errors=int(data.get("errors", 0)),
            timeouts=int(data.get("timeouts", 0)),
            connection_errors=int(data.get("connection_errors", 0)),
            status_classes={str(k): int(v) for k, v in data.get("status_classes", {}).items()},
            latency_counts=_dense(data.get("latency", {}), LATENCY_BUCKETS),
            latency_n=int(data.get("latency_n", 0)),
            log_latency_sum=float(data.get("log_latency_sum", 0.0)),
            log_latency_sumsq=float(data.get("log_latency_sumsq", 0.0)),
            predicted={str(k): int(v) for k, v in data.get("predicted", {}).items()},
            confidence_counts=_dense(data.get("confidence", {}), CONFIDENCE_BUCKETS),
            labels=int(data.get("labels", 0)),
            correct=int(data.get("correct", 0)),
            rewards=int(data.get("rewards", 0)),
            reward_sum=float(data.get("reward_sum", 0.0)),
            reward_sumsq=float(data.get("reward_sumsq", 0.0)),
            compared=int(data.get("compared", 0)),
            agreed=int(data.get("agreed", 0)),
            units=_units(data.get("units", {})),
            inputs={str(k): [float(x) for x in v][:3] for k, v in data.get("inputs", {}).items()},
            label_blocks={
                str(int(k)): [int(x) for x in v][:2]
                for k, v in data.get("label_blocks", {}).items()
            },
        )

    # -- summaries -------------------------------------------------------------------------

    def latency_quantile(self, q: float) -> float | None:
        """The q-quantile of latency (seconds) from the histogram, within 2 % relative error."""
        if self.latency_n == 0:
            return None
        rank = q * (self.latency_n - 1)
        seen = 0
        for index, count in enumerate(self.latency_counts):
            seen += count
            if seen > rank:
                return latency_bucket_value(index)
        return latency_bucket_value(LATENCY_BUCKETS - 1)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


UnitFields = tuple[str, str, str | None]
PROPORTION_UNITS: UnitFields = ("requests", "errors", None)
LOG_LATENCY_UNITS: UnitFields = ("latency_n", "log_latency_sum", "log_latency_sumsq")
_UNIT_INDEX = {
    "requests": _U_REQ,
    "errors": _U_ERR,
    "latency_n": _U_LAT_N,
    "log_latency_sum": _U_LAT_SUM,
    "log_latency_sumsq": _U_LAT_SQ,
}


def unit_design_effect(
    arms: Sequence[ArmStats], coef: Sequence[float], fields: UnitFields
) -> float:
    """Design effect of clustering by routing key for a weighted sum of one arm's stratum means
    ``sum_s coef_s S_s`` (``coef_s = w_s / (W N_s)`` for the CMH-combined effect): the
    cluster-robust variance of that sum divided by its per-request variance, at least 1; 1 when
    no request was routed by key.

    The cluster-robust ("sandwich") variance of a ratio mean ``m = S / N`` over units ``c`` is
    ``G / (G - 1) sum_c (S_c - n_c m)^2 / N^2`` (Liang & Zeger 1986; the delta method for a
    ratio estimator, Cochran 1977 Sec. 6.3), ``G`` the number of units. Across strata a unit's
    contributions add up before squaring, ``psi_c = sum_s coef_s (S_cs - n_cs m_s)``, because a
    user who fails often does so in every stratum. Requests without a key are each their own
    unit, and sum to ``Q_u - 2 m S_u + n_u m^2`` from their totals. Keys sharing a bucket are
    pooled into one unit: coarser clusters, still valid because the bucket does not depend on
    the outcome (Cameron & Miller 2015, Sec. IV)."""
    field_n, field_sum, field_sq = fields
    i_n, i_s = _UNIT_INDEX[field_n], _UNIT_INDEX[field_sum]
    i_q = _UNIT_INDEX[field_sq] if field_sq is not None else i_s
    psi = np.zeros(UNIT_BUCKETS)
    clustered = per_request = units = 0.0
    for arm, c in zip(arms, coef, strict=True):
        n_total = float(getattr(arm, field_n))
        if c <= 0.0 or n_total <= 0.0:
            continue
        s_total = float(getattr(arm, field_sum))
        q_total = float(getattr(arm, field_sq)) if field_sq is not None else s_total
        mean = s_total / n_total
        per_request += c * c * max(q_total - n_total * mean * mean, 0.0)
        n_u, s_u, q_u = n_total, s_total, q_total
        if arm.units is not None:
            sums = np.asarray(arm.units).reshape(UNIT_BUCKETS, len(UNIT_FIELDS))
            n_c, s_c, q_c = sums[:, i_n], sums[:, i_s], sums[:, i_q]
            psi += c * (s_c - n_c * mean)
            n_u, s_u, q_u = n_u - n_c.sum(), s_u - s_c.sum(), q_u - q_c.sum()
        clustered += c * c * max(q_u - 2.0 * mean * s_u + n_u * mean * mean, 0.0)
        units += n_u
    touched = int(np.count_nonzero(psi))  # units with no keyed request add nothing
    if touched == 0 or per_request <= 0.0:
        return 1.0
    clustered += float(psi @ psi)
    units += touched
    if units < 2:
        return 1.0
    return max(1.0, units / (units - 1.0) * clustered / per_request)
