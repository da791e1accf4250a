"""Models and their versions: register, list, read, update, download files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.api.deps import AppContext, caller, context, requires
from registry.api.paging import PAGE_MAX, page_token_value
from registry.api.params import ModelName, ModelPageToken, PageToken, VersionNumber, VersionRef
from registry.api.schemas import (
    ModelOut,
    ModelPage,
    VersionCreate,
    VersionOut,
    VersionPage,
    VersionPatch,
)
from registry.auth import Principal
from registry.config import Role
from registry.db.tables import Model, ModelVersion
from registry.errors import InvalidInput, NotFound
from registry.names import FILE_PATH_PATTERN, MAX_PATH_LENGTH, Reference, check_manifest_path
from registry.services import aliases, versions
from registry.services.lookup import get_model, list_models

router = APIRouter(prefix="/v1", tags=["models"])


def _aliases_by_version(session: Session, model: Model) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    for row in aliases.list_aliases(session, model):
        result.setdefault(row.version_id, []).append(row.name)
    return result


def _version_out(session: Session, row: ModelVersion, with_files: bool = False) -> VersionOut:
    names = _aliases_by_version(session, row.model).get(row.id, [])
    files = versions.files_of(session, row) if with_files else None
    return VersionOut.of(row, names, files)


def _reference(name: str, ref: str) -> Reference:
    return Reference.parse(f"{name}@{ref}")


def _model_out(session: Session, model: Model) -> ModelOut:
    latest = session.scalar(
        select(ModelVersion.version)
        .where(ModelVersion.model_id == model.id)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    return ModelOut(
        name=model.name,
        description=model.description,
        created_at=model.created_at,
        created_by=model.created_by,
        latest_version=latest,
        aliases={a.name: a.version.version for a in aliases.list_aliases(session, model)},
    )


@router.get("/models", response_model=ModelPage)
def get_models(
    limit: int = Query(100, ge=1, le=PAGE_MAX),
    page_token: ModelPageToken = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> ModelPage:
    with ctx.database.session() as session:
        rows = list_models(session, limit + 1, page_token)
        items = [_model_out(session, m) for m in rows[:limit]]
    return ModelPage(
        items=items, next_page_token=rows[limit - 1].name if len(rows) > limit else None
    )


@router.get("/models/{name}", response_model=ModelOut)
def get_one_model(
    name: ModelName, ctx: AppContext = Depends(context), _: Principal = Depends(caller)
) -> ModelOut:
    with ctx.database.session() as session:
        return _model_out(session, get_model(session, name))


@router.post("/models/{name}/versions", response_model=VersionOut, status_code=201)
def create_version(
    name: ModelName,
    body: VersionCreate,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.publish)),
) -> VersionOut:
    if body.serving_url is not None:
        ctx.settings.outbound_policy().check_url(body.serving_url, "serving URL")
    files = [versions.FileEntry(f.path, f.size, f.digest) for f in body.files]
    spec = versions.VersionSpec(
        description=body.description,
        tags=body.tags,
        source_uri=body.source_uri,
        git_commit=body.git_commit,
        run_id=body.run_id,
        data_window_start=body.data_window_start,
        data_window_end=body.data_window_end,
        serving_url=body.serving_url,
        reference_profile=body.reference_profile,
    )
    with ctx.database.session() as session:
        row = versions.register_version(session, name, files, spec, who.name)
        return _version_out(session, row, with_files=True)


@router.get("/models/{name}/versions", response_model=VersionPage)
def get_versions(
    name: ModelName,
    limit: int = Query(50, ge=1, le=PAGE_MAX),
    page_token: PageToken = None,
    tag: list[Annotated[str, Query(pattern=r"^[^=]+=")]] = Query(
        default=[], description="key=value; repeat to require several"
    ),
    status: str | None = None,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> VersionPage:
    tags = {}
    for item in tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"invalid tag filter {item!r}: expected key=value")
        tags[key] = value
    with ctx.database.session() as session:
        rows, total = versions.list_versions(
            session, name, limit + 1, page_token_value(page_token), tags, status
        )
        by_version = _aliases_by_version(session, get_model(session, name))
        items = [VersionOut.of(r, by_version.get(r.id, [])) for r in rows[:limit]]
    next_token = str(rows[limit - 1].version) if len(rows) > limit else None
    return VersionPage(items=items, total=total, next_page_token=next_token)


@router.get("/models/{name}/versions/{ref}", response_model=VersionOut)
def get_version(
    name: ModelName,
    ref: VersionRef,
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
) -> VersionOut:
    """``ref`` is a version number, an alias, or ``latest``."""
    with ctx.database.session() as session:
        row = versions.resolve(session, _reference(name, ref))
        return _version_out(session, row, with_files=True)


@router.patch("/models/{name}/versions/{version}", response_model=VersionOut)
def patch_version(
    name: ModelName,
    version: VersionNumber,
    body: VersionPatch,
    ctx: AppContext = Depends(context),
    who: Principal = Depends(requires(Role.publish)),
) -> VersionOut:
    with ctx.database.session() as session:
        row = versions.update_version(
            session,
            Reference(name, version=version),
            who.name,
            description=body.description,
            status=body.status,
            set_tags=body.tags,
            remove_tags=body.remove_tags,
        )
        return _version_out(session, row, with_files=True)


@router.get("/models/{name}/versions/{ref}/files/{path:path}")
def download_file(
    name: ModelName,
    ref: VersionRef,
    path: Annotated[str, Path(pattern=FILE_PATH_PATTERN, max_length=MAX_PATH_LENGTH)],
    ctx: AppContext = Depends(context),
    _: Principal = Depends(caller),
    x_shelf_verify: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Streams one file; the stream is cut (never completed) if the stored bytes are corrupt.
    A client that checks the file's size and sha256 itself says so (``X-Shelf-Verify:
    client``, as ``shelf download`` does) and is spared the server's own hashing."""
    check_manifest_path(path)
    with ctx.database.session() as session:
        row = versions.resolve(session, _reference(name, ref))
        entry = next((f for f in versions.files_of(session, row) if f.path == path), None)
        if entry is None:
            raise NotFound(f"{name}@{row.version} has no file {path!r}")
        digest, size, number = entry.digest, entry.size, row.version

    def chunks() -> Iterator[bytes]:
        yield from ctx.store.read_blob(digest, verified=x_shelf_verify != "client")

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "ETag": f'"sha256:{digest}"',
            "X-Shelf-Digest": f"sha256:{digest}",
            "X-Shelf-Version": str(number),
        },
    )
