"""The Python client of Shelf: everything the ``shelf`` CLI does, callable from a CI job.

Registry operations come from :class:`registry.client.RegistryClient`, rollout operations
from :class:`controller.client.RolloutClient`; both share one :class:`Connection`."""

from __future__ import annotations

from typing import Self

from controller.client import RolloutClient
from registry.client import Connection, RegistryClient
from registry.config import ClientSettings


class Client(RegistryClient, RolloutClient):
    """``Client()`` reads ``SHELF_URL`` and ``SHELF_TOKEN``; arguments override them.
    ``gateway_url`` is needed only for :meth:`feedback`. Use it as a context manager, or
    call :meth:`close`. Errors are :mod:`registry.errors` exceptions (``NotFound``,
    ``Conflict``, ``InvalidInput`` …) or :class:`~registry.client.Unreachable`."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        gateway_url: str | None = None,
        timeout_s: float | None = None,
        connection: Connection | None = None,
    ) -> None:
        if connection is None:
            given = {"url": url, "token": token, "timeout_s": timeout_s}
            settings = ClientSettings().model_copy(
                update={k: v for k, v in given.items() if v is not None}
            )
            connection = Connection(settings)
        RegistryClient.__init__(self, connection)
        RolloutClient.__init__(self, connection, gateway_url)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
