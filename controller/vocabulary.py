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
# An A/B/n rollout has up to this many challengers. The first is the arm ``challenger`` (so a
# rollout with one challenger reads as it always did), the others ``challenger-2`` … Request
# ids carry the arm's index: 0 the champion, 1.. the challengers in that order.
MAX_CHALLENGERS = 4


def challenger_arm(position: int) -> str:
    """The arm name of the challenger at ``position`` (0-based) of a rollout."""
    if not 0 <= position < MAX_CHALLENGERS:
        raise ValueError(f"a rollout has at most {MAX_CHALLENGERS} challengers")
    return Arm.challenger.value if position == 0 else f"{Arm.challenger.value}-{position + 1}"


CHALLENGER_ARMS: tuple[str, ...] = tuple(challenger_arm(i) for i in range(MAX_CHALLENGERS))
# Every arm name by the index request ids carry.
ARM_NAMES: tuple[str, ...] = (Arm.champion.value, *CHALLENGER_ARMS)


class RolloutState(StrEnum):
    pending = "pending"
    shadowing = "shadowing"
    canary = "canary"
    paused = "paused"
    # A guardrail showed harm under ``--on-harm pause``: the harmful challenger serves nothing
    # and the rollout waits for a person (resume with fresh evidence, or roll back).
    paused_on_harm = "paused_on_harm"
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
    RolloutState.paused_on_harm,
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


class OnHarm(StrEnum):
    """What harm does to a rollout: end it at once, or pause it for a person to review."""

    rollback = "rollback"
    pause = "pause"


class ChallengerStatus(StrEnum):
    """Where one challenger of a rollout stands. ``suspended``: shown harmful under
    ``--on-harm pause``, at weight 0 until the rollout is resumed or rolled back."""

    active = "active"
    dropped = "dropped"
    suspended = "suspended"
    promoted = "promoted"


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
