"""Garbage collection of the artifact store: blobs no version references, and what unfinished
uploads left behind.

Safe beside running uploads and registrations:

* A blob younger than the grace period is kept even if nothing references it yet: a client
  uploads its blobs first and registers the version that references them afterwards.
* An unreferenced blob's row is deleted, under the condition that it is still unreferenced,
  in the same transaction that then deletes its bytes. A registration referencing it at the
  same moment either commits first (the condition no longer holds, nothing is deleted) or
  waits on the row lock and then fails its foreign key, asking the client to retry, which
  uploads the blob again. A version never references a blob that is gone.
* Upload leftovers are listed by the store, which never lists an upload it knows is running.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select

from registry.db.session import Database
from registry.db.tables import Blob, VersionFile
from registry.storage.base import ArtifactStore, StoredItem


@dataclass
class GcReport:
    """What a run removed, or with ``applied`` false, what it would remove."""

    applied: bool
    grace_s: float
    blobs: list[StoredItem] = field(default_factory=list)
    uploads: list[StoredItem] = field(default_factory=list)

    @property
    def blob_bytes(self) -> int:
        return sum(item.size for item in self.blobs)

    @property
    def upload_bytes(self) -> int:
        return sum(item.size for item in self.uploads)


def _unreferenced(digest: object) -> object:
    return ~exists().where(VersionFile.digest == digest)


def _stale_recorded_blobs(database: Database, cutoff: datetime) -> list[StoredItem]:
    with database.session() as session:
        rows = session.execute(
            select(Blob.digest, Blob.size, Blob.created_at)
            .where(Blob.created_at < cutoff, _unreferenced(Blob.digest))  # type: ignore[arg-type]
            .order_by(Blob.digest)
        ).all()
    return [StoredItem(digest, size, created) for digest, size, created in rows]


def _unrecorded_blobs(
    database: Database, store: ArtifactStore, cutoff: datetime
) -> Iterator[StoredItem]:
    """Blobs in the store with no row at all (their upload failed between storing and
    recording), written before ``cutoff``."""
    for item in store.blob_items():
        if item.modified_at >= cutoff:
            continue
        with database.session() as session:
            if session.get(Blob, item.name) is None:
                yield item


def _remove_recorded(
    database: Database, store: ArtifactStore, item: StoredItem, cutoff: datetime
) -> bool:
    with database.session() as session:
        removed = session.execute(
            delete(Blob).where(
                Blob.digest == item.name,
                Blob.created_at < cutoff,
                _unreferenced(item.name),  # type: ignore[arg-type]
            )
        )
        if removed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        store.delete_blob(item.name)  # a failure rolls the row back: tried again next run
    return True


def _remove_unrecorded(database: Database, store: ArtifactStore, item: StoredItem) -> bool:
    with database.session() as session:
        if session.get(Blob, item.name) is not None:
            return False  # recorded meanwhile by an upload of the same content
        store.delete_blob(item.name)
    return True


def collect_garbage(
    database: Database, store: ArtifactStore, grace: timedelta, now: datetime, apply: bool
) -> GcReport:
    """Blobs unreferenced for longer than ``grace`` and upload leftovers older than ``grace``;
    removed when ``apply``, else only listed (a dry run)."""
    cutoff = now - grace
    report = GcReport(applied=apply, grace_s=grace.total_seconds())
    for item in _stale_recorded_blobs(database, cutoff):
        if not apply or _remove_recorded(database, store, item, cutoff):
            report.blobs.append(item)
    for item in list(_unrecorded_blobs(database, store, cutoff)):
        if not apply or _remove_unrecorded(database, store, item):
            report.blobs.append(item)
    for item in list(store.stray_uploads(cutoff)):
        if apply:
            store.remove_upload(item)
        report.uploads.append(item)
    return report


def remove_abandoned_uploads(store: ArtifactStore) -> list[StoredItem]:
    """What a starting server does: remove leftovers of uploads whose writer is gone."""
    removed = []
    for item in list(store.abandoned_uploads()):
        store.remove_upload(item)
        removed.append(item)
    return removed
