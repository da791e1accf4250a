"""The controller's commands, grouped for the ``shelf`` command: rollouts, the incident
button, webhooks."""

from __future__ import annotations

import click

from controller.cli.rollout_commands import rollback, rollout
from controller.cli.webhook_commands import webhook

controller = click.Group(
    "controller", commands=[rollout, rollback, webhook], help="The controller's commands."
)
