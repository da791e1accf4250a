"""The HTTP API: the registry's routes plus the controller's rollout and webhook routes.

This module is the one place where the registry's API and the controller's meet: the CLI and
the roles serve this one application."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from registry import __version__
from registry.api import blobs, health, models
from registry.api.deps import AppContext
from registry.api.errors import install_error_handlers
from registry.auth import Authenticator
from registry.config import Settings
from registry.db.session import Database
from registry.storage.base import ArtifactStore


def create_app(
    settings: Settings, database: Database | None = None, store: ArtifactStore | None = None
) -> FastAPI:
    from controller.api import rollouts, webhooks
    from registry.storage.factory import open_store

    app = FastAPI(
        title="Shelf",
        version=__version__,
        description="Versioned, content-addressed model registry with canary/shadow rollouts "
        "judged by anytime-valid sequential tests.",
    )
    app.state.shelf = AppContext(
        settings=settings,
        database=database or Database(settings.resolved_database_url),
        store=store or open_store(settings),
        authenticator=Authenticator(settings.all_tokens()),
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(blobs.router)
    app.include_router(models.router)
    app.include_router(rollouts.router)
    app.include_router(webhooks.router)
    app.mount("/metrics", make_asgi_app())
    return app


def create_health_app(settings: Settings, database: Database) -> FastAPI:
    """Probes and metrics only: what the reconciler role serves."""
    from registry.storage.factory import open_store

    app = FastAPI(title="Shelf reconciler", version=__version__, openapi_url=None)
    app.state.shelf = AppContext(
        settings=settings,
        database=database,
        store=open_store(settings),
        authenticator=Authenticator(settings.all_tokens()),
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.mount("/metrics", make_asgi_app())
    return app
