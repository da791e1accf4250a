"""Shadow traffic: the champion answers, a copy goes to the challenger in the background.

Copies wait in a bounded asyncio queue served by a fixed number of workers. ``submit`` never
blocks: when the queue is full the copy is dropped and counted (reason ``queue_full``), so a
slow challenger can cost shadow coverage but never champion latency. Copies are also shed
first when the gateway itself is saturated: while the event loop runs late
(:class:`LoopLag` above ``shed_lag_s``) or is busy ``SHED_BUSY_SHARE`` of the time, every copy
is dropped and counted (reason ``overload``), since each one would take CPU from the champion's
requests; a copy already queued is dropped the same way when a worker takes it in such a
moment. Copies are queued only after the champion's answer was written (``GatewayApp.mirror``),
so they never delay it. The challenger's
outcome goes into its arm's statistics, and whether its predicted class equals the champion's
into ``compared/agreed``. The champion's answer to the same request is recorded when its copy
is sent (``ShadowCopy.on_sent``), so both arms are measured on the same requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from controller.gateway.asgi import Headers
from controller.gateway.loop_lag import LoopLag
from controller.gateway.metrics import GatewayMetrics
from controller.gateway.prediction import PredictionParser
from controller.gateway.recorder import Recorder
from controller.gateway.routing import RouteArm
from controller.gateway.upstream import Upstream, content_type

log = logging.getLogger(__name__)

# The loop's busy share beyond which copies are shed: a copy costs about half of a request's
# CPU, so at half of the saturation throughput the loop is about 80 % busy with mirroring on.
SHED_BUSY_SHARE = 0.9


@dataclass(slots=True)
class ShadowCopy:
    model: str
    arm: RouteArm
    method: str
    path: str  # path and query, appended to the challenger's serving URL
    headers: Headers
    body: bytes
    champion_class: str | None
    unit: int | None = None  # the routing key's unit bucket, for the statistics
    # Records the champion's answer to the same request: called when the copy is sent, so the
    # champion's side of the comparison is exactly the requests the challenger got.
    on_sent: Callable[[], None] | None = None


class ShadowMirror:
    def __init__(
        self,
        upstream: Upstream,
        recorder: Recorder,
        parser: PredictionParser,
        metrics: GatewayMetrics,
        queue_size: int,
        concurrency: int,
        lag: LoopLag | None = None,
        shed_lag_s: float = 0.0,
    ) -> None:
        self._upstream = upstream
        self._recorder = recorder
        self._parser = parser
        self._metrics = metrics
        self._queue: asyncio.Queue[ShadowCopy] | None = (
            asyncio.Queue(maxsize=queue_size) if queue_size > 0 else None
        )
        self._concurrency = concurrency
        self._lag = lag if shed_lag_s > 0 else None
        self._shed_lag_s = shed_lag_s
        self._workers: list[asyncio.Task[None]] = []
        self.sent = 0
        self.dropped = 0  # for either reason
        self.shed = 0  # of which because the gateway was saturated

    def start(self) -> None:
        if self._queue is None:
            return
        self._workers = [
            asyncio.create_task(self._work(), name=f"shadow-{i}") for i in range(self._concurrency)
        ]

    def overloaded(self) -> bool:
        """Whether the gateway is saturated right now (never, with shedding switched off)."""
        lag = self._lag
        return lag is not None and (lag.lag_s > self._shed_lag_s or lag.busy >= SHED_BUSY_SHARE)

    def submit(self, copy: ShadowCopy) -> bool:
        """Queues ``copy``; False when it was dropped or shed instead (and counted so)."""
        if self.overloaded():
            self.shed += 1
            self._drop(copy, "overload")
            return False
        if self._queue is not None:
            try:
                self._queue.put_nowait(copy)
                return True
            except asyncio.QueueFull:
                pass
        self._drop(copy, "queue_full")
        return False

    def _drop(self, copy: ShadowCopy, reason: str) -> None:
        self.dropped += 1
        self._metrics.shadow_dropped.labels(copy.model, reason).inc()

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            copy = await self._queue.get()
            try:
                if self.overloaded():
                    self.shed += 1
                    self._drop(copy, "overload")
                    continue
                await self._send(copy)
            except Exception:  # a bug here must not kill the worker
                log.exception("shadow request failed unexpectedly")
            finally:
                self._queue.task_done()

    async def _send(self, copy: ShadowCopy) -> None:
        if copy.on_sent is not None:
            copy.on_sent()
        arm = copy.arm
        result = await self._upstream.call(
            copy.method, arm.serving_url, copy.path, copy.headers, copy.body
        )
        predicted, confidence = (None, None)
        if not result.failed:
            predicted, confidence = self._parser.parse(result.body, content_type(result.headers))
        self.sent += 1
        self._metrics.shadow_requests.labels(copy.model, result.outcome).inc()
        if arm.stats_key is None:
            return
        stats = self._recorder.arm(arm.stats_key)
        stats.record_response(result.outcome, result.latency_s, predicted, confidence, copy.unit)
        if predicted is not None and copy.champion_class is not None:
            stats.record_agreement(predicted == copy.champion_class)

    async def stop(self, drain_s: float) -> None:
        """Give queued copies ``drain_s`` seconds to finish, then stop the workers."""
        if self._queue is not None and self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=drain_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
