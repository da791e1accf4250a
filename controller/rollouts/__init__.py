"""Rollout operations: starting, controlling and ending rollouts, each one transaction."""
