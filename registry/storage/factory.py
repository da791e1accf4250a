"""Pick the artifact store the settings name."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from registry.config import Settings
from registry.errors import InvalidInput
from registry.storage.base import ArtifactStore


def open_store(settings: Settings) -> ArtifactStore:
    uri = settings.resolved_artifact_uri
    scheme = urlparse(uri).scheme
    if scheme == "s3":
        from registry.storage.s3 import S3Store

        return S3Store(
            uri,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            part_size_mb=settings.s3_multipart_chunk_mb,
            max_attempts=settings.s3_max_attempts,
            upload_concurrency=settings.s3_upload_concurrency,
        )
    if scheme == "file":
        from registry.storage.local import LocalStore

        return LocalStore(Path(unquote(urlparse(uri).path)))
    if scheme == "" and uri:
        from registry.storage.local import LocalStore

        return LocalStore(Path(uri).expanduser().resolve())
    raise InvalidInput(f"unsupported artifact URI {uri!r}; use file://… or s3://bucket/prefix")
