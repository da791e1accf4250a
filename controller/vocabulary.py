"""The controller's shared names, defined once: arms, rollout states, strategies and the
notification channel gateways listen on.

Every value is a ``StrEnum``, so it compares equal to, and is stored as, its plain string
(database columns, JSON bodies, audit payloads and Prometheus labels keep their spelling)."""

from __future__ import annotations

from enum import StrEnum


class Arm(StrEnum):
    """The two sides of a comparison. The champion is also the alias that names the version
    in production; the challenger is the version being rolled out."""

    champion = "champion"
    challenger = "challenger"


ARMS: tuple[Arm, ...] = (Arm.champion, Arm.challenger)
CHAMPION_ALIAS = Arm.champion.value


class RolloutState(StrEnum):
    pending = "pending"
    shadowing = "shadowing"
    canary = "canary"
    paused = "paused"
    promoted = "promoted"
    rolled_back = "rolled_back"
    aborted = "aborted"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


ACTIVE_STATES: tuple[RolloutState, ...] = (
    RolloutState.pending,
    RolloutState.shadowing,
    RolloutState.canary,
    RolloutState.paused,
)
FINAL_STATES: tuple[RolloutState, ...] = (
    RolloutState.promoted,
    RolloutState.rolled_back,
    RolloutState.aborted,
)


class Strategy(StrEnum):
    canary = "canary"
    shadow = "shadow"
    blue_green = "blue-green"


STRATEGIES: tuple[str, ...] = tuple(s.value for s in Strategy)

# PostgreSQL NOTIFY channel on which a committed routing change reaches every gateway at once.
ROUTING_CHANNEL = "shelf_routing"
# Length of a statistics time block within a rollout step, unless the plan says otherwise.
DEFAULT_TIME_BLOCK_S = 600.0
# The stratum step of a shadow phase, and the block of a step's warm-up (recorded, not judged).
SHADOW_STEP = -1
WARMUP_BLOCK = -1
# The stratum step of a champion's statistics outside any rollout: its time blocks count from
# the Unix epoch in blocks of ``champion_block_s`` (ControllerSettings), so every replica agrees.
CHAMPION_STEP = -2
DEFAULT_CHAMPION_BLOCK_S = 60.0
