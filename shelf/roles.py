"""The process roles: ``shelf server`` (all-in-one) and ``shelf api|gateway|reconciler``
(production), each assembled here from both packages' parts."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from controller.config import ControllerSettings
from controller.gateway.app import create_gateway_app
from controller.gateway.server import GatewayServer, ServerLimits
from controller.reconciler.loop import Reconciler
from registry.cli import output
from registry.db.session import Database
from registry.errors import InvalidInput
from registry.heap import keep_freed_memory
from registry.services.gc import remove_abandoned_uploads
from registry.storage.factory import open_store
from shelf import migrate
from shelf.app import create_app, create_health_app
from shelf.body_into import ReceiveIntoProtocol
from shelf.http_limits import HeaderLimits
from shelf.runner import Listener, run


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


def check_open_mode(settings: ControllerSettings, *hosts: str) -> None:
    """Without tokens the API is open, which is only acceptable where nobody else can reach it."""
    if settings.all_tokens():
        return
    exposed = [h for h in hosts if not is_loopback(h)]
    if exposed:
        raise InvalidInput(
            f"refusing to listen on {exposed[0]} without tokens: configure SHELF_TOKENS "
            "(see README, 'Authentication') or bind 127.0.0.1"
        )


def prepare_database(settings: ControllerSettings) -> None:
    """The embedded SQLite is upgraded in place; any other database must already be at head."""
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


def _limits(settings: ControllerSettings, max_connections: int) -> dict[str, Any]:
    """The connection limits of one listener (docs/security.md, "Limits")."""
    return {
        "max_connections": max_connections,
        "header_limits": HeaderLimits(
            settings.max_header_bytes, settings.max_headers, settings.header_timeout_s
        ),
        "keep_alive_timeout_s": settings.keep_alive_timeout_s,
    }


def gateway_server(listener: Listener) -> GatewayServer:
    """The gateway's own HTTP/1.1 server for its listener, with the listener's limits."""
    limits = ServerLimits(
        max_connections=listener.max_connections,
        max_header_bytes=listener.header_limits.max_header_bytes,
        max_headers=listener.header_limits.max_headers,
        header_timeout_s=listener.header_limits.header_timeout_s,
        keep_alive_timeout_s=listener.keep_alive_timeout_s,
    )
    return GatewayServer(listener.app, listener.host, listener.port, limits)


def run_roles(
    settings: ControllerSettings,
    api: bool,
    gateway: bool,
    reconciler: bool,
    gateway_sock: socket.socket | None = None,
) -> None:
    """Serve the chosen roles from this process until SIGINT/SIGTERM (the gateway on
    ``gateway_sock`` when given: a worker's inherited socket)."""
    if api:
        check_open_mode(settings, settings.host)
    prepare_database(settings)
    database = Database(settings.resolved_database_url)
    listeners: list[Listener] = []
    jobs = []
    if api:
        keep_freed_memory()  # uploads stream through this process (registry/heap.py says why)
        store = open_store(settings)
        removed = remove_abandoned_uploads(store)
        if removed:
            output.console.print(
                f"removed {len(removed)} files of uploads a stopped server left unfinished "
                f"({sum(item.size for item in removed)} bytes)",
                highlight=False,
            )
        listeners.append(
            Listener(
                "api",
                create_app(settings, database, store),
                settings.host,
                settings.port,
                **_limits(settings, settings.max_connections),
                protocol_mixins=(ReceiveIntoProtocol,),  # uploads read into the store's batches
            )
        )
    if gateway:
        listeners.append(
            Listener(
                "gateway",
                create_gateway_app(settings, database),
                settings.gateway_host,
                settings.gateway_port,
                **_limits(settings, settings.gateway_max_client_connections),
                sock=gateway_sock,
                server=gateway_server,
            )
        )
    if reconciler:
        jobs.append(Reconciler(settings, database).run)
        if not api:
            listeners.append(
                Listener(
                    "reconciler",
                    create_health_app(settings, database),
                    settings.reconciler_host,
                    settings.reconciler_port,
                    **_limits(settings, settings.reconciler_max_connections),
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


def redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url
