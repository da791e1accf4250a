"""The connection to a Shelf API: bearer token, timeouts, and error responses turned back into
the same :class:`~registry.errors.ShelfError` subclasses the server raised."""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

import httpx

from registry import errors
from registry.config import ClientSettings

_BY_STATUS: dict[int, type[errors.ShelfError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    502: errors.UpstreamError,
    504: errors.UpstreamTimeout,
}


class Unreachable(errors.ShelfError):
    code = "unreachable"


def raise_for_response(response: httpx.Response) -> None:
    if response.is_success:
        return
    message = f"HTTP {response.status_code}"
    code = ""
    try:
        body = response.json()
        message = str(body.get("message") or message)
        code = str(body.get("error") or "")
    except Exception:
        if response.text:
            message = f"{message}: {response.text[:200]}"
    kind = _BY_STATUS.get(response.status_code, errors.ShelfError)
    if code == "integrity_error":
        kind = errors.IntegrityError
    raise kind(message, status=response.status_code)


def _actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "anonymous"


class Connection:
    """One HTTP connection pool to a Shelf API (``SHELF_URL``), authenticated by
    ``SHELF_TOKEN``. Every method raises a ``ShelfError`` on an error response and
    :class:`Unreachable` when the server cannot be reached."""

    def __init__(self, settings: ClientSettings) -> None:
        headers = {"X-Shelf-Actor": _actor(), "User-Agent": "shelf-client"}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self.base_url = settings.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot reach Shelf at {self.base_url} ({exc})") from None
        except httpx.TimeoutException:
            raise Unreachable(f"Shelf at {self.base_url} did not answer in time") from None
        raise_for_response(response)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, **kwargs)
        return response.json() if response.content else None

    def put(self, path: str, body: Any = None) -> Any:
        response = self.request("PUT", path, json=body)
        return response.json() if response.content else None

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body).json()

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def upload_blob(self, digest: str, size: int, chunks: Iterable[bytes]) -> dict[str, Any]:
        response = self.request(
            "PUT",
            f"/v1/blobs/{digest}",
            content=chunks,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Shelf-Size": str(size),
                "Content-Length": str(size),
            },
            timeout=httpx.Timeout(None, connect=10.0),
        )
        result: dict[str, Any] = response.json()
        return result

    def upload_blob_digest_last(self, size: int, chunks: Iterable[bytes]) -> dict[str, Any]:
        """``chunks`` yield ``size`` bytes of content, then the 64 hex digits of their sha256."""
        response = self.request(
            "POST",
            "/v1/blobs",
            content=chunks,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Shelf-Size": str(size),
                "Content-Length": str(size + 64),
            },
            timeout=httpx.Timeout(None, connect=10.0),
        )
        result: dict[str, Any] = response.json()
        return result

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(
                "GET", path, timeout=httpx.Timeout(None, connect=10.0)
            ) as response:
                if not response.is_success:
                    response.read()
                    raise_for_response(response)
                yield response
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot reach Shelf at {self.base_url} ({exc})") from None
