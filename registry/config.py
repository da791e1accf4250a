"""Settings, loaded once from ``SHELF_*`` environment variables and passed down.

No other module reads the environment: the server, the CLI and the tests build a
``Settings`` (or ``ClientSettings``) and hand it to what needs it.
"""

from __future__ import annotations

import json
from enum import IntEnum
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.outbound import DEFAULT_DENY, OutboundPolicy


class Role(IntEnum):
    """Token roles, ordered: each role may do everything the roles below it may."""

    read = 1
    publish = 2
    deploy = 3
    admin = 4


class TokenSpec(BaseModel):
    """One operator-configured bearer token; ``name`` is who the audit trail records."""

    name: str = Field(min_length=1, max_length=128)
    role: Role
    token: str = Field(min_length=16)

    @field_validator("role", mode="before")
    @classmethod
    def _role_by_name(cls, value: object) -> object:
        if isinstance(value, str) and not value.isdigit():
            try:
                return Role[value]
            except KeyError:
                raise ValueError(
                    f"unknown role {value!r}; expected one of read, publish, deploy, admin"
                ) from None
        return value


class Settings(BaseSettings):
    """The registry's settings: where metadata and artifacts live, who may do what, where the
    API listens. The controller extends them with its own (``controller.config``)."""

    model_config = SettingsConfigDict(env_prefix="SHELF_", extra="ignore")

    home: Path = Field(
        default=Path("~/.shelf"), description="Where the embedded default keeps its data"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in $SHELF_HOME"
    )
    artifact_uri: str | None = Field(default=None, description="file://… or s3://bucket/prefix")
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_multipart_chunk_mb: int = Field(
        default=8, ge=5, le=512, description="Size of each part of a multipart upload to S3"
    )
    s3_upload_concurrency: int = Field(
        default=8,
        ge=1,
        le=32,
        description="Parts of one upload sent to S3 at once (memory: this many parts plus one)",
    )
    s3_max_attempts: int = Field(default=5, ge=1, le=20, description="Tries per S3 request")
    gc_grace_s: float = Field(
        default=24 * 3600.0,
        ge=0,
        description="shelf gc keeps unreferenced blobs and upload leftovers younger than this",
    )
    tokens: list[TokenSpec] = Field(
        default_factory=list, description="JSON list of {name, role, token}"
    )
    tokens_file: Path | None = Field(default=None, description="File holding the same JSON list")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    outbound_allow: list[str] = Field(
        default_factory=list,
        description="JSON list of hosts/networks webhook and serving URLs may target "
        "(empty: any host not denied)",
    )
    outbound_deny: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENY),
        description="JSON list of hosts/networks they may never target (link-local and "
        "metadata addresses by default; checked before the allow list)",
    )

    # Limits on what one request may cost (docs/security.md, "Limits").
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body outside uploads (JSON), refused with 413 unread",
    )
    max_upload_bytes: int = Field(
        default=1024**4, ge=1, description="Largest blob upload, streamed, refused with 413"
    )
    max_json_depth: int = Field(
        default=32, ge=2, le=100, description="Deepest nesting of a JSON body (422 beyond)"
    )
    body_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for the next piece of a request body"
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request line plus headers (431 beyond)"
    )
    max_headers: int = Field(default=100, ge=8, description="Most headers in one request")
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest time a client may take to send its headers"
    )
    keep_alive_timeout_s: int = Field(
        default=5, ge=1, description="How long an idle keep-alive connection stays open"
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Concurrent connections or requests on the API (503 beyond)"
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shelf.db'}"

    @property
    def resolved_artifact_uri(self) -> str:
        return self.artifact_uri or (self.home / "artifacts").as_uri()

    @property
    def is_embedded_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy(self.outbound_allow, self.outbound_deny)

    def all_tokens(self) -> list[TokenSpec]:
        """Tokens from ``SHELF_TOKENS`` plus those in ``SHELF_TOKENS_FILE``."""
        tokens = list(self.tokens)
        if self.tokens_file is not None:
            raw = json.loads(self.tokens_file.expanduser().read_text())
            tokens.extend(TokenSpec.model_validate(item) for item in raw)
        return tokens


class ClientSettings(BaseSettings):
    """What the CLI needs to reach a server."""

    model_config = SettingsConfigDict(env_prefix="SHELF_", extra="ignore")

    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    timeout_s: float = 60.0
