"""Maintenance an admin triggers over the API (so the CLI works against a remote server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from registry.api.deps import AppContext, context, requires
from registry.auth import Principal
from registry.config import Role
from registry.services import audit
from registry.services.gc import collect_garbage
from registry.storage.base import StoredItem

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class GcRequest(BaseModel):
    model_config = {"extra": "forbid"}

    apply: bool = Field(default=False, description="Remove; without it, only list (dry run)")
    grace_s: float | None = Field(
        default=None,
        ge=0,
        le=10 * 365 * 86400,
        description="Keep anything younger (default SHELF_GC_GRACE_S)",
    )


class GcItem(BaseModel):
    name: str
    size: int
    modified_at: datetime

    @classmethod
    def of(cls, item: StoredItem) -> GcItem:
        return cls(name=item.name, size=item.size, modified_at=item.modified_at)


class GcOut(BaseModel):
    applied: bool
    grace_s: float
    blobs: list[GcItem]
    uploads: list[GcItem]
    blob_bytes: int
    upload_bytes: int


@router.post("/gc", response_model=GcOut)
def gc(
    body: GcRequest,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.admin)),
) -> GcOut:
    """Blobs no version references and leftovers of unfinished uploads, older than the grace
    period: listed, and with ``apply`` removed (an audit event records what)."""
    grace = timedelta(seconds=ctx.settings.gc_grace_s if body.grace_s is None else body.grace_s)
    report = collect_garbage(ctx.database, ctx.store, grace, datetime.now(UTC), body.apply)
    if body.apply and (report.blobs or report.uploads):
        with ctx.database.session() as session:
            audit.record(
                session,
                "store.collected",
                who.name,
                None,
                blobs=len(report.blobs),
                blob_bytes=report.blob_bytes,
                uploads=len(report.uploads),
                upload_bytes=report.upload_bytes,
            )
    return GcOut(
        applied=report.applied,
        grace_s=report.grace_s,
        blobs=[GcItem.of(i) for i in report.blobs],
        uploads=[GcItem.of(i) for i in report.uploads],
        blob_bytes=report.blob_bytes,
        upload_bytes=report.upload_bytes,
    )
