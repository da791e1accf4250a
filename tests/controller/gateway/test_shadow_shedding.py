"""Shadow copies are shed first when the gateway is saturated: while its event loop runs late,
every copy is dropped and counted (reason ``overload``) instead of queued; on a loop with time
to spare they are queued. The lag itself follows a blocked loop, and is probed only while a
route mirrors. At most ``concurrency`` copies are in flight, the rest wait in the bounded
queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from controller.config import ControllerSettings
from controller.gateway.app import GatewayApp
from controller.gateway.asgi import Headers
from controller.gateway.loop_lag import LoopLag
from controller.gateway.metrics import GatewayMetrics
from controller.gateway.prediction import PredictionParser
from controller.gateway.route import Route, RouteArm
from controller.gateway.shadow import ShadowCopy, ShadowMirror
from controller.gateway.upstream import UpstreamResponse
from registry.db.session import Database

ARM = RouteArm("challenger", 1, 2, 2, "http://127.0.0.1:9", None, "2", b"2")


def copy() -> ShadowCopy:
    return ShadowCopy("m", ARM, "POST", "/v2/models/m/infer", [], b"{}", "1")


def dropped(metrics: GatewayMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "shelf_gateway_shadow_dropped_total", {"model": "m", "reason": reason}
    )
    return value or 0.0


def mirror(metrics: GatewayMetrics, lag: LoopLag, queue: int = 8) -> ShadowMirror:
    return ShadowMirror(
        None,  # type: ignore[arg-type]  # never called: no worker is started
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        metrics,
        queue,
        1,
        lag,
        shed_lag_s=0.002,
    )


def test_copies_are_shed_while_the_loop_runs_late_and_queued_otherwise() -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        lag = LoopLag()
        shadow = mirror(metrics, lag, queue=2)
        shadow.submit(copy())  # a loop on time: queued
        assert (shadow.dropped, shadow.shed) == (0, 0)
        lag.lag_s = 0.010  # saturated: shed, counted, not queued
        for _ in range(3):
            shadow.submit(copy())
        assert (shadow.dropped, shadow.shed) == (3, 3)
        assert dropped(metrics, "overload") == 3
        lag.lag_s = 0.0  # recovered: queued again until the queue is full
        shadow.submit(copy())
        shadow.submit(copy())
        assert (shadow.dropped, shadow.shed) == (4, 3)
        assert dropped(metrics, "queue_full") == 1

    asyncio.run(scenario())


def test_shedding_can_be_switched_off() -> None:
    async def scenario() -> None:
        lag = LoopLag()
        lag.lag_s = 1.0
        shadow = ShadowMirror(None, None, None, GatewayMetrics(), 8, 1, lag, 0.0)  # type: ignore[arg-type]
        shadow.submit(copy())
        assert shadow.dropped == 0

    asyncio.run(scenario())


def test_loop_lag_follows_a_blocked_loop_and_recovers() -> None:
    async def scenario() -> tuple[float, float]:
        lag = LoopLag(interval_s=0.005)
        stop = asyncio.Event()
        task = asyncio.create_task(lag.run(stop))
        await asyncio.sleep(0.05)
        time.sleep(0.05)  # the loop is busy for 50 ms
        await asyncio.sleep(0.01)
        blocked = lag.lag_s
        await asyncio.sleep(0.3)
        recovered = lag.lag_s
        stop.set()
        await task
        return blocked, recovered

    blocked, recovered = asyncio.run(scenario())
    assert blocked >= 0.01  # 50 ms late, halved per 5 ms interval since
    assert recovered < blocked / 2


def spin(seconds: float) -> None:
    """Keep the loop's thread on the CPU (busy, where ``time.sleep`` would be idle)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def test_a_paused_probe_reads_zero_and_a_resumed_one_follows_the_loop_again() -> None:
    async def scenario() -> tuple[float, float, float, float]:
        lag = LoopLag(interval_s=0.005)
        stop = asyncio.Event()
        task = asyncio.create_task(lag.run(stop))
        await asyncio.sleep(0.05)
        lag.measure(False)  # no route mirrors
        await asyncio.sleep(0.02)
        spin(0.05)  # a busy loop, unseen while paused
        await asyncio.sleep(0.01)
        paused = (lag.lag_s, lag.busy)
        lag.measure(True)  # a shadow starts: the probe resumes at once, not after its check
        await asyncio.sleep(0.03)
        spin(0.05)
        await asyncio.sleep(0.01)
        resumed = (lag.lag_s, lag.busy)
        stop.set()
        await asyncio.wait_for(task, 2)
        return *paused, *resumed

    paused_lag, paused_busy, resumed_lag, resumed_busy = asyncio.run(scenario())
    assert (paused_lag, paused_busy) == (0.0, 0.0)
    assert resumed_lag >= 0.01 and resumed_busy > 0.1


def test_the_probe_runs_only_while_a_route_mirrors(tmp_path: Path) -> None:
    settings = ControllerSettings(home=tmp_path, secret_key="test-secret-key-0123456789")
    database = Database(settings.resolved_database_url)
    app = GatewayApp(settings, database)
    arm = RouteArm("champion", 0, 1, 1, "http://127.0.0.1:9", None, "1", b"1")
    routes = {
        "m": Route("m", 1, arm, arm, 0, True, 7, "shadow", "shadowing"),
        "n": Route("n", 2, arm, None, 0, False, None, None, None),
    }
    app._routes_changed(routes)
    assert app.lag.measuring
    app._routes_changed({"n": routes["n"]})
    assert not app.lag.measuring
    app.routes.close()
    database.dispose()


def test_copies_are_shed_while_the_loop_is_busy_though_on_time() -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        lag = LoopLag()
        shadow = mirror(metrics, lag)
        lag.busy = 0.95  # saturated by a few clients: no lag, no CPU to spare
        shadow.submit(copy())
        assert (shadow.dropped, shadow.shed) == (1, 1)
        lag.busy = 0.5  # half busy: copies go out
        shadow.submit(copy())
        assert shadow.dropped == 1

    asyncio.run(scenario())


def test_queued_copies_are_shed_when_a_worker_takes_them_in_an_overload() -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        lag = LoopLag()
        shadow = mirror(metrics, lag)
        shadow.submit(copy())
        shadow.submit(copy())
        lag.lag_s = 0.010  # saturated after they were queued
        shadow.start()  # the worker drops them instead of sending them
        await asyncio.sleep(0.05)
        await shadow.stop(1.0)
        assert (shadow.sent, shadow.dropped, shadow.shed) == (0, 2, 2)
        assert dropped(metrics, "overload") == 2

    asyncio.run(scenario())


def test_busy_share_follows_a_loop_kept_busy_without_blocking() -> None:
    async def scenario() -> tuple[float, float, float]:
        lag = LoopLag(interval_s=0.005)
        stop = asyncio.Event()
        task = asyncio.create_task(lag.run(stop))
        await asyncio.sleep(0.1)
        idle = lag.busy
        end = time.monotonic() + 0.2
        while time.monotonic() < end:  # CPU-bound work in short slices: on time, but busy
            sum(range(2000))
            await asyncio.sleep(0)
        busy, late = lag.busy, lag.lag_s
        stop.set()
        await task
        return idle, busy, late

    idle, busy, late = asyncio.run(scenario())
    assert idle < 0.5
    assert busy > 0.7
    assert late < 0.005


class HeldUpstream:
    """Takes copies and answers them only when told to."""

    def __init__(self) -> None:
        self.pending: list[Callable[[UpstreamResponse], None]] = []
        self.sends = 0

    def send(
        self,
        method: str,
        base_url: str,
        path: str,
        headers: Headers,
        body: bytes,
        on_done: Callable[[UpstreamResponse], None],
    ) -> None:
        self.sends += 1
        self.pending.append(on_done)

    def answer_one(self) -> None:
        self.pending.pop(0)(UpstreamResponse("2xx", 200, [], b"{}", 0.001))


def test_at_most_concurrency_copies_are_in_flight_and_the_queue_is_bounded() -> None:
    async def scenario() -> None:
        metrics = GatewayMetrics()
        upstream = HeldUpstream()
        shadow = ShadowMirror(
            upstream,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]  # the arm keeps no statistics
            PredictionParser(None, None),
            metrics,
            queue_size=2,
            concurrency=2,
        )
        shadow.start()
        results = [shadow.submit(copy()) for _ in range(5)]
        assert results == [True, True, True, True, False]  # 2 sent, 2 queued, 1 dropped
        assert (upstream.sends, shadow.dropped) == (2, 1)
        assert dropped(metrics, "queue_full") == 1
        upstream.answer_one()  # a slot frees up: the oldest queued copy goes out
        assert (upstream.sends, shadow.sent) == (3, 1)
        while upstream.pending:
            upstream.answer_one()
        assert (upstream.sends, shadow.sent, shadow.dropped) == (4, 4, 1)
        await shadow.stop(1.0)

    asyncio.run(scenario())


def test_a_paused_probe_sleeps_until_stopped_and_then_ends_at_once() -> None:
    async def scenario() -> float:
        lag = LoopLag(interval_s=0.005)
        stop = asyncio.Event()
        lag.measure(False)
        task = asyncio.create_task(lag.run(stop))
        await asyncio.sleep(0.05)
        assert not task.done()
        started = time.perf_counter()
        stop.set()
        await asyncio.wait_for(task, 2)
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 0.1  # no polling interval to wait out
