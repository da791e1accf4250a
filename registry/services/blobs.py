"""The blob index: which content-addressed blobs the store holds, recorded once each."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from registry.db.tables import Blob
from registry.errors import IntegrityError


def record_blob(session: Session, digest: str, size: int) -> None:
    existing = session.get(Blob, digest)
    if existing is not None:
        if existing.size != size:
            raise IntegrityError(
                f"blob {digest} is recorded with size {existing.size}, not {size}", digest=digest
            )
        return
    try:
        with session.begin_nested():
            session.add(Blob(digest=digest, size=size))
    except DBIntegrityError:
        pass  # recorded concurrently by another upload of the same content


def known_sizes(session: Session, digests: list[str]) -> dict[str, int]:
    rows = session.execute(select(Blob.digest, Blob.size).where(Blob.digest.in_(digests)))
    return {digest: size for digest, size in rows}
