"""Registry operations: each one a transaction that also writes its audit event."""
