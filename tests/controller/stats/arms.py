"""Simulated arms for the statistics tests, recorded through ArmStats' public API."""

from __future__ import annotations

import math

import numpy as np

from controller.stats import ArmStats


def simulated_arm(
    seed: int,
    n: int,
    *,
    error_rate: float = 0.01,
    median_s: float = 0.05,
    log_sd: float = 0.5,
    classes: tuple[float, ...] = (0.5, 0.3, 0.2),
    confidence_beta: tuple[float, float] = (5.0, 2.0),
    accuracy: float = 0.9,
    label_share: float = 0.3,
    reward_mean: float = 1.0,
) -> ArmStats:
    """``n`` requests; labels and rewards for a ``label_share`` of them."""
    rng = np.random.default_rng(seed)
    arm = ArmStats()
    failed = rng.random(n) < error_rate
    latency = np.exp(math.log(median_s) + log_sd * rng.standard_normal(n))
    predicted = rng.choice(len(classes), size=n, p=np.array(classes) / sum(classes))
    confidence = rng.beta(*confidence_beta, size=n)
    labelled = rng.random(n) < label_share
    correct = rng.random(n) < accuracy
    reward = reward_mean + rng.standard_normal(n)
    for i in range(n):
        arm.record_response(
            "5xx" if failed[i] else "2xx",
            float(latency[i]),
            predicted_class=f"c{predicted[i]}",
            confidence=float(confidence[i]),
        )
        if labelled[i]:
            arm.record_label(bool(correct[i]))
            arm.record_reward(float(reward[i]))
    return arm
