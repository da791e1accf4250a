"""Champion-watch commands: ``shelf watch NAME``, ``shelf watch-policy NAME``, and ``shelf
models`` with each champion's status (it replaces the registry's listing, adding a column)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import click

from controller.api.schemas import WatchOut
from controller.client import RolloutClient
from controller.stats.watch_report import WatchCheck, WatchReport
from registry.cli import output
from registry.cli.context import connection_of
from registry.cli.output import print_json, short_time, table
from registry.client.registry import RegistryClient
from registry.errors import NotFound


def client_of(ctx: click.Context) -> RolloutClient:
    return RolloutClient(connection_of(ctx))


def _clock(moment: datetime | None) -> str:
    return short_time(moment.isoformat()) if moment is not None else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def headline(report: WatchReport) -> str:
    """``champion fraud v3: decayed``: the line the quickstart ends with."""
    return f"champion {report.model} v{report.version}: {report.status}"


def _row(check: WatchCheck) -> list[object]:
    return [
        check.check,
        check.against,
        check.effect,
        "ALARM" if check.state == "alarm" else "ok",
        _clock(check.since),
        _number(check.observed),
        f"{check.expected:.4g} ± {check.tolerance:.2g}",
        f"{check.statistic:.1f} / {check.threshold:.1f}",
        f"{check.n:.0f}",
    ]


def show(watched: WatchOut) -> None:
    report = watched.report
    output.console.print(
        f"[bold]{headline(report)}[/bold] since {_clock(report.since)}: {report.reason}",
        highlight=False,
    )
    columns = ["check", "against", "effect", "state", "since", "observed", "expected"]
    table([*columns, "log e / alarm", "n"], [_row(c) for c in report.checks])
    notes = [
        f"false alarms: P(any in a week) <= {report.false_alarms_per_week:g} "
        f"({report.block_s:g} s blocks); alarms hold until `shelf watch {report.model} --ack`"
    ]
    if report.baseline_until is not None:
        notes.append(f"first period (baseline) until {_clock(report.baseline_until)}")
    if report.bake_until is not None:
        until = _clock(report.bake_until)
        notes.append(f"bake window until {until} (on decay: {report.on_decay})")
    if report.stale_at is not None:
        notes.append(f"stale at {_clock(report.stale_at)}")
    for note in notes:
        output.console.print(note, highlight=False)


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (one line per update)")
@click.option("--follow", is_flag=True, help="Keep watching; print each change")
@click.option("--ack", is_flag=True, help="Acknowledge the alarms (deploy role); re-arms checks")
@click.option("--history", default=0, type=int, help="Include the latest N judged blocks (--json)")
@click.option("--interval", default=2.0, type=float, help="Seconds between looks (--follow)")
@click.pass_context
def watch(
    ctx: click.Context,
    name: str,
    as_json: bool,
    follow: bool,
    ack: bool,
    history: int,
    interval: float,
) -> None:
    """A champion's status, each check's state, evidence and since when."""
    client = client_of(ctx)
    watched = client.acknowledge(name) if ack else client.watch(name, history)
    last = None
    while True:
        report = watched.report
        stamp = (report.status, report.since, tuple((c.state, c.alarms) for c in report.checks))
        if stamp != last:
            if as_json and follow:  # one object per line
                click.echo(json.dumps(watched.model_dump(mode="json")))
            elif as_json:
                print_json(watched.model_dump(mode="json"))
            else:
                show(watched)
            last = stamp
        if not follow:
            return
        time.sleep(interval)
        watched = client.watch(name, history)


@click.command("watch-policy")
@click.argument("name")
@click.option("--max-data-age", help="Shelf life from the training-data window end, e.g. 90d")
@click.option("--bake-window", help="After a promotion, e.g. 1h")
@click.option("--on-decay", type=click.Choice(["alert", "rollback"]), help="Inside the bake window")
@click.option("--baseline", help="Length of the first period in production, e.g. 30m")
@click.option("--false-alarms-per-week", type=float, help="Bound on P(any false alarm) a week")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def watch_policy(
    ctx: click.Context,
    name: str,
    max_data_age: str | None,
    bake_window: str | None,
    on_decay: str | None,
    baseline: str | None,
    false_alarms_per_week: float | None,
    as_json: bool,
) -> None:
    """Show a model's watch policy, or change it with the options."""
    changes = {
        key: value
        for key, value in {
            "max_data_age": max_data_age,
            "bake_window": bake_window,
            "on_decay": on_decay,
            "baseline": baseline,
            "false_alarms_per_week": false_alarms_per_week,
        }.items()
        if value is not None
    }
    client = client_of(ctx)
    policy = client.set_watch_policy(name, **changes) if changes else client.watch_policy(name)
    if as_json:
        print_json(policy)
        return
    for key, value in policy.items():
        output.console.print(f"{key}: {value}", highlight=False)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List registered models, with each champion's watch status."""
    page = RegistryClient(connection_of(ctx)).models()
    try:
        statuses = {s.model: s for s in client_of(ctx).watch_statuses()}
    except NotFound:  # a registry without the controller's API
        statuses = {}
    if as_json:
        for item in page["items"]:
            watched = statuses.get(item["name"])
            item["status"] = watched.status if watched else None
        print_json(page)
        return
    table(
        ["model", "latest", "aliases", "status", "created"],
        [
            [
                m["name"],
                m["latest_version"],
                " ".join(f"{a}={v}" for a, v in m["aliases"].items()),
                statuses[m["name"]].status if m["name"] in statuses else "-",
                short_time(m["created_at"]),
            ]
            for m in page["items"]
        ],
    )
