"""What every route needs: the process context (settings, database, store, auth), the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from registry.auth import Authenticator, Principal
from registry.config import Role, Settings
from registry.db.session import Database
from registry.storage.base import ArtifactStore


@dataclass
class AppContext:
    settings: Settings
    database: Database
    store: ArtifactStore
    authenticator: Authenticator


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.shelf
    return ctx


def caller(request: Request) -> Principal:
    """The authenticated caller with at least the read role."""
    ctx = context(request)
    principal = ctx.authenticator.authenticate(
        request.headers.get("authorization"), request.headers.get("x-shelf-actor")
    )
    return principal.require(Role.read)


def requires(role: Role) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        return caller(request).require(role)

    dependency.__name__ = f"requires_{role.name}"
    return dependency
