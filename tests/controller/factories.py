"""Registering versions straight through the services (no artifact store needed)."""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.services import aliases
from registry.services.blobs import record_blob
from registry.services.versions import FileEntry, VersionSpec, register_version


def add_version(session: Session, name: str, content: bytes, serving_url: str | None) -> int:
    digest = hashlib.sha256(content).hexdigest()
    record_blob(session, digest, len(content))
    spec = VersionSpec(serving_url=serving_url)
    return register_version(
        session, name, [FileEntry("m.bin", len(content), digest)], spec, "tester"
    ).version


def model_with_versions(
    database: Database, name: str = "fraud", count: int = 3, champion: int | None = 1
) -> None:
    with database.session() as session:
        for i in range(1, count + 1):
            add_version(session, name, f"{name}-{i}".encode(), f"http://127.0.0.1:{9000 + i}")
        if champion is not None:
            aliases.set_alias(session, name, "champion", champion, "tester")
