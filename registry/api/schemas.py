"""Request and response bodies of the registry API."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from registry.db.tables import Alias, AuditEvent, Model, ModelVersion, VersionFile
from registry.errors import InvalidInput
from registry.json_depth import value_depth
from registry.names import FILE_PATH_PATTERN, MAX_NUMBER, TAG_KEY_PATTERN
from registry.profiles import parse_profile

log = logging.getLogger("shelf.api")

DIGEST_PATTERN = r"^[0-9a-f]{64}$"


def _as_utc(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntryIn(Strict):
    path: str = Field(min_length=1, max_length=1024, pattern=FILE_PATH_PATTERN)
    size: int = Field(ge=0, le=2**63 - 1)
    digest: str = Field(pattern=DIGEST_PATTERN)


TagKey = Annotated[str, Field(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, Field(max_length=1024)]
# Stated as propertyNames (pydantic's default, patternProperties, would let other keys pass).
Tags = Annotated[
    dict[TagKey, TagValue],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": TAG_KEY_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": 1024},
        }
    ),
]


class VersionCreate(Strict):
    files: list[FileEntryIn] = Field(min_length=1, max_length=100_000)
    description: str = Field(default="", max_length=10_000)
    tags: Tags = Field(default_factory=dict)
    source_uri: str | None = Field(default=None, max_length=2048)
    git_commit: str | None = Field(default=None, max_length=64)
    run_id: str | None = Field(default=None, max_length=256)
    data_window_start: datetime | None = None
    data_window_end: datetime | None = None
    serving_url: str | None = Field(default=None, max_length=2048)
    reference_profile: dict[str, Any] | None = None

    @field_validator("reference_profile", mode="after")
    @classmethod
    def _profile_is_readable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            return parse_profile(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    @field_validator("data_window_start", "data_window_end", mode="before")
    @classmethod
    def _dates_are_utc(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) == 10:
            return _as_utc(date.fromisoformat(value))
        return value

    @field_validator("data_window_start", "data_window_end", mode="after")
    @classmethod
    def _naive_is_utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)


class VersionPatch(Strict):
    description: str | None = Field(default=None, max_length=10_000)
    status: str | None = None
    tags: Tags | None = Field(default=None, description="Tags to set or overwrite")
    remove_tags: list[TagKey] = Field(default_factory=list)


class AliasSet(Strict):
    version: int = Field(ge=1, le=MAX_NUMBER)
    reason: str = Field(default="", max_length=1000)


class DigestList(Strict):
    digests: list[Annotated[str, Field(pattern=DIGEST_PATTERN)]] = Field(max_length=100_000)


class FileOut(BaseModel):
    path: str
    size: int
    digest: str

    @classmethod
    def of(cls, row: VersionFile) -> FileOut:
        return cls(path=row.path, size=row.size, digest=row.digest)


class VersionOut(BaseModel):
    model: str
    version: int
    status: str
    description: str
    tags: dict[str, str]
    aliases: list[str]
    source_uri: str | None
    git_commit: str | None
    run_id: str | None
    data_window_start: datetime | None
    data_window_end: datetime | None
    serving_url: str | None
    reference_profile: dict[str, Any] | None
    manifest_digest: str
    total_size: int
    file_count: int
    created_at: datetime
    created_by: str
    files: list[FileOut] | None = None

    @classmethod
    def of(
        cls, row: ModelVersion, aliases: list[str], files: list[VersionFile] | None = None
    ) -> VersionOut:
        return cls(
            model=row.model.name,
            version=row.version,
            status=row.status,
            description=row.description,
            tags=row.tags,
            aliases=aliases,
            source_uri=row.source_uri,
            git_commit=row.git_commit,
            run_id=row.run_id,
            data_window_start=row.data_window_start,
            data_window_end=row.data_window_end,
            serving_url=row.serving_url,
            reference_profile=readable_profile(row),
            manifest_digest=row.manifest_digest,
            total_size=row.total_size,
            file_count=row.file_count,
            created_at=row.created_at,
            created_by=row.created_by,
            files=[FileOut.of(f) for f in files] if files is not None else None,
        )


# Deeper than any request may now send (SHELF_MAX_JSON_DEPTH <= 100), shallower than where
# pydantic's serializer gives up.
STORED_JSON_MAX_DEPTH = 100


def readable_profile(row: ModelVersion) -> dict[str, Any] | None:
    """The stored reference profile, or None for one stored before bodies had a depth limit and
    too deep to serialize: one such row must not make every listing of its model fail."""
    profile = row.reference_profile
    if profile is not None and value_depth(profile, STORED_JSON_MAX_DEPTH) > STORED_JSON_MAX_DEPTH:
        log.warning(
            "%s@%s: reference profile nests deeper than %d levels; not shown",
            row.model.name,
            row.version,
            STORED_JSON_MAX_DEPTH,
        )
        return None
    return profile


class VersionPage(BaseModel):
    items: list[VersionOut]
    total: int
    next_page_token: str | None


class AliasOut(BaseModel):
    model: str
    alias: str
    version: int
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, model: Model, row: Alias) -> AliasOut:
        return cls(
            model=model.name,
            alias=row.name,
            version=row.version.version,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
        )


class ModelOut(BaseModel):
    name: str
    description: str
    created_at: datetime
    created_by: str
    latest_version: int | None
    aliases: dict[str, int]


class ModelPage(BaseModel):
    items: list[ModelOut]
    next_page_token: str | None


class EventOut(BaseModel):
    id: int
    kind: str
    actor: str
    at: datetime
    model: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEvent, model_name: str | None) -> EventOut:
        return cls(
            id=row.id,
            kind=row.kind,
            actor=row.actor,
            at=row.at,
            model=model_name,
            payload=row.payload,
        )


class EventPage(BaseModel):
    items: list[EventOut]
    next_page_token: str | None


class BlobOut(BaseModel):
    digest: str
    size: int
    created: bool


class MissingBlobs(BaseModel):
    missing: list[str]
    send_digest_first: bool = Field(
        default=False,
        description="Whether clients should hash a file before sending it (PUT "
        "/v1/blobs/{digest}) rather than send its digest last (POST /v1/blobs): true when the "
        "artifact store can publish a digest-last upload only by copying it (S3)",
    )


class ErrorOut(BaseModel):
    error: str
    message: str
    detail: dict[str, Any] = Field(default_factory=dict)
