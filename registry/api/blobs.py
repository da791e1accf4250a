"""Blob upload: streamed, verified against the client's digest, committed atomically."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from registry.api.deps import AppContext, caller, context, requires
from registry.api.schemas import BlobOut, DigestList, MissingBlobs
from registry.auth import Principal
from registry.config import Role
from registry.errors import InvalidInput
from registry.services.blobs import known_sizes, record_blob
from registry.storage.base import DIGEST_RE

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])

# Bytes gathered before handing them to a worker thread: large enough that the thread hop is
# cheap next to hashing and writing, small enough to keep the server's memory flat.
WRITE_BATCH = 4 * 1024 * 1024


def _check_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise InvalidInput(f"invalid sha256 digest {digest!r}: expected 64 lowercase hex digits")
    return digest


@router.post("/missing", response_model=MissingBlobs)
def missing_blobs(
    body: DigestList, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> MissingBlobs:
    """Which of these digests the registry does not hold yet (so clients upload only those)."""
    digests = sorted({_check_digest(d) for d in body.digests})
    with ctx.database.session() as session:
        known = known_sizes(session, digests)
    return MissingBlobs(missing=[d for d in digests if d not in known])


@router.put("/{digest}", response_model=BlobOut, status_code=201)
async def upload_blob(
    digest: str,
    request: Request,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(requires(Role.publish)),
) -> JSONResponse:
    _check_digest(digest)
    promised = request.headers.get("x-shelf-size") or request.headers.get("content-length")
    size = int(promised) if promised and promised.isdigit() else None

    def already_known() -> int | None:
        with ctx.database.session() as session:
            return known_sizes(session, [digest]).get(digest)

    existing = await asyncio.to_thread(already_known)
    if existing is not None and ctx.store.has_blob(digest):
        return JSONResponse(BlobOut(digest=digest, size=existing, created=False).model_dump())

    writer = await asyncio.to_thread(ctx.store.open_writer, digest, size)
    try:
        pending: asyncio.Future[None] | None = None
        batch = bytearray()
        async for chunk in request.stream():
            batch += chunk
            if len(batch) >= WRITE_BATCH:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(writer.write, bytes(batch)))
                batch.clear()
        if pending is not None:
            await pending
        if batch:
            await asyncio.to_thread(writer.write, bytes(batch))
        stored_size = await asyncio.to_thread(writer.commit)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(writer.abort))
        raise

    def remember() -> None:
        with ctx.database.session() as session:
            record_blob(session, digest, stored_size)

    await asyncio.to_thread(remember)
    body = BlobOut(digest=digest, size=stored_size, created=True)
    return JSONResponse(body.model_dump(), status_code=201)
