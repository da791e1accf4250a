"""The share of shadow copies the gateway sends follows what its event loop can afford, and the
copies it sends are spread evenly (``controller.gateway.shadow_admission``)."""

from __future__ import annotations

import asyncio

from controller.gateway.loop_lag import LoopLag
from controller.gateway.metrics import GatewayMetrics
from controller.gateway.shadow import ShadowMirror
from controller.gateway.shadow_admission import CopyAdmission
from tests.controller.gateway.test_shadow_shedding import copy, dropped


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(admission: CopyAdmission, clock: Clock, busy: float, seconds: float) -> list[bool]:
    """Copies every 10 ms for ``seconds`` while the loop is ``busy``: which were admitted."""
    admitted = []
    for _ in range(round(seconds * 100)):
        clock.now += 0.01
        admission.observe(busy)
        admitted.append(admission.admit())
    return admitted


def test_a_loop_with_time_to_spare_sends_every_copy() -> None:
    clock = Clock()
    admission = CopyAdmission(0.55, clock)
    assert all(run(admission, clock, 0.2, 5.0))
    assert admission.share == 1.0


def test_a_busy_loop_sheds_copies_within_seconds_and_takes_them_back_when_it_calms() -> None:
    clock = Clock()
    admission = CopyAdmission(0.55, clock)
    busy = run(admission, clock, 0.95, 3.0)
    assert not any(busy[-100:])  # the last second: nothing sent
    assert admission.share == 0.0
    calm = run(admission, clock, 0.3, 5.0)
    assert all(calm[-100:])


def test_a_share_is_sent_evenly_not_in_bursts() -> None:
    admission = CopyAdmission(0.55, Clock())
    admission.share = 0.25
    sent = [admission.admit() for _ in range(400)]
    assert sum(sent) == 100
    assert sent[:8] == [False, False, False, True] * 2  # every fourth


def test_the_share_settles_where_the_loop_is_as_busy_as_the_target() -> None:
    """A loop whose busy share grows with the copies it sends (half busy without copies, each
    copy's share of requests adding 0.4): the controller settles near 0.55 busy, that is a
    share of about 1/8."""
    clock = Clock()
    admission = CopyAdmission(0.55, clock)
    for _ in range(3000):  # 30 s
        clock.now += 0.01
        admission.observe(0.5 + 0.4 * admission.share)
        admission.admit()
    assert abs(admission.busy - 0.55) < 0.02
    assert 0.08 < admission.share < 0.17


def test_the_mirror_sheds_what_the_loop_cannot_afford_and_counts_it() -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        lag = LoopLag()
        shadow = ShadowMirror(None, None, None, metrics, 1024, 1, lag, 0.002, 0.55)  # type: ignore[arg-type]
        shadow.admission.share = 0.5
        shadow.admission.observe(0.55)  # at the target: the share stays where it is
        lag.busy = 0.55
        for _ in range(10):
            shadow.submit(copy())
        assert shadow.shed == 5 and dropped(metrics, "overload") == 5

    asyncio.run(scenario())
