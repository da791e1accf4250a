"""Webhooks: the outbox that announces rollout changes (``outbox``) and what admins do to
hooks (``service``)."""
