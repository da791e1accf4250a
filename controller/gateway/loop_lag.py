"""How late the event loop runs a timer, and how busy it is: the gateway's saturation signals.

A timer due every ``interval_s`` runs late by about as long as the callbacks ahead of it took,
so its lateness is the queueing delay every request on this loop is paying right now (the
event-loop lag of Node's ``toobusy`` and ``monitorEventLoopDelay``). Lag alone misses one kind
of saturation: a few clients keeping the loop 100 % busy (a closed loop of 16 connections)
never queue more than one short loop iteration each, so the timer is on time while there is
no CPU to spare. The share of the wall time between two ticks that the loop thread was running
or waiting for a CPU to run on (its *busy* share, from the scheduler's
``/proc/thread-self/schedstat``; CPU time alone where that is missing) sees that, and is not
fooled by other processes taking the CPU. Both are cheap (one timer and one read per interval,
nothing per request) and need no tuning to the machine.

Only the shadow reads them, so the gateway pauses the probe while no route mirrors
(:meth:`LoopLag.measure`): its 100 timers a second were most of an idle gateway's CPU (20 ms a
second of it, profiled), and a fifth of what the gateway spent per request at 500 requests a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

BUSY_SMOOTHING = 0.3  # weight of the newest tick in the busy share (about 3 ticks of memory)


class LoopLag:
    """The latest lateness of a periodic timer, in seconds, decaying by half per interval so
    that one late tick is remembered for a few intervals; and the loop thread's busy share
    (CPU over wall time, 0 to 1), smoothed over a few intervals."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.lag_s = 0.0
        self.busy = 0.0
        self.measuring = True
        self._resume: asyncio.Event | None = None

    def measure(self, wanted: bool) -> None:
        """Tick while ``wanted`` (something reads the signals); paused, both read 0, and a
        resumed probe starts afresh, as at startup."""
        self.measuring = wanted
        if wanted and self._resume is not None:
            self._resume.set()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        schedstat = _open_schedstat()  # of this thread, the loop's
        self._resume = resume = asyncio.Event()
        stopped = loop.create_task(stop.wait())
        try:
            while not stop.is_set():
                if not self.measuring:
                    # Paused: asleep until resumed or stopped, no timer at all (an idle
                    # gateway's every wake-up costs it CPU).
                    self.lag_s = self.busy = 0.0
                    resume.clear()
                    resumed = loop.create_task(resume.wait())
                    try:
                        await asyncio.wait((resumed, stopped), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        resumed.cancel()
                    continue
                start = loop.time()
                used = _busy_s(schedstat)
                await asyncio.sleep(interval)
                wall = loop.time() - start
                late = wall - interval
                self.lag_s = max(late, self.lag_s / 2, 0.0)
                share = min((_busy_s(schedstat) - used) / wall, 1.0) if wall > 0 else 0.0
                self.busy += BUSY_SMOOTHING * (share - self.busy)
        finally:
            stopped.cancel()
            self._resume = None
            if schedstat is not None:
                os.close(schedstat)


def _open_schedstat() -> int | None:
    with contextlib.suppress(OSError):
        return os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    return None


def _busy_s(schedstat: int | None) -> float:
    """Seconds this thread ran plus waited to run: ``schedstat``'s first two fields."""
    if schedstat is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = os.pread(schedstat, 128, 0).split()
            return (int(fields[0]) + int(fields[1])) / 1e9
    return time.thread_time()
