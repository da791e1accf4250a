"""Metric sources: where the guardrails' per-arm statistics come from when Shelf's gateway does
not see the traffic. Each turns its measurements into the same mergeable ``ArmStats`` the
gateway flushes, per time block, so the same sequential tests judge them."""
