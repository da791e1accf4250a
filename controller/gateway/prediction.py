"""Reading the predicted class and its confidence out of a model server's JSON response.

Open Inference Protocol v2 (``{"outputs": [{"name", "datatype", "shape", "data"}, ...]}``),
one prediction per response (for a batch, the first row):

- a *class label* output is one whose data are strings (``BYTES``) or integers: the first
  element is the predicted class (integers are written as their decimal string);
- a *probabilities* output is one whose data are floats with a last dimension of at least 2:
  its first row's argmax is the predicted class (as the index string ``"0"``, ``"1"`` …) unless
  a label output names it, and its maximum is the confidence;
- a single float output named ``confidence``, ``score`` or ``probability`` is the confidence.

Other servers: ``SHELF_GATEWAY_PREDICTION_PATH`` and ``SHELF_GATEWAY_CONFIDENCE_PATH`` are
dotted paths into the JSON document (``predictions.0.label``; integer parts index lists).
Anything that does not fit yields ``None``, never an error: measurement must not break serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

_NUMBER = (int, float)  # a tuple, not ``int | float``: that builds a new union per element
CONFIDENCE_NAMES = frozenset({"confidence", "score", "probability", "proba"})

Prediction = tuple[str | None, float | None]
NO_PREDICTION: Prediction = (None, None)


def compile_path(dotted: str | None) -> tuple[str | int, ...] | None:
    if not dotted:
        return None
    return tuple(int(part) if part.lstrip("-").isdigit() else part for part in dotted.split("."))


def _follow(document: Any, path: Sequence[str | int]) -> Any:
    node = document
    for part in path:
        if isinstance(part, int) and isinstance(node, list):
            if not -len(node) <= part < len(node):
                return None
            node = node[part]
        elif isinstance(node, dict):
            node = node.get(str(part))
        else:
            return None
    return node


def _as_class(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _as_confidence(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _all_numbers(row: list[Any]) -> bool:
    for value in row:  # noqa: SIM110  # a loop: ``all()`` over a generator costs twice as much
        if not isinstance(value, _NUMBER):
            return False
    return True


def _datatype(output: dict[str, Any]) -> str:
    return str(output.get("datatype", "")).upper()


def _row_width(output: dict[str, Any], data: list[Any]) -> int:
    """The last dimension of a flattened output's shape (its rows' width), else its length."""
    shape = output.get("shape")
    width = shape[-1] if isinstance(shape, list) and shape else len(data)
    return width if isinstance(width, int) and width >= 1 else len(data)


def parse_oip(document: Any) -> Prediction:
    outputs = document.get("outputs") if isinstance(document, dict) else None
    if not isinstance(outputs, list):
        return NO_PREDICTION
    label: str | None = None
    confidence: float | None = None
    argmax: int | None = None
    for output in outputs:
        if not isinstance(output, dict):
            continue
        data = output.get("data")
        if not isinstance(data, list) or not data:
            continue
        nested = isinstance(data[0], list)
        if nested:  # nested rather than flattened: take the first row
            data = data[0]
            if not data:
                continue
        first = data[0]
        # Strings are a label whatever the datatype says: it is read (and upper-cased) only
        # for other data.
        datatype = None if isinstance(first, str) else _datatype(output)
        if datatype is None or datatype == "BYTES":
            if label is None:
                label = _as_class(first)
        elif isinstance(first, float) or datatype.startswith("FP"):
            row = data if nested else data[: _row_width(output, data)]
            if len(row) >= 2:
                if argmax is None and _all_numbers(row):
                    best = max(row)  # the first maximal element, as an argmax would pick
                    argmax = row.index(best)
                    confidence = float(best)
            elif str(output.get("name", "")).lower() in CONFIDENCE_NAMES:
                confidence = _as_confidence(first)
        elif isinstance(first, int) and label is None:
            label = _as_class(first)
    if label is None and argmax is not None:
        label = str(argmax)
    return label, confidence


class PredictionParser:
    """Parses a response body once per request, only when it is JSON."""

    def __init__(self, prediction_path: str | None, confidence_path: str | None) -> None:
        self._prediction_path = compile_path(prediction_path)
        self._confidence_path = compile_path(confidence_path)

    def parse(self, body: bytes, content_type: bytes | None) -> Prediction:
        if not body or content_type is None or b"json" not in content_type:
            return NO_PREDICTION
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return NO_PREDICTION
        return self.parse_document(document)

    def parse_document(self, document: Any) -> Prediction:
        if self._prediction_path is None and self._confidence_path is None:
            return parse_oip(document)
        label, confidence = parse_oip(document)
        if self._prediction_path is not None:
            label = _as_class(_follow(document, self._prediction_path))
        if self._confidence_path is not None:
            confidence = _as_confidence(_follow(document, self._confidence_path))
        return label, confidence
