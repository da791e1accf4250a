"""One timer per request cuts a stalled body, and only a stalled one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from registry.api.idle_watchdog import IdleWatchdog
from registry.errors import RequestTimeout

TIMEOUT = 0.3


def _arriving_after(delay: float) -> Any:
    async def receive() -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": b"x", "more_body": True}

    return receive


def test_a_stalled_wait_is_cut_after_the_timeout() -> None:
    async def scenario() -> float:
        watchdog = IdleWatchdog(TIMEOUT)
        started = time.monotonic()
        try:
            with pytest.raises(RequestTimeout, match=r"0\.3 s"):
                await watchdog.receive(_arriving_after(3600))
        finally:
            watchdog.stop()
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return time.monotonic() - started

    assert TIMEOUT <= asyncio.run(scenario()) < TIMEOUT + 0.5


def test_steady_progress_and_busy_time_between_waits_are_never_cut() -> None:
    async def scenario() -> int:
        watchdog = IdleWatchdog(TIMEOUT)
        received = 0
        try:
            # Every wait is shorter than the timeout, all of them together much longer.
            for _ in range(8):
                await watchdog.receive(_arriving_after(TIMEOUT * 0.6))
                received += 1
            # The app, not the client, takes its time: never counted against the client.
            await asyncio.sleep(TIMEOUT * 3)
            await watchdog.receive(_arriving_after(0))
            received += 1
        finally:
            watchdog.stop()
        return received

    assert asyncio.run(scenario()) == 9


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        watchdog = IdleWatchdog(TIMEOUT)
        waiting = asyncio.create_task(watchdog.receive(_arriving_after(3600)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        watchdog.stop()

    asyncio.run(scenario())
