"""Reference profiles: what a version's outputs and inputs looked like on held-out data.

A profile is what the champion watch compares live traffic with (docs/champion-watch.md). It is
set at registration (``shelf register --profile FILE``), built from a JSONL or CSV file of
held-out predictions and labels by ``shelf profile build``, or captured from the version's own
rollout statistics when it is promoted without one. The format is versioned and validated here
so that a profile the watch cannot read is refused at registration, not discovered later.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry.errors import InvalidInput

PROFILE_FORMAT = "shelf.reference_profile/1"
CONFIDENCE_BINS = 20  # equal bins over [0, 1], as the gateway records them
MAX_CLASSES = 1000
MAX_INPUTS = 256


class InputSummary(BaseModel):
    """Mean and standard deviation of one numeric input over ``n`` values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(ge=2)
    mean: float = Field(allow_inf_nan=False)
    std: float = Field(gt=0, allow_inf_nan=False)


class ReferenceProfile(BaseModel):
    """The documented profile format (``format: shelf.reference_profile/1``).

    Frequencies and the confidence histogram are shares summing to 1; ``accuracy`` is the share
    of labelled predictions that were right; latencies are in seconds. Every part but
    ``samples`` is optional: a check whose reference is missing is judged against the
    champion's own first period in production only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["shelf.reference_profile/1"] = "shelf.reference_profile/1"
    source: Literal["held-out", "rollout"] = "held-out"
    samples: int = Field(ge=1)
    class_frequencies: dict[str, float] = Field(default_factory=dict, max_length=MAX_CLASSES)
    confidence_histogram: list[float] | None = None
    labels: int = Field(default=0, ge=0)
    accuracy: float | None = Field(default=None, ge=0, le=1)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    latency_p50_s: float | None = Field(default=None, gt=0)
    latency_p90_s: float | None = Field(default=None, gt=0)
    inputs: dict[str, InputSummary] = Field(default_factory=dict, max_length=MAX_INPUTS)

    @field_validator("class_frequencies")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if value:
            if any(not 0.0 <= share <= 1.0 for share in value.values()):
                raise ValueError("class frequencies must lie in [0, 1]")
            if abs(sum(value.values()) - 1.0) > 1e-3:
                raise ValueError("class frequencies must sum to 1")
        return value

    @field_validator("confidence_histogram")
    @classmethod
    def _histogram(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) != CONFIDENCE_BINS:
            raise ValueError(f"confidence_histogram needs {CONFIDENCE_BINS} bins over [0, 1]")
        if any(not 0.0 <= share <= 1.0 for share in value) or abs(sum(value) - 1.0) > 1e-3:
            raise ValueError("confidence_histogram must be shares summing to 1")
        return value

    @property
    def mean_confidence(self) -> float | None:
        """Mean confidence from the histogram (bin midpoints)."""
        if self.confidence_histogram is None:
            return None
        width = 1.0 / CONFIDENCE_BINS
        return sum(share * (i + 0.5) * width for i, share in enumerate(self.confidence_histogram))


def parse_profile(document: Any) -> dict[str, Any]:
    """The profile as stored (validated, defaults filled); ``InvalidInput`` says what is wrong."""
    try:
        profile = ReferenceProfile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "profile"
        raise InvalidInput(f"invalid reference profile: {where}: {first['msg']}") from None
    return profile.model_dump(mode="json", exclude_none=True)


# -- building a profile from held-out predictions -------------------------------------------


class _Accumulator:
    def __init__(self) -> None:
        self.samples = 0
        self.errors = 0
        self.classes: dict[str, int] = {}
        self.confidence = [0] * CONFIDENCE_BINS
        self.labels = 0
        self.correct = 0
        self.latencies: list[float] = []
        self.inputs: dict[str, list[float]] = {}  # name -> [n, sum, sumsq]

    def add(self, row: Mapping[str, Any], where: str) -> None:
        self.samples += 1
        if _truthy(row.get("error")):
            self.errors += 1
            return
        predicted = row.get("predicted")
        if predicted is None or predicted == "":
            raise InvalidInput(f"{where}: 'predicted' is missing")
        predicted = str(predicted)
        self.classes[predicted] = self.classes.get(predicted, 0) + 1
        confidence = _number(row.get("confidence"), "confidence", where)
        if confidence is not None:
            if not 0.0 <= confidence <= 1.0:
                raise InvalidInput(f"{where}: confidence {confidence} is outside [0, 1]")
            self.confidence[min(int(confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)] += 1
        label = row.get("label")
        if label is not None and label != "":
            self.labels += 1
            self.correct += int(str(label) == predicted)
        latency_ms = _number(row.get("latency_ms"), "latency_ms", where)
        if latency_ms is not None:
            self.latencies.append(latency_ms / 1000.0)
        for name, value in _inputs(row).items():
            number = _number(value, f"input {name!r}", where)
            if number is None:
                continue
            sums = self.inputs.setdefault(name, [0.0, 0.0, 0.0])
            sums[0] += 1
            sums[1] += number
            sums[2] += number * number

    def profile(self) -> dict[str, Any]:
        if self.samples == 0:
            raise InvalidInput("no rows: a profile needs held-out predictions")
        answered = sum(self.classes.values())
        document: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "source": "held-out",
            "samples": self.samples,
            "error_rate": self.errors / self.samples,
        }
        if answered:
            document["class_frequencies"] = {k: v / answered for k, v in self.classes.items()}
        scored = sum(self.confidence)
        if scored:
            document["confidence_histogram"] = [c / scored for c in self.confidence]
        if self.labels:
            document["labels"] = self.labels
            document["accuracy"] = self.correct / self.labels
        if self.latencies:
            ordered = sorted(self.latencies)
            document["latency_p50_s"] = max(ordered[len(ordered) // 2], 1e-6)
            document["latency_p90_s"] = max(ordered[int(0.9 * (len(ordered) - 1))], 1e-6)
        inputs = {}
        for name, (n, total, sumsq) in self.inputs.items():
            if n < 2:
                continue
            mean = total / n
            variance = max(sumsq - n * mean * mean, 0.0) / (n - 1)
            if variance > 0.0:
                inputs[name] = {"n": int(n), "mean": mean, "std": math.sqrt(variance)}
        if inputs:
            document["inputs"] = inputs
        return parse_profile(document)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in {"1", "true", "yes"})


def _number(value: Any, what: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{where}: {what} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: {what} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{where}: {what} must be finite")
    return number


def _inputs(row: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs: {name: value}`` (JSONL) or ``input.NAME`` columns (CSV)."""
    nested = row.get("inputs")
    found: dict[str, Any] = dict(nested) if isinstance(nested, Mapping) else {}
    for key, value in row.items():
        if key.startswith("input."):
            found[key[len("input.") :]] = value
    return found


def build_profile(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """A profile from ``(where, row)`` pairs; each row has ``predicted`` and optionally
    ``confidence``, ``label``, ``latency_ms``, ``error`` and numeric inputs."""
    accumulator = _Accumulator()
    for where, row in rows:
        accumulator.add(row, where)
    return accumulator.profile()


def read_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Rows of a ``.csv`` file (header line) or of JSON Lines (anything else)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield f"{path.name}:{number}", row
        return
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except ValueError:
                raise InvalidInput(f"{where}: not valid JSON") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{where}: expected a JSON object")
            yield where, row
