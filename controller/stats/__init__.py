"""Pure statistics for rollout decisions: no I/O, no clocks."""

from controller.stats.sufficient import ArmStats

__all__ = ["ArmStats"]
