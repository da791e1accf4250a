"""Change detection on delayed labels, each judged with the traffic it belongs to (pure).

A label for a request served in block ``s`` may arrive blocks or hours later. The plain
Shiryaev-Roberts recursion (:func:`controller.stats.drift.sr_step`) can only count it in the
block it arrived in, beside labels of older traffic: after a change, the first blocks mix labels
of the old behaviour with the new, and the evidence builds slowly. Here the detector keeps, for
the last ``LABEL_WINDOW`` judged blocks, the labels that belong to each, whenever they arrive,
and computes per (direction, bet)::

    R_n = T * prod_{s in window} e_s  +  sum_{tau in window} prod_{s >= tau} e_s

where ``e_s`` is the e-value of every label served in block ``s`` that has arrived so far (a
product of betting factors, :func:`controller.stats.drift.log_evalues`) and ``T`` is the plain
recursion over the change times before the window, folded in as blocks leave it
(``T <- (1 + T) e_s``). Without late labels this is exactly the plain recursion.

Why the bound still holds: for each change time ``tau`` the product over the labels attributed to
blocks from ``tau`` on is an e-process in the order the labels arrive (each factor has
conditional mean at most 1 under the null, and where a label goes is decided before its value
is seen), and every judged block starts one new change time, so ``R_n - n`` is a supermartingale
as for the plain recursion and the same thresholds hold. A label whose block was never judged
joins the next judged block; one whose block has left the window joins the window's oldest
block (it belongs to old traffic, so it weighs only on the change times before that block), and
one from a skewed clock's future the newest. Each label arrives after every change time it
counts for, so every placement decided before its value is seen keeps the bound.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

import numpy as np

from controller.stats.drift import LOG_R_FLOOR, Observation, Target, log_evalues, sr_step
from controller.stats.sufficient import ArmStats

LABEL_WINDOW = 240  # judged blocks (4 hours of one-minute blocks)
LabelCounts = tuple[int, int, int]  # (served block, labels, correct)


def label_counts(stats: ArmStats, block: int) -> list[LabelCounts]:
    """The labels of a judged block's statistics by the block their request was served in;
    labels without one (or from the future, by a skewed clock) count as served in ``block``."""
    counted: dict[int, list[int]] = {}
    on_time = [stats.labels, stats.correct]
    for key, (labels, correct) in stats.label_blocks.items():
        served = min(int(key), block)
        mine = counted.setdefault(served, [0, 0])
        mine[0] += labels
        mine[1] += correct
        on_time[0] -= labels
        on_time[1] -= correct
    if on_time[0] > 0:
        mine = counted.setdefault(block, [0, 0])
        mine[0] += on_time[0]
        mine[1] += max(on_time[1], 0)
    return [(served, labels, correct) for served, (labels, correct) in sorted(counted.items())]


def fresh_window(width: int, tail: list[float] | None = None) -> dict[str, Any]:
    """A detector with no change time in its window (``tail``: the plain recursion so far)."""
    return {"tail": list(tail) if tail is not None else [LOG_R_FLOOR] * width, "blocks": []}


def window_step(
    factors: np.ndarray,
    window: dict[str, Any],
    block: int,
    counts: Iterable[LabelCounts],
    size: int = LABEL_WINDOW,
) -> tuple[dict[str, Any], list[float]]:
    """Judge block ``block`` (a new change time) with the labels that arrived in it; returns
    the new window and ``log R`` per (direction, bet). ``factors``: :func:`label_factors`."""
    tail = list(window["tail"])
    blocks: list[list[int]] = [list(entry) for entry in window["blocks"]]
    blocks.append([block, 0, 0])
    starts = [entry[0] for entry in blocks]
    for served, labels, correct in counts:
        # the first judged block at or after the one it was served in (see the docstring)
        index = min(bisect_left(starts, served), len(blocks) - 1)
        blocks[index][1] += labels
        blocks[index][2] += correct
    while len(blocks) > size:
        tail = sr_step(tail, list(_logs(factors, [blocks.pop(0)])[0]))
    return {"tail": tail, "blocks": blocks}, window_log_r(factors, tail, blocks)


def window_log_r(factors: np.ndarray, tail: list[float], blocks: list[list[int]]) -> list[float]:
    """``log R`` per (direction, bet) from the window (see the module docstring)."""
    logs = _logs(factors, blocks)
    suffix = np.cumsum(logs[::-1], axis=0)[::-1]  # suffix[i] = sum of logs[i:]
    whole = suffix[0] if len(blocks) else np.zeros(factors.shape[1])
    terms = np.vstack([np.asarray(tail) + whole, suffix])
    top = terms.max(axis=0)
    log_r = top + np.log(np.exp(terms - top).sum(axis=0))
    return [max(float(x), LOG_R_FLOOR) for x in log_r]


def label_factors(target: Target) -> np.ndarray:
    """Rows: the log betting factor of one correct label, and of one wrong label, per
    (direction, bet) of ``target``."""
    right = log_evalues(target, Observation(n=1.0, values=((1.0, 1.0),)))
    wrong = log_evalues(target, Observation(n=1.0, values=((0.0, 1.0),)))
    return np.array([right, wrong])


def _logs(factors: np.ndarray, blocks: list[list[int]]) -> np.ndarray:
    counts = np.array([[correct, labels - correct] for _, labels, correct in blocks], dtype=float)
    return counts.reshape(-1, 2) @ factors
