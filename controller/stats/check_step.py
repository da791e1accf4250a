"""One judged time block for one check of the champion watch, whichever detector the check has
(pure, no I/O, no clocks).

The watch (``controller.watch.watcher``) and its benchmark (``benchmarks/drift.py``) both judge
blocks through :func:`step_check`, so the benchmark measures what the watch runs. A check's state
is its ``log_r`` (the terms of its statistic, :func:`controller.stats.drift.mixture_statistic`)
and, for two kinds of check, a detector state of its own, ``None`` until the first block:

- accuracy: the window of late labels judged with the block they were served in
  (:mod:`controller.stats.late_labels`);
- contrast targets (class shares, mean confidence): the candidate change times
  (:mod:`controller.stats.contrast`).

Re-arming after an alarm is the caller's: ``log_r`` back to ``LOG_R_FLOOR`` and the detector
state dropped."""

from __future__ import annotations

from typing import Any

from controller.stats import contrast
from controller.stats.drift import Observation, Target, log_evalues, sr_step
from controller.stats.late_labels import fresh_window, label_counts, label_factors, window_step
from controller.stats.sufficient import ArmStats

Detector = dict[str, Any]


def step_check(
    target: Target,
    log_r: list[float],
    detector: Detector | None,
    block: int,
    stats: ArmStats,
    observation: Observation | None,
) -> tuple[list[float], Detector | None] | None:
    """The check's ``log_r`` and detector state after ``block`` (``observation`` is
    ``observe(target, stats)``); None when the block holds nothing for it."""
    if target.check == "accuracy":  # late labels are judged with their own block
        window = detector or fresh_window(target.width, log_r)
        counts = label_counts(stats, block)
        window, log_r = window_step(label_factors(target), window, block, counts)
        return log_r, window
    if observation is None:
        return None
    if target.kind == "contrast":
        changes, statistic = contrast.step(
            target, detector or contrast.fresh(target), block, observation
        )
        return [statistic], changes
    return sr_step(log_r, log_evalues(target, observation)), None
