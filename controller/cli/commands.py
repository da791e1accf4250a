"""The controller's commands, grouped for the ``shelf`` command: rollouts, the incident
button, webhooks, the champion watch."""

from __future__ import annotations

import click

from controller.cli.rollout_commands import rollback, rollout
from controller.cli.watch_commands import models, watch, watch_policy
from controller.cli.webhook_commands import webhook

# ``models`` lists the registry's models with each champion's watch status: added after the
# registry's commands (shelf/cli.py), it takes the place of the registry's plainer listing.
controller = click.Group(
    "controller",
    commands=[rollout, rollback, webhook, watch, watch_policy, models],
    help="The controller's commands.",
)
