"""The connection to a Shelf API: bearer token, timeouts, and error responses turned back into
the same :class:`~registry.errors.ShelfError` subclasses the server raised."""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, Self

import httpx

from registry import errors
from registry.client import socket_http
from registry.client.socket_http import FileBody
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
        self._headers = headers
        # Whether big bodies skip httpx for the socket itself (see ``socket_http``).
        self.socket_transfers = socket_http.reachable_directly(self.base_url)
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

    def upload_blob(self, digest: str, body: FileBody) -> dict[str, Any]:
        """``PUT /v1/blobs/{digest}``: ``body`` is the content."""
        return self._send("PUT", f"/v1/blobs/{digest}", {"X-Shelf-Size": str(body.size)}, body)

    def upload_blob_digest_last(self, body: FileBody) -> dict[str, Any]:
        """``POST /v1/blobs``: ``body`` is the content, then its sha256 as a 64-digit trailer."""
        return self._send("POST", "/v1/blobs", {"X-Shelf-Size": str(body.size)}, body)

    def _send(
        self, method: str, path: str, headers: Mapping[str, str], body: FileBody
    ) -> dict[str, Any]:
        headers = {**headers, "Content-Type": "application/octet-stream"}
        if self.socket_transfers:
            try:
                answer = socket_http.send(
                    self.base_url, method, path, {**self._headers, **headers}, body
                )
            except httpx.ConnectError as exc:
                raise Unreachable(f"cannot reach Shelf at {self.base_url} ({exc})") from None
            response = answer.as_httpx()
            raise_for_response(response)
        else:
            response = self.request(
                method,
                path,
                content=body.chunks(),
                headers={**headers, "Content-Length": str(body.length)},
                timeout=httpx.Timeout(None, connect=10.0),
            )
        result: dict[str, Any] = response.json()
        return result

    @contextmanager
    def body(self, path: str, headers: Mapping[str, str]) -> Iterator[socket_http.Readable]:
        """``GET path``'s body to ``readinto`` buffers, straight from the socket where the
        server is reached over plain HTTP without a proxy, else streamed by httpx. An error
        response raises its ``ShelfError``; a body cut short raises ``httpx.HTTPError`` from
        ``readinto``."""
        if not self.socket_transfers:
            with self.stream(path, headers) as response:
                yield socket_http.ChunkReader(response.iter_bytes())
            return
        with ExitStack() as stack:
            try:
                reader = stack.enter_context(
                    socket_http.get(self.base_url, path, {**self._headers, **headers})
                )
            except socket_http.Failed as failed:
                raise_for_response(failed.answer.as_httpx())  # raises: the status is >= 300
            except httpx.ConnectError as exc:
                raise Unreachable(f"cannot reach Shelf at {self.base_url} ({exc})") from None
            yield reader

    @contextmanager
    def stream(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(
                "GET", path, headers=headers, timeout=httpx.Timeout(None, connect=10.0)
            ) as response:
                if not response.is_success:
                    response.read()
                    raise_for_response(response)
                yield response
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot reach Shelf at {self.base_url} ({exc})") from None
