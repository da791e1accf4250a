"""Delayed labels judged with the block their request was served in: the same detector as the
plain recursion when nothing is late, the stated false-alarm bound when much is, and faster
detection of a decay whose labels trickle in."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from controller.stats.drift import (
    LOG_R_FLOOR,
    Observation,
    Target,
    log_evalues,
    mixture_statistic,
    sr_step,
)
from controller.stats.late_labels import (
    fresh_window,
    label_counts,
    label_factors,
    window_step,
)
from controller.stats.sufficient import ArmStats

ACCURACY = Target("accuracy", "reference", "bounded", 0.9, 0.01, (-1,))


def test_label_counts_split_a_block_by_served_block_and_clamp_the_future() -> None:
    stats = ArmStats()
    for _ in range(3):
        stats.record_label(True)  # no served block: on time
    stats.record_label(False, served_block=7)
    stats.record_label(True, served_block=7)
    stats.record_label(True, served_block=12)  # a skewed clock: counts as now
    assert label_counts(stats, 10) == [(7, 2, 1), (10, 4, 4)]
    back = ArmStats.from_json(stats.merge(ArmStats.from_json(stats.to_json())).to_json())
    assert back.label_blocks == {"7": [4, 2], "12": [2, 2]}
    assert (back.labels, back.correct) == (12, 10)


def test_without_late_labels_the_window_is_the_plain_recursion() -> None:
    rng = np.random.default_rng(3)
    factors = label_factors(ACCURACY)
    plain = [LOG_R_FLOOR] * ACCURACY.width
    window = fresh_window(ACCURACY.width)
    for block in range(40):  # the window (size 8) overflows and folds into its tail
        labels = int(rng.integers(50, 200))
        correct = int(rng.binomial(labels, 0.86 if block > 20 else 0.9))
        observation = Observation(float(labels), ((1.0, correct), (0.0, labels - correct)))
        plain = sr_step(plain, log_evalues(ACCURACY, observation))
        window, log_r = window_step(factors, window, block, [(block, labels, correct)], size=8)
        assert np.allclose(log_r, plain, atol=1e-9), block
    assert len(window["blocks"]) == 8


def _late_stream(
    rng: np.random.Generator, blocks: int, accuracy: float, change_at: int | None
) -> list[ArmStats]:
    """Per block 400 labels, half on time and half 1 to 10 blocks late."""
    pending: defaultdict[int, dict[int, list[int]]] = defaultdict(dict)
    out = []
    for block in range(blocks):
        p = accuracy if change_at is None or block < change_at else accuracy - 0.06
        right = rng.random(400) < p
        delay = np.where(rng.random(400) < 0.5, 0, rng.integers(1, 11, size=400))
        for late in np.unique(delay):
            chosen = right[delay == late]
            counts = pending[block + int(late)].setdefault(block, [0, 0])
            counts[0] += len(chosen)
            counts[1] += int(chosen.sum())
        stats = ArmStats(label_blocks={str(s): c for s, c in pending.pop(block).items()})
        stats.labels = sum(c[0] for c in stats.label_blocks.values())
        stats.correct = sum(c[1] for c in stats.label_blocks.values())
        out.append(stats)
    return out


def _first_alarm(stream: list[ArmStats], threshold: float, attributed: bool) -> int | None:
    factors = label_factors(ACCURACY)
    window = fresh_window(ACCURACY.width)
    log_r = [LOG_R_FLOOR] * ACCURACY.width
    for block, stats in enumerate(stream):
        if attributed:
            window, log_r = window_step(factors, window, block, label_counts(stats, block))
        else:
            observation = Observation(
                float(stats.labels),
                ((1.0, stats.correct), (0.0, stats.labels - stats.correct)),
            )
            log_r = sr_step(log_r, log_evalues(ACCURACY, observation))
        if mixture_statistic(log_r) >= threshold:
            return block
    return None


def test_false_alarms_with_late_labels_stay_within_m_over_a() -> None:
    """At the null's edge (accuracy 0.89), with half the labels late: P(alarm within m blocks)
    <= m / A, as for the plain recursion."""
    rng = np.random.default_rng(5)
    blocks, runs = 60, 150
    threshold = math.log(blocks / 0.2)
    alarms = sum(
        _first_alarm(_late_stream(rng, blocks, 0.89, None), threshold, True) is not None
        for _ in range(runs)
    )
    assert alarms / runs <= 0.2 + 3 * math.sqrt(0.2 * 0.8 / runs)


def test_a_decay_with_late_labels_is_seen_sooner_with_its_own_blocks() -> None:
    rng = np.random.default_rng(8)
    threshold = math.log(10080 / 0.01)
    own, arrival = [], []
    for _ in range(12):
        stream = _late_stream(rng, 80, 0.9, change_at=40)
        own.append(_first_alarm(stream, threshold, True))
        arrival.append(_first_alarm(stream, threshold, False))
    assert all(hit is not None and hit >= 40 for hit in own + arrival)
    assert np.median(own) + 2 <= np.median(arrival), (own, arrival)  # type: ignore[arg-type]


def test_a_label_goes_to_its_block_the_next_judged_one_or_the_windows_oldest() -> None:
    factors = label_factors(ACCURACY)
    window = fresh_window(ACCURACY.width)
    for block in (0, 1, 3, 4):  # block 2 had no traffic: never judged
        window, _ = window_step(factors, window, block, [], size=3)
    counts = [(0, 5, 4), (2, 3, 3), (4, 2, 1), (9, 1, 1)]  # left the window, unjudged, own, future
    after, _ = window_step(factors, window, 5, counts, size=3)
    # block 2's labels to the next judged block (3); block 0's to the oldest one then in the
    # window (1), which leaves it in this step, into the tail
    assert after["blocks"] == [[3, 3, 3], [4, 2, 1], [5, 1, 1]]
    without, _ = window_step(factors, window, 5, counts[1:], size=3)
    assert without["blocks"] == after["blocks"] and without["tail"] != after["tail"]
