"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from registry import __version__
from registry.api.deps import AppContext, context

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz")
async def readyz(ctx: AppContext = Depends(context)) -> JSONResponse:
    checks: dict[str, str] = {}

    def database() -> None:
        with ctx.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    for name, probe in (("database", database), ("artifact_store", ctx.store.check)):
        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout=5)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {exc}".splitlines()[0][:300]
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
