"""Only one reconciler acts at a time.

PostgreSQL: a session-level advisory lock held on a dedicated connection; if the leader dies
its session ends and the lock is free for a standby at its next attempt. SQLite: an exclusive
file lock beside the database file (an embedded database is one machine's)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("shelf.reconciler")

LOCK_KEY = 0x5E1F_0001  # "shelf" reconciler; any constant shared by every replica


class LeaderLock:
    def __init__(self, engine: Engine, lock_dir: Path) -> None:
        self._engine = engine
        self._lock_dir = lock_dir
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def is_postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def try_acquire(self) -> bool:
        """True if this process is (still) the leader."""
        if self.is_postgres:
            return self._try_postgres()
        return self._try_file()

    def _try_postgres(self) -> bool:
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                return True
            except Exception:
                log.warning("lost the leader connection; stepping down")
                self.release()
                return False
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            held = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
            ).scalar_one()
        except Exception:
            connection.close()
            raise
        if held:
            self._connection = connection
            return True
        connection.close()
        return False

    def _try_file(self) -> bool:
        if self._file is not None:
            return True
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        handle = (self._lock_dir / "reconciler.lock").open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(str(os.getpid()).encode())
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
