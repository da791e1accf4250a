"""Forced arms: a tester's request names the arm that answers it (``X-Shelf-Arm``).

Testers and smoke tests need to reach the challenger on purpose, at any weight (0 % while
shadowing or paused included), without waiting for the hash to pick them. A forced request is
answered normally but sits outside the experiment: it is not a random draw, so it is never
recorded in the arm's statistics, its request id is marked uncounted (feedback for it goes
nowhere) and it is counted only in ``shelf_gateway_forced_requests_total``.

Who may force is ``SHELF_GATEWAY_FORCED_ARM``: ``token`` (default) asks for a token of any role
in ``X-Shelf-Token`` (bare, or as ``Bearer <token>``; on a gateway without tokens, a caller on
loopback, as for ``GET /v1/routes``), ``any`` lets every caller force, ``off`` nobody.
Neither header is forwarded to the model server.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from controller.gateway.route import Route, RouteArm
from controller.vocabulary import Arm
from registry.auth import Authenticator
from registry.config import Role
from registry.errors import ShelfError

ARM_HEADER = b"x-shelf-arm"
TOKEN_HEADER = b"x-shelf-token"
MAX_VERSION_DIGITS = 10

ForcedArmMode = Literal["token", "any", "off"]


class ForcedArmRefused(Exception):
    """Why a forced request is answered by the gateway itself: ``status``, ``code`` (the JSON
    ``error``) and ``reason`` (the Prometheus label)."""

    def __init__(self, status: int, code: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason
        self.message = message


def forced_arm(route: Route, value: str) -> RouteArm:
    """The arm of ``route`` that ``value`` names: ``champion``, ``challenger`` or a version
    number among the route's arms. A challenger without an active rollout, or a version that
    is not one of the arms now, is a 409 (the request is well formed; the route does not have
    that arm at the moment); anything else is a 400."""
    name = value.strip().lower()
    if name == Arm.champion:
        return route.champion
    arms = [route.champion, *route.challengers]
    if route.challenger is not None and route.challenger not in arms:
        arms.append(route.challenger)
    if name == Arm.challenger:
        if route.challenger is None:
            raise ForcedArmRefused(
                409,
                "conflict",
                "no_such_arm",
                f"{route.model!r} has no active rollout with a challenger to force",
            )
        return route.challenger
    for arm in arms:  # A/B/n: "challenger-2" and so on
        if arm.name == name:
            return arm
    if name.isascii() and name.isdigit() and len(name) <= MAX_VERSION_DIGITS:
        number = int(name)
        for arm in arms:
            if arm.version == number:
                return arm
        serving = ", ".join(f"{arm.name} v{arm.version}" for arm in arms)
        raise ForcedArmRefused(
            409,
            "conflict",
            "no_such_arm",
            f"version {number} of {route.model!r} is not one of its arms now ({serving})",
        )
    raise ForcedArmRefused(
        400,
        "invalid_input",
        "bad_value",
        "X-Shelf-Arm must be 'champion', 'challenger', 'challenger-N' or a version number",
    )


class ForcedArmPolicy:
    """Whether a caller may force an arm, by ``SHELF_GATEWAY_FORCED_ARM``."""

    def __init__(self, mode: ForcedArmMode, authenticator: Authenticator) -> None:
        self.mode = mode
        self._authenticator = authenticator

    def check(self, token: bytes | None, client_host: str | None) -> None:
        """Raises :class:`ForcedArmRefused` unless the caller may force an arm."""
        if self.mode == "any":
            return
        if self.mode == "off":
            raise ForcedArmRefused(
                403,
                "forbidden",
                "off",
                "forcing an arm is turned off on this gateway (SHELF_GATEWAY_FORCED_ARM=off)",
            )
        if self._authenticator.is_open:
            if client_host is not None and is_loopback(client_host):
                return
            raise ForcedArmRefused(
                403,
                "forbidden",
                "unauthorized",
                "this gateway has no tokens: only callers on loopback may force an arm",
            )
        if token is None:
            raise ForcedArmRefused(
                401,
                "unauthorized",
                "unauthorized",
                "forcing an arm needs a Shelf token in 'X-Shelf-Token'",
            )
        value = token.decode("latin-1").strip()
        if value[:7].lower() == "bearer ":  # the Authorization spelling is accepted too
            value = value[7:].strip()
        try:
            self._authenticator.authenticate(f"Bearer {value}").require(Role.read)
        except ShelfError as error:
            raise ForcedArmRefused(
                error.status_code, error.code, "unauthorized", error.message
            ) from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
