"""A model's route as the request path reads it: its arms, their split and its rollout.

Built by a routing-table load (``routing.py``) and never changed after: a load makes new ones.
Plain classes rather than frozen dataclasses, so that the compiled build can make them extension
types (``route.pxd``): the app then reads an arm's fields as struct members, and Python code
cannot assign to them. Equality is field by field, as a dataclass's: a load that finds the same
routes keeps the table it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from controller.gateway.recorder import ArmKey
    from controller.strata import StratumClock


class _ComparedByFields:
    """Equality and hash over the fields named in ``FIELDS``, as a frozen dataclass's (only a
    routing load compares routes, never the request path)."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _ComparedByFields)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())


class RouteArm(_ComparedByFields):
    FIELDS = (
        "name",
        "index",
        "version_id",
        "version",
        "serving_url",
        "stats_key",
        "version_label",
        "version_header",
        "weight_bp",
        "bucket_start",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        name: str,
        index: int,  # 0 champion, 1.. the challengers in order (as encoded in request ids)
        version_id: int,
        version: int,
        serving_url: str,  # without a trailing slash
        stats_key: ArmKey | None,  # where its statistics go (rollout None: the champion alone)
        version_label: str,  # precomputed for the hot path: metrics label …
        version_header: bytes,  # … and X-Shelf-Version
        weight_bp: int = 0,  # a challenger's share; its buckets are [bucket_start, + weight_bp)
        bucket_start: int = 0,
    ) -> None:
        self.name = name
        self.index = index
        self.version_id = version_id
        self.version = version
        self.serving_url = serving_url
        self.stats_key = stats_key
        self.version_label = version_label
        self.version_header = version_header
        self.weight_bp = weight_bp
        self.bucket_start = bucket_start

    def __repr__(self) -> str:
        return f"RouteArm({self.name!r}, version {self.version}, {self.serving_url!r})"

    def to_json(self, with_url: bool = True) -> dict[str, Any]:
        url = self.serving_url if with_url else None
        return {"version_id": self.version_id, "version": self.version, "url": url}


class Route(_ComparedByFields):
    FIELDS = (
        "model",
        "model_id",
        "champion",
        "challenger",
        "weight_bp",
        "mirror",
        "rollout_id",
        "strategy",
        "state",
        "stratum",
        "mirror_bp",
        "challengers",
        "ranges",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        model: str,
        model_id: int,
        champion: RouteArm,
        challenger: RouteArm | None,
        weight_bp: int,
        mirror: bool,
        rollout_id: int | None,
        strategy: str | None,
        state: str | None,
        stratum: StratumClock | None = None,
        mirror_bp: int = 10_000,  # while mirroring: the share of requests copied (basis points)
        # Every challenger of the rollout in arm order (``challenger`` is the first still
        # served) and their bucket ranges ``(start, weight_bp)``, aligned with it, for the split.
        challengers: tuple[RouteArm, ...] = (),
        ranges: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.model = model
        self.model_id = model_id
        self.champion = champion
        self.challenger = challenger
        self.weight_bp = weight_bp
        self.mirror = mirror
        self.rollout_id = rollout_id
        self.strategy = strategy
        self.state = state
        self.stratum = stratum
        self.mirror_bp = mirror_bp
        self.challengers = challengers
        self.ranges = ranges

    def __repr__(self) -> str:
        return (
            f"Route({self.model!r}, champion {self.champion!r}, "
            f"{len(self.challengers)} challenger(s), rollout {self.rollout_id})"
        )

    def arm_for(self, version: int) -> RouteArm | None:
        """The arm serving ``version`` in this route, if any."""
        for arm in (self.champion, *self.challengers):
            if arm.version == version:
                return arm
        return None

    def to_json(self, with_urls: bool = True) -> dict[str, Any]:
        """The route as ``GET /v1/routes`` shows it; serving URLs (internal addresses) only
        with ``with_urls``."""
        challenger = self.challenger
        return {
            "model_id": self.model_id,
            "champion": self.champion.to_json(with_urls),
            "challenger": challenger.to_json(with_urls) if challenger else None,
            "challengers": [
                {"arm": a.name, "weight_bp": a.weight_bp, **a.to_json(with_urls)}
                for a in self.challengers
            ],
            "weight_bp": self.weight_bp,
            "mirror": self.mirror,
            "mirror_percent": self.mirror_bp / 100,
            "rollout_id": self.rollout_id,
            "strategy": self.strategy,
            "state": self.state,
        }
