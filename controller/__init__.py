"""Shelf controller: the gateway data plane, the statistics engine and the rollout reconciler."""
