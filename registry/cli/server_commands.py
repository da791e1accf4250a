"""Commands that run Shelf itself: the all-in-one server and database migrations."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import click

from registry.cli import output
from registry.config import Settings
from registry.errors import InvalidInput


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def check_open_mode(settings: Settings, *hosts: str) -> None:
    """Without tokens the API is open, which is only acceptable where nobody else can reach it."""
    if settings.all_tokens():
        return
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed:
        raise InvalidInput(
            f"refusing to listen on {exposed[0]} without tokens: configure SHELF_TOKENS "
            "(see README, 'Authentication') or bind 127.0.0.1"
        )


def prepare_database(settings: Settings) -> None:
    """The embedded SQLite is upgraded in place; any other database must already be at head."""
    from registry.db import migrate

    settings.home.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    if settings.is_embedded_sqlite:
        migrate.upgrade(url)
        return
    head = migrate.head_revision()
    current = migrate.current(url)
    if current != head:
        raise InvalidInput(
            f"database schema is at {current or 'nothing'}, not {head}: run 'shelf db upgrade'"
        )


def _run_roles(settings: Settings, api: bool, gateway: bool, reconciler: bool) -> None:
    """Serve the chosen roles from this process until SIGINT/SIGTERM."""
    from registry.api.app import create_app, create_health_app
    from registry.db.session import Database
    from registry.runner import Listener, run

    if api:
        check_open_mode(settings, settings.host)
    prepare_database(settings)
    database = Database(settings.resolved_database_url)
    listeners: list[Listener] = []
    jobs = []
    if api:
        listeners.append(
            Listener("api", create_app(settings, database), settings.host, settings.port)
        )
    if gateway:
        from controller.gateway.app import create_gateway_app

        listeners.append(
            Listener(
                "gateway",
                create_gateway_app(settings, database),
                settings.gateway_host,
                settings.gateway_port,
            )
        )
    if reconciler:
        from controller.reconciler.loop import Reconciler

        jobs.append(Reconciler(settings, database).run)
        if not api:
            listeners.append(
                Listener(
                    "reconciler",
                    create_health_app(settings, database),
                    settings.reconciler_host,
                    settings.reconciler_port,
                )
            )

    def started() -> None:
        mode = "open, loopback only" if not settings.all_tokens() else "tokens required"
        for listener in listeners:
            output.console.print(
                f"Shelf {listener.name} on http://{listener.host}:{listener.port} ({mode})",
                highlight=False,
            )
        if reconciler:
            output.console.print("Shelf reconciler running", highlight=False)
        output.console.print(
            f"  database {redact(settings.resolved_database_url)}, "
            f"artifacts {settings.resolved_artifact_uri}",
            highlight=False,
        )

    try:
        run(listeners, jobs, on_started=started)
    finally:
        database.dispose()


@click.command()
@click.option("--host", help="API bind address [SHELF_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="API port [SHELF_PORT, default 8000]")
@click.option("--gateway-port", type=int, help="Gateway port [SHELF_GATEWAY_PORT, default 8080]")
def server(host: str | None, port: int | None, gateway_port: int | None) -> None:
    """Run Shelf all-in-one: registry API, gateway and reconciler in one process."""
    settings = load_settings(host=host, port=port, gateway_port=gateway_port)
    _run_roles(settings, api=True, gateway=True, reconciler=True)


@click.command()
@click.option("--host", help="Bind address [SHELF_HOST]")
@click.option("--port", type=int, help="Port [SHELF_PORT, default 8000]")
def api(host: str | None, port: int | None) -> None:
    """Run only the registry and rollout API (production role)."""
    _run_roles(load_settings(host=host, port=port), api=True, gateway=False, reconciler=False)


@click.command()
@click.option("--host", help="Bind address [SHELF_GATEWAY_HOST]")
@click.option("--port", type=int, help="Port [SHELF_GATEWAY_PORT, default 8080]")
def gateway(host: str | None, port: int | None) -> None:
    """Run only the gateway: the data plane that splits, mirrors and measures traffic."""
    settings = load_settings(gateway_host=host, gateway_port=port)
    _run_roles(settings, api=False, gateway=True, reconciler=False)


@click.command()
@click.option("--host", help="Probe/metrics bind address [SHELF_RECONCILER_HOST]")
@click.option("--port", type=int, help="Probe/metrics port [SHELF_RECONCILER_PORT, default 8090]")
def reconciler(host: str | None, port: int | None) -> None:
    """Run only the reconciler (leader-elected; run two for a hot standby)."""
    settings = load_settings(reconciler_host=host, reconciler_port=port)
    _run_roles(settings, api=False, gateway=False, reconciler=True)


def redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


@click.group()
def db() -> None:
    """Database migrations (PostgreSQL deployments run 'shelf db upgrade' before starting)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database in SHELF_DATABASE_URL up to REVISION."""
    from registry.db import migrate

    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.resolved_database_url, revision)
    output.console.print(f"database at {migrate.current(settings.resolved_database_url)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' empties it)."""
    from registry.db import migrate

    settings = load_settings()
    migrate.downgrade(settings.resolved_database_url, revision)
    output.console.print(f"database at {migrate.current(settings.resolved_database_url) or 'base'}")


@db.command("current")
def db_current() -> None:
    """Print the database's schema revision and the newest one this Shelf knows."""
    from registry.db import migrate

    settings = load_settings()
    current = migrate.current(settings.resolved_database_url)
    output.console.print(f"current {current or 'base'}, head {migrate.head_revision()}")


COMMANDS = [server, api, gateway, reconciler, db]
