"""Bearer-token authentication with ordered roles (read < publish < deploy < admin).

With no tokens configured the server runs open (every caller is an admin named by the
``X-Shelf-Actor`` header), which the server allows on loopback addresses only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from registry.config import Role, TokenSpec
from registry.errors import Forbidden, Unauthorized

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def require(self, role: Role) -> Principal:
        if self.role < role:
            raise Forbidden(
                f"token {self.name!r} has role {self.role.name}; this needs {role.name} or higher"
            )
        return self


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    def __init__(self, tokens: list[TokenSpec]) -> None:
        self._by_fingerprint = {_fingerprint(t.token): t for t in tokens}

    @property
    def is_open(self) -> bool:
        return not self._by_fingerprint

    def authenticate(self, authorization: str | None, actor_hint: str | None = None) -> Principal:
        if self.is_open:
            actor = (actor_hint or ANONYMOUS).strip()[:128] or ANONYMOUS
            return Principal(actor, Role.admin)
        if not authorization:
            raise Unauthorized("this server requires a bearer token (set SHELF_TOKEN)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        fingerprint = _fingerprint(token.strip())
        for known, spec in self._by_fingerprint.items():
            if hmac.compare_digest(known, fingerprint):
                return Principal(spec.name, spec.role)
        raise Unauthorized("unknown token")
