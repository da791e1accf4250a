"""The composition root's own commands: the process roles (``shelf server|api|gateway|
reconciler``), ``shelf db`` migrations and ``shelf quickstart``.

Each loads the server stack inside its callback, so that every other ``shelf`` command (an
incident's ``shelf rollback`` above all) starts without importing it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from controller.config import ControllerSettings
from controller.vocabulary import RolloutState
from registry.cli import exit_codes, output


def load_settings(**overrides: Any) -> ControllerSettings:
    """The settings every role reads: ``SHELF_*`` from the environment, then ``overrides``."""
    return ControllerSettings(**{k: v for k, v in overrides.items() if v is not None})


@click.command()
@click.option("--host", help="API bind address [SHELF_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="API port [SHELF_PORT, default 8000]")
@click.option("--gateway-port", type=int, help="Gateway port [SHELF_GATEWAY_PORT, default 8080]")
def server(host: str | None, port: int | None, gateway_port: int | None) -> None:
    """Run Shelf all-in-one: registry API, gateway and reconciler in one process."""
    from shelf.roles import run_roles

    settings = load_settings(host=host, port=port, gateway_port=gateway_port)
    run_roles(settings, api=True, gateway=True, reconciler=True)


@click.command()
@click.option("--host", help="Bind address [SHELF_HOST]")
@click.option("--port", type=int, help="Port [SHELF_PORT, default 8000]")
def api(host: str | None, port: int | None) -> None:
    """Run only the registry and rollout API (production role)."""
    from shelf.roles import run_roles

    run_roles(load_settings(host=host, port=port), api=True, gateway=False, reconciler=False)


@click.command()
@click.option("--host", help="Bind address [SHELF_GATEWAY_HOST]")
@click.option("--port", type=int, help="Port [SHELF_GATEWAY_PORT, default 8080]")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Processes serving the port, each a replica of its own [SHELF_GATEWAY_WORKERS, default 1]",
)
@click.option("--reuse-port", is_flag=True, hidden=True, help="Run as one of several workers")
def gateway(
    host: str | None, port: int | None, workers: int | None, reuse_port: bool
) -> int | None:
    """Run only the gateway: the data plane that splits, mirrors and measures traffic."""
    from shelf.roles import run_roles

    settings = load_settings(gateway_host=host, gateway_port=port, gateway_workers=workers)
    if reuse_port:
        from shelf.workers import bind

        sock = bind(settings.gateway_host, settings.gateway_port)
        run_roles(settings, False, True, False, gateway_sock=sock)
        return None
    if settings.gateway_workers > 1:
        from shelf.roles import prepare_database
        from shelf.workers import run_gateway_workers

        prepare_database(settings)
        return run_gateway_workers(settings)
    run_roles(settings, api=False, gateway=True, reconciler=False)
    return None


@click.command()
@click.option("--host", help="Probe/metrics bind address [SHELF_RECONCILER_HOST]")
@click.option("--port", type=int, help="Probe/metrics port [SHELF_RECONCILER_PORT, default 8090]")
def reconciler(host: str | None, port: int | None) -> None:
    """Run only the reconciler (leader-elected; run two for a hot standby)."""
    from shelf.roles import run_roles

    settings = load_settings(reconciler_host=host, reconciler_port=port)
    run_roles(settings, api=False, gateway=False, reconciler=True)


@click.group()
def db() -> None:
    """Database migrations (PostgreSQL deployments run 'shelf db upgrade' before starting)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database in SHELF_DATABASE_URL up to REVISION."""
    from shelf import migrate

    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url, revision)
    output.console.print(f"database at {migrate.current(settings.resolved_database_url)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' empties it)."""
    from shelf import migrate

    settings = load_settings()
    migrate.downgrade(settings.resolved_database_url, revision)
    output.console.print(f"database at {migrate.current(settings.resolved_database_url) or 'base'}")


@db.command("current")
def db_current() -> None:
    """Print the database's schema revision and the newest one this Shelf knows."""
    from shelf import migrate

    settings = load_settings()
    current = migrate.current(settings.resolved_database_url)
    output.console.print(f"current {current or 'base'}, head {migrate.head_revision()}")


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo keeps its data [default: $SHELF_HOME/quickstart-<time>]",
)
@click.option("--timeout", "timeout_s", default=50.0, show_default=True, help="Per rollout, s")
def quickstart(home: Path | None, timeout_s: float) -> int:
    """Run the whole story locally: two canaries, one rolled back, one promoted, then the
    champion watch catching the promoted model's silent decay; plus a report."""
    from controller.cli.watch_commands import headline
    from shelf.demo.quickstart import run

    started = time.monotonic()
    home = home or load_settings().home / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"

    def say(line: str) -> None:
        output.console.print(line, highlight=False, markup=False)

    outcome = run(home.expanduser().resolve(), say, timeout_s=timeout_s)
    say(f"done in {time.monotonic() - started:.0f}s")
    finished = outcome.rollouts
    for rollout in finished:
        say(
            f"rollout {rollout.id} ({rollout.model} v{rollout.champion_version} -> "
            f"v{rollout.challenger_version}): {rollout.state}"
        )
    champion = outcome.champion
    say(
        headline(champion)
        if champion is not None
        else f"champion {finished[-1].model}: not watched"
    )
    states = [r.state for r in finished]
    expected = [RolloutState.rolled_back, RolloutState.promoted]
    decayed = champion is not None and champion.status == "decayed"
    return exit_codes.OK if states == expected and decayed else exit_codes.ERROR


COMMANDS = [quickstart]


COMMANDS = [server, api, gateway, reconciler, db, quickstart]
