"""Blob upload: streamed, verified against the client's digest, committed atomically."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from registry.api.body import RequestBody
from registry.api.deps import AppContext, caller, context, requires
from registry.api.schemas import DIGEST_PATTERN, BlobOut, DigestList, MissingBlobs
from registry.auth import Principal
from registry.config import Role
from registry.errors import InvalidInput
from registry.services.blobs import known_sizes, record_blob
from registry.storage.base import DIGEST_LENGTH, DIGEST_RE, BlobWriter, Buffer
from registry.storage.buffers import PartBuffers

router = APIRouter(prefix="/v1/blobs", tags=["blobs"])

# Bytes gathered before handing them to a worker thread: large enough that the thread hop is
# cheap next to hashing and writing, small enough to keep the server's memory flat.
WRITE_BATCH = 4 * 1024 * 1024
# What a body is read into where the server offers it: two per upload, kept for the next.
_RECEIVE_BUFFERS = PartBuffers(WRITE_BATCH, keep=4)


def _check_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise InvalidInput(f"invalid sha256 digest {digest!r}: expected 64 lowercase hex digits")
    return digest


@router.post("/missing", response_model=MissingBlobs)
def missing_blobs(
    body: DigestList, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> MissingBlobs:
    """Which of these digests the registry does not hold yet (so clients upload only those),
    and how best to send them to this registry's artifact store."""
    digests = sorted({_check_digest(d) for d in body.digests})
    with ctx.database.session() as session:
        known = known_sizes(session, digests)
    return MissingBlobs(
        missing=[d for d in digests if d not in known],
        send_digest_first=not ctx.store.digest_last_is_cheap,
    )


@router.put("/{digest}", response_model=BlobOut, status_code=201)
async def upload_blob(
    digest: Annotated[str, Path(pattern=DIGEST_PATTERN, description="sha256 of the content")],
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
        with RequestBody(request, _RECEIVE_BUFFERS) as content:
            await _write_all(writer, content.pieces())
        stored_size = await asyncio.to_thread(writer.commit)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(writer.abort))
        raise
    await asyncio.to_thread(_remember, ctx, digest, stored_size)
    body = BlobOut(digest=digest, size=stored_size, created=True)
    return JSONResponse(body.model_dump(), status_code=201)


@router.post("", response_model=BlobOut, status_code=201)
async def upload_blob_digest_last(
    request: Request,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(requires(Role.publish)),
) -> JSONResponse:
    """Upload whose sha256 follows the content: the body is ``X-Shelf-Size`` bytes of content,
    then the 64 hex digits of their sha256. A client can hash and send in one pass instead of
    reading the file twice; the blob is verified and committed atomically, as with PUT."""
    promised = request.headers.get("x-shelf-size", "")
    if not promised.isdigit():
        raise InvalidInput("X-Shelf-Size (the content's size in bytes) is required")
    size = int(promised)
    writer = await asyncio.to_thread(ctx.store.open_writer, None, size)
    try:
        with RequestBody(request, _RECEIVE_BUFFERS) as content:
            await _write_all(writer, content.pieces(limit=size))
            trailer = await content.rest(DIGEST_LENGTH + 1)
        if len(trailer) != DIGEST_LENGTH:
            raise InvalidInput(
                f"body must be X-Shelf-Size ({size}) bytes followed by a 64-digit sha256"
            )
        digest = _check_digest(trailer.decode("ascii", "replace"))
        stored_size = await asyncio.to_thread(writer.commit, digest)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(writer.abort))
        raise
    await asyncio.to_thread(_remember, ctx, digest, stored_size)
    body = BlobOut(digest=digest, size=stored_size, created=True)
    return JSONResponse(body.model_dump(), status_code=201)


async def _write_all(writer: BlobWriter, chunks: AsyncIterator[Buffer]) -> None:
    """Feeds ``writer`` on a worker thread in batches while the next batch arrives. A batch is
    the list of chunks as received, never joined: the store copies each byte at most once.
    A chunk of ``WRITE_BATCH`` bytes is handed on before the next is asked for, and handed
    back (written) before the one after: ``RequestBody`` reuses its buffers on that basis."""
    pending: asyncio.Future[None] | None = None
    batch: list[Buffer] = []
    batched = 0
    try:
        async for chunk in chunks:
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(writer.write_many, batch))
                batch, batched = [], 0
    except BaseException:
        # The caller aborts the writer next: let the batch being written finish first, so
        # nothing (a part, a multipart upload) reaches the store after the abort.
        if pending is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)
        raise
    if pending is not None:
        await pending
    if batch:
        await asyncio.to_thread(writer.write_many, batch)


def _remember(ctx: AppContext, digest: str, size: int) -> None:
    with ctx.database.session() as session:
        record_blob(session, digest, size)
