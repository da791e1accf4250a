"""Versions: registered once from a manifest of blobs, immutable afterwards except for
tags, description and status."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from registry.db.tables import Alias, Model, ModelVersion, VersionFile
from registry.errors import Conflict, InvalidInput, NotFound
from registry.names import Reference, check_manifest_path, check_tags
from registry.services import audit
from registry.services.blobs import known_sizes
from registry.services.lookup import get_model, get_or_create_model
from registry.storage.base import DIGEST_RE

STATUSES = ("ready", "archived")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    digest: str


@dataclass(frozen=True)
class VersionSpec:
    """Everything recorded at registration besides the files."""

    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    source_uri: str | None = None
    git_commit: str | None = None
    run_id: str | None = None
    data_window_start: datetime | None = None
    data_window_end: datetime | None = None
    serving_url: str | None = None
    reference_profile: dict[str, Any] | None = None


def manifest_digest(files: list[FileEntry]) -> str:
    """sha256 of the canonical manifest: two versions with the same files share it."""
    canonical = json.dumps(
        [[f.path, f.size, f.digest] for f in sorted(files, key=lambda f: f.path)],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_manifest(files: list[FileEntry]) -> None:
    if not files:
        raise InvalidInput("a version needs at least one file")
    seen: set[str] = set()
    for entry in files:
        check_manifest_path(entry.path)
        if entry.path in seen:
            raise InvalidInput(f"file path {entry.path!r} appears twice in the manifest")
        seen.add(entry.path)
        if not DIGEST_RE.match(entry.digest):
            raise InvalidInput(f"invalid sha256 digest {entry.digest!r} for {entry.path!r}")
        if entry.size < 0:
            raise InvalidInput(f"negative size for {entry.path!r}")
    prefixes = {"/".join(p.split("/")[:i]) for p in seen for i in range(1, p.count("/") + 1)}
    clash = seen & prefixes
    if clash:
        raise InvalidInput(f"{sorted(clash)[0]!r} is both a file and a directory in the manifest")


def _check_spec(spec: VersionSpec) -> None:
    check_tags(spec.tags)
    start, end = spec.data_window_start, spec.data_window_end
    if start is not None and end is not None and start > end:
        raise InvalidInput("the training-data window starts after it ends")
    if spec.serving_url is not None and not spec.serving_url.startswith(("http://", "https://")):
        raise InvalidInput(f"serving URL {spec.serving_url!r} must start with http:// or https://")


def register_version(
    session: Session, name: str, files: list[FileEntry], spec: VersionSpec, actor: str
) -> ModelVersion:
    """All blobs must already be uploaded (and recorded); the version appears atomically."""
    _check_manifest(files)
    _check_spec(spec)
    sizes = known_sizes(session, sorted({f.digest for f in files}))
    for entry in files:
        if entry.digest not in sizes:
            raise Conflict(
                f"blob {entry.digest} for {entry.path!r} has not been uploaded", digest=entry.digest
            )
        if sizes[entry.digest] != entry.size:
            raise InvalidInput(
                f"{entry.path!r}: size {entry.size} does not match the uploaded blob "
                f"({sizes[entry.digest]} bytes)"
            )
    model = get_or_create_model(session, name, actor)
    # An UPDATE takes the write lock first, so concurrent registrations get distinct numbers.
    number = (
        session.execute(
            update(Model)
            .where(Model.id == model.id)
            .values(next_version=Model.next_version + 1)
            .returning(Model.next_version)
        ).scalar_one()
        - 1
    )
    version = ModelVersion(
        model_id=model.id,
        version=number,
        status="ready",
        description=spec.description,
        tags=dict(spec.tags),
        source_uri=spec.source_uri,
        git_commit=spec.git_commit,
        run_id=spec.run_id,
        data_window_start=spec.data_window_start,
        data_window_end=spec.data_window_end,
        serving_url=spec.serving_url,
        reference_profile=spec.reference_profile,
        manifest_digest=manifest_digest(files),
        total_size=sum(f.size for f in files),
        file_count=len(files),
        created_by=actor,
    )
    session.add(version)
    session.flush()
    session.add_all(
        VersionFile(version_id=version.id, path=f.path, size=f.size, digest=f.digest) for f in files
    )
    session.flush()
    audit.record(
        session,
        "version.registered",
        actor,
        model,
        version=number,
        manifest_digest=version.manifest_digest,
        files=len(files),
        total_size=version.total_size,
    )
    version.model = model
    return version


def resolve(session: Session, ref: Reference, with_files: bool = False) -> ModelVersion:
    """The version a reference names: a number, an alias, or the latest ready version."""
    model = get_model(session, ref.model)
    query = select(ModelVersion).where(ModelVersion.model_id == model.id)
    if with_files:
        query = query.options(selectinload(ModelVersion.files))
    if ref.version is not None:
        query = query.where(ModelVersion.version == ref.version)
    elif ref.alias is not None:
        query = query.join(Alias, Alias.version_id == ModelVersion.id).where(
            Alias.model_id == model.id, Alias.name == ref.alias
        )
    else:
        query = (
            query.where(ModelVersion.status == "ready")
            .order_by(ModelVersion.version.desc())
            .limit(1)
        )
    version = session.scalar(query)
    if version is None:
        if ref.alias is not None:
            what = f"has no alias {ref.alias!r}"
        elif ref.version is not None:
            what = f"has no version {ref.version}"
        else:
            what = "has no ready version"
        raise NotFound(f"model {ref.model!r} {what}", model=ref.model, ref=str(ref))
    return version


def list_versions(
    session: Session,
    name: str,
    limit: int,
    before_version: int | None = None,
    tags: dict[str, str] | None = None,
    status: str | None = None,
) -> tuple[list[ModelVersion], int]:
    """Newest first; page with ``before_version``. Returns the page and the filtered total."""
    model = get_model(session, name)
    conditions = [ModelVersion.model_id == model.id]
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        conditions.append(ModelVersion.status == status)
    candidates = (
        list(
            session.scalars(
                select(ModelVersion).where(*conditions).order_by(ModelVersion.version.desc())
            )
        )
        if tags
        else None
    )
    if candidates is not None:
        # Tag filters run in Python: JSON containment differs between SQLite and PostgreSQL,
        # and a model's version count is small next to what a page costs to render.
        matching = [
            v for v in candidates if all(v.tags.get(k) == val for k, val in (tags or {}).items())
        ]
        total = len(matching)
        if before_version is not None:
            matching = [v for v in matching if v.version < before_version]
        return matching[:limit], total
    total = session.scalar(select(func.count()).select_from(ModelVersion).where(*conditions)) or 0
    query = select(ModelVersion).where(*conditions).order_by(ModelVersion.version.desc())
    if before_version is not None:
        query = query.where(ModelVersion.version < before_version)
    return list(session.scalars(query.limit(limit))), total


def update_version(
    session: Session,
    ref: Reference,
    actor: str,
    description: str | None = None,
    status: str | None = None,
    set_tags: dict[str, str] | None = None,
    remove_tags: list[str] | None = None,
) -> ModelVersion:
    """Only the mutable fields; files, digests and lineage never change."""
    version = resolve(session, ref)
    changes: dict[str, Any] = {}
    if description is not None and description != version.description:
        changes["description"] = {"from": version.description, "to": description}
        version.description = description
    if status is not None and status != version.status:
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        changes["status"] = {"from": version.status, "to": status}
        version.status = status
    if set_tags or remove_tags:
        tags = dict(version.tags)
        tags.update(check_tags(set_tags or {}))
        for key in remove_tags or []:
            tags.pop(key, None)
        if tags != version.tags:
            changes["tags"] = {"from": version.tags, "to": tags}
            version.tags = tags
    if changes:
        session.flush()
        audit.record(
            session, "version.updated", actor, version.model, version=version.version, **changes
        )
    return version


def files_of(session: Session, version: ModelVersion) -> list[VersionFile]:
    return list(
        session.scalars(
            select(VersionFile)
            .where(VersionFile.version_id == version.id)
            .order_by(VersionFile.path)
        )
    )
