"""Webhook commands: announce rollout transitions to other systems (admin role)."""

from __future__ import annotations

import click

from controller.client import RolloutClient
from registry.cli import output
from registry.cli.context import connection_of
from registry.cli.output import print_json, short_time, table


def client_of(ctx: click.Context) -> RolloutClient:
    return RolloutClient(connection_of(ctx))


@click.group()
def webhook() -> None:
    """Webhooks announcing rollout transitions (JSON, signed with HMAC-SHA256)."""


@webhook.command("add")
@click.argument("url")
@click.option("--model", help="Only this model's transitions [default: every model]")
@click.option("--secret", help="Signing secret [default: generated and printed once]")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_add(
    ctx: click.Context, url: str, model: str | None, secret: str | None, as_json: bool
) -> None:
    created = client_of(ctx).add_webhook(url, model, secret)
    if as_json:
        print_json(created)
        return
    output.console.print(f"webhook {created['id']} -> {url}; signing secret: {created['secret']}")


@webhook.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_list(ctx: click.Context, as_json: bool) -> None:
    rows = client_of(ctx).webhooks()
    if as_json:
        print_json(rows)
        return
    table(
        ["id", "url", "model", "created", "by"],
        [
            [h["id"], h["url"], h["model"] or "*", short_time(h["created_at"]), h["created_by"]]
            for h in rows
        ],
    )


@webhook.command("delete")
@click.argument("webhook_id", type=int)
@click.pass_context
def webhook_delete(ctx: click.Context, webhook_id: int) -> None:
    client_of(ctx).delete_webhook(webhook_id)
    output.console.print(f"deleted webhook {webhook_id}")
