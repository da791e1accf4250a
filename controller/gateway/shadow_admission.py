"""How many shadow copies the gateway can afford, and which ones it sends.

Shedding every copy while the event loop is busy and sending every one while it is not sends
copies in bursts, whenever the loop has a moment, and the bursts are what the champion's tail
latency sees. Measured at half of saturation (docs/gateway.md): mirroring every request with
copies shed that way raised the champion's p99 1.86 to 1.93-fold; a sampled shadow of a quarter
of the requests, about as many copies as shedding at a 70 % busy share let through but spread
evenly, raised it 1.09-fold where the shedding raised it 1.47-fold.

So the share of copies admitted moves slowly, an integral controller on the loop's busy share
averaged over about half a second, towards keeping the loop at most ``target`` busy; and copies
are admitted by a credit counter, evenly: at a share of 0.25, every fourth. Which copy goes
depends only on the order copies arrive in, never on their content. At saturation the share
falls to 0 within a second or two (the shadow's hard guards, loop lag and a 90 % busy share,
act at once meanwhile); on an idle or lightly loaded gateway it stays at 1.

The default target, 0.55, measured at half of saturation in five runs: 3 to 10 % of the requests
mirrored, the champion's p99 0.72 to 1.16 (median 1.05) of its p99 without mirroring; 0.65 let
through 16 to 26 %, at 1.27 and 1.54.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

TARGET_BUSY = 0.55  # the default of SHELF_GATEWAY_SHADOW_BUSY_TARGET
AVERAGE_S = 0.5  # time constant of the busy share the controller follows
GAIN_PER_S = 2.0  # change of the admitted share per second per unit of busy-share error


class CopyAdmission:
    """The share of shadow copies to send (``share``, 0 to 1) and the decision for each."""

    def __init__(
        self, target: float = TARGET_BUSY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.target = target
        self.share = 1.0
        self.busy = 0.0  # the averaged busy share the controller follows
        self._clock = clock
        self._updated: float | None = None
        self._credit = 0.0

    def observe(self, busy: float) -> None:
        """The loop's current busy share (0 to 1); moves ``share`` for the time since the
        last call."""
        now = self._clock()
        if self._updated is None:
            self._updated, self.busy = now, busy
            return
        elapsed = min(now - self._updated, 1.0)
        if elapsed <= 0.0:
            return
        self._updated = now
        self.busy += (1.0 - math.exp(-elapsed / AVERAGE_S)) * (busy - self.busy)
        moved = self.share + GAIN_PER_S * elapsed * (self.target - self.busy)
        self.share = min(1.0, max(0.0, moved))

    def admit(self) -> bool:
        """Whether to send the next copy: ``share`` of them, evenly spaced."""
        self._credit = min(self._credit + self.share, 1.0)
        if self._credit >= 1.0 - 1e-3:  # a share within 0.1 % of 1 sends every copy
            self._credit -= 1.0
            return True
        return False
