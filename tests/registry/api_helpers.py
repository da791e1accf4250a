"""Driving the registry API the way the CLI does: upload missing blobs, then register."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi.testclient import TestClient


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(client: TestClient, data: bytes, headers: dict[str, str] | None = None) -> str:
    digest = sha(data)
    response = client.put(f"/v1/blobs/{digest}", content=data, headers=headers or {})
    assert response.status_code in (200, 201), response.text
    return digest


def register(
    client: TestClient,
    name: str,
    files: dict[str, bytes],
    headers: dict[str, str] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    manifest = [
        {"path": p, "size": len(d), "digest": upload(client, d, headers)} for p, d in files.items()
    ]
    response = client.post(
        f"/v1/models/{name}/versions", json={"files": manifest, **metadata}, headers=headers or {}
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
