"""The router interface: desired weights in, an acknowledgement (or a RouterError) out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field


class RouterError(Exception):
    """The data plane did not confirm the weights; the reconciler tries again."""


@dataclass(frozen=True)
class ServedVersion:
    version: int
    serving_url: str


@dataclass(frozen=True)
class DesiredWeights:
    """What one rollout wants the data plane to do now. ``revision`` grows with every change
    of the rollout, so a data plane can ignore a late, older message."""

    model: str
    rollout_id: int
    revision: int
    state: str
    champion: ServedVersion
    challenger: ServedVersion | None
    challenger_weight_bp: int
    mirror: bool
    mirror_percent: float = 100.0  # while mirroring: the share of requests to copy

    def to_json(self) -> dict[str, Any]:
        return {"event": "router.weights", **asdict(self)}


@dataclass(frozen=True)
class Acknowledgement:
    revision: int
    challenger_weight_bp: int


class RouterSpec(BaseModel):
    """How a rollout reaches its data plane (``router`` in the rollout's API body)."""

    kind: str = Field(default="gateway", pattern="^(gateway|webhook)$")
    url: str | None = Field(default=None, max_length=2048, description="webhook: where to POST")
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="webhook: HMAC-SHA256 key for X-Shelf-Signature (never shown again)",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class Router(Protocol):
    kind: str

    def apply(self, desired: DesiredWeights) -> Acknowledgement:
        """Returns once the data plane serves ``desired``; RouterError if it does not."""
        ...
