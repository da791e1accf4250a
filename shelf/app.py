"""The HTTP apps Shelf serves, assembled from both packages: the registry contributes its
app and routes, the controller its rollout and webhook routes; Prometheus metrics on top."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from controller.api.routers import ROUTERS as CONTROLLER_ROUTERS
from registry.api import health
from registry.api.app import ROUTERS as REGISTRY_ROUTERS
from registry.api.app import create_registry_app
from registry.config import Settings
from registry.db.session import Database
from registry.storage.base import ArtifactStore


def create_app(
    settings: Settings, database: Database | None = None, store: ArtifactStore | None = None
) -> FastAPI:
    """The API role: registry and rollout routes, probes, ``/metrics``."""
    app = create_registry_app(
        settings, database, store, routers=REGISTRY_ROUTERS + CONTROLLER_ROUTERS
    )
    app.mount("/metrics", make_asgi_app())
    return app


def create_health_app(settings: Settings, database: Database) -> FastAPI:
    """Probes and metrics only: what the reconciler role serves."""
    app = create_registry_app(
        settings, database, routers=(health.router,), title="Shelf reconciler", openapi=False
    )
    app.mount("/metrics", make_asgi_app())
    return app
