"""How late the event loop runs a timer: the gateway's saturation signal.

A timer due every ``interval_s`` runs late by about as long as the callbacks ahead of it took,
so its lateness is the queueing delay every request on this loop is paying right now (the
event-loop lag of Node's ``toobusy`` and ``monitorEventLoopDelay``). It is cheap (one timer per
interval, nothing per request) and needs no tuning to the machine: a loop with spare time runs
its timers on time whatever its request rate.
"""

from __future__ import annotations

import asyncio


class LoopLag:
    """The latest lateness of a periodic timer, in seconds, decaying by half per interval so
    that one late tick is remembered for a few intervals."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(interval)
            late = loop.time() - start - interval
            self.lag_s = max(late, self.lag_s / 2, 0.0)
