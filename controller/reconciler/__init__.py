"""The reconciler: one leader-elected loop that judges every active rollout and acts."""
