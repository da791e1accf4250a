"""The registry's HTTP app: its routes, error handling and process context.

The registry contributes this app; the composition root (``shelf.app``) adds the controller's
routes and metrics to it. Nothing here knows about rollouts."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from registry import __version__
from registry.api import admin, aliases, blobs, events, health, versions
from registry.api.deps import AppContext
from registry.api.errors import ERROR_RESPONSES, install_error_handlers
from registry.api.limits import BodyLimits, RequestLimits
from registry.auth import Authenticator
from registry.config import Settings
from registry.db.session import Database
from registry.storage.base import ArtifactStore
from registry.storage.factory import open_store

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    blobs.router,
    versions.router,
    aliases.router,
    events.router,
    admin.router,
)


def create_registry_app(
    settings: Settings,
    database: Database | None = None,
    store: ArtifactStore | None = None,
    *,
    routers: tuple[APIRouter, ...] = ROUTERS,
    title: str = "Shelf",
    openapi: bool = True,
) -> FastAPI:
    """An app serving ``routers`` (default: the registry's) over one database and store."""
    app = FastAPI(
        title=title,
        version=__version__,
        description="Versioned, content-addressed model registry with canary/shadow rollouts "
        "judged by anytime-valid sequential tests.",
        openapi_url="/openapi.json" if openapi else None,
        responses=ERROR_RESPONSES,
    )
    app.state.shelf = AppContext(
        settings=settings,
        database=database or Database(settings.resolved_database_url),
        store=store or open_store(settings),
        authenticator=Authenticator(settings.all_tokens()),
    )
    install_error_handlers(app)
    app.add_middleware(RequestLimits, limits=BodyLimits.of(settings))
    for router in routers:
        app.include_router(router)
    return app
