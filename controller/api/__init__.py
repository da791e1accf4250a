"""HTTP endpoints of the controller: rollouts, rollback, webhooks."""
