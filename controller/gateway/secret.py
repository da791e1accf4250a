"""The HMAC key for request ids: ``SHELF_SECRET_KEY`` if set, else a key kept in
``$SHELF_HOME/secret_key`` (created once, mode 0600) so the all-in-one server needs no setup.
Replicas behind a load balancer must share ``SHELF_SECRET_KEY``."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from controller.config import ControllerSettings

KEY_FILE = "secret_key"


def gateway_secret(settings: ControllerSettings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.home / KEY_FILE
    return _read_or_create(path).encode()


def _read_or_create(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)
        raise RuntimeError(f"{path} is empty; delete it or set SHELF_SECRET_KEY") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
