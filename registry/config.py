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
    """Server-side settings (``shelf server`` and its roles)."""

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
    s3_multipart_chunk_mb: int = Field(default=16, ge=5, le=512)
    tokens: list[TokenSpec] = Field(
        default_factory=list, description="JSON list of {name, role, token}"
    )
    tokens_file: Path | None = Field(default=None, description="File holding the same JSON list")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    secret_key: str | None = Field(
        default=None, description="HMAC key for request ids and webhooks"
    )
    max_request_body_mb: int = Field(default=64, ge=1, description="Gateway: larger bodies get 413")

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    gateway_upstream_timeout_s: float = Field(default=10.0, gt=0)
    gateway_max_connections: int = Field(default=512, ge=1)
    gateway_shadow_concurrency: int = Field(default=32, ge=1)
    gateway_shadow_queue: int = Field(default=1024, ge=0)
    gateway_refresh_interval_s: float = Field(default=0.25, gt=0, description="Routing-table poll")
    gateway_flush_interval_s: float = Field(default=1.0, gt=0, description="Statistics flush")
    gateway_prediction_path: str | None = Field(
        default=None, description="Dotted JSON path to the predicted class for non-OIP servers"
    )
    gateway_confidence_path: str | None = Field(
        default=None, description="Dotted JSON path to the confidence for non-OIP servers"
    )
    feedback_ttl_hours: float = Field(default=72.0, gt=0)
    replica_id: str | None = Field(default=None, description="Default: hostname-pid")

    reconciler_host: str = "127.0.0.1"
    reconciler_port: int = Field(default=8090, ge=0, le=65535)
    reconciler_interval_s: float = Field(default=1.0, gt=0, description="Seconds between looks")

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
