"""Shadow traffic: the champion answers, a copy goes to the challenger in the background.

At most ``concurrency`` copies are in flight, each on the challenger's own pooled connections
(never the champion's), sent and answered through callbacks; the others wait in a bounded
queue. ``submit`` never blocks: when the queue is full the copy is dropped and counted (reason
``queue_full``), so a slow challenger can cost shadow coverage but never champion latency.
Copies are also shed first when the gateway itself is saturated: while the event loop runs late
(:class:`LoopLag` above ``shed_lag_s``) or is busy ``SHED_BUSY_SHARE`` of the time, every copy
is dropped and counted (reason ``overload``), since each one would take CPU from the champion's
requests; a copy already queued is dropped the same way when it is taken from the queue in
such a moment. Below that, only the share of copies the loop can afford is sent, spread evenly
(:class:`CopyAdmission`: the loop kept at most ``busy_target`` busy), the others shed and
counted the same way. Copies are sent or queued only after the champion's answer was written
(``GatewayApp.mirror``), so they never delay it. The challenger's outcome goes into its arm's
statistics, and whether its predicted class equals the champion's into ``compared/agreed``.
The champion's answer to the same request is recorded when its copy is sent
(``ShadowCopy.on_sent``), so both arms are measured on the same requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from controller.gateway.asgi import Headers
from controller.gateway.loop_lag import LoopLag
from controller.gateway.metrics import GatewayMetrics
from controller.gateway.prediction import PredictionParser
from controller.gateway.recorder import Recorder
from controller.gateway.route import RouteArm
from controller.gateway.shadow_admission import TARGET_BUSY, CopyAdmission
from controller.gateway.upstream import Upstream, UpstreamResponse, content_type

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
    """Sends copies to challengers from callbacks, at most ``concurrency`` at a time, the rest
    waiting in a bounded queue; no task per copy or per sender (a copy costs the gateway CPU
    its champions need: with a task wake-up to take it from a queue and another for its
    answer, about half of a request's CPU, profiled)."""

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
        busy_target: float = TARGET_BUSY,
    ) -> None:
        self._upstream = upstream
        self._recorder = recorder
        self._parser = parser
        self._metrics = metrics
        self._queue_size = queue_size
        self._waiting: deque[ShadowCopy] = deque()
        self._concurrency = concurrency
        self._lag = lag if shed_lag_s > 0 else None
        self._shed_lag_s = shed_lag_s
        self.admission = CopyAdmission(busy_target)
        self._running = False
        self._in_flight = 0
        self._taking = False  # ``_take`` is running: a nested call leaves the work to it
        self.sent = 0
        self.dropped = 0  # for either reason
        self.shed = 0  # of which because the gateway was saturated

    def start(self) -> None:
        """Start sending (copies submitted before wait in the queue)."""
        if self._queue_size <= 0:
            return
        self._running = True
        self._take()

    def overloaded(self) -> bool:
        """Whether the gateway is saturated right now (never, with shedding switched off)."""
        lag = self._lag
        return lag is not None and (lag.lag_s > self._shed_lag_s or lag.busy >= SHED_BUSY_SHARE)

    def submit(self, copy: ShadowCopy) -> bool:
        """Sends or queues ``copy``; False when it was dropped or shed instead (and counted
        so). Never waits."""
        affordable = self._affordable()  # the controller follows the loop in overloads too
        if self.overloaded() or not affordable:
            self.shed += 1
            self._drop(copy, "overload")
            return False
        if self._queue_size > 0:
            if self._running and self._in_flight < self._concurrency and not self._waiting:
                self._send(copy)
                return True
            if len(self._waiting) < self._queue_size:
                self._waiting.append(copy)
                return True
        self._drop(copy, "queue_full")
        return False

    def _affordable(self) -> bool:
        """Whether this copy is among the share the loop can afford (always, with shedding
        switched off)."""
        lag = self._lag
        if lag is None:
            return True
        self.admission.observe(lag.busy)
        return self.admission.admit()

    def _drop(self, copy: ShadowCopy, reason: str) -> None:
        self.dropped += 1
        self._metrics.shadow_dropped.labels(copy.model, reason).inc()

    def _take(self) -> None:
        """Send queued copies while fewer than ``concurrency`` are in flight; a copy taken
        from the queue while the gateway is saturated is shed instead."""
        if self._taking:
            return
        self._taking = True
        try:
            waiting = self._waiting
            while self._running and waiting and self._in_flight < self._concurrency:
                copy = waiting.popleft()
                if self.overloaded():
                    self.shed += 1
                    self._drop(copy, "overload")
                    continue
                self._send(copy)
        finally:
            self._taking = False

    def _send(self, copy: ShadowCopy) -> None:
        self._in_flight += 1
        try:
            if copy.on_sent is not None:
                copy.on_sent()
            arm = copy.arm
            self._upstream.send(
                copy.method,
                arm.serving_url,
                copy.path,
                copy.headers,
                copy.body,
                partial(self._answered, copy),
            )
        except Exception:  # a bug here must not reach the champion's request
            log.exception("shadow request failed unexpectedly")
            self._in_flight -= 1

    def _answered(self, copy: ShadowCopy, result: UpstreamResponse) -> None:
        """The challenger's answer to ``copy``, into its statistics; then the next copy."""
        self._in_flight -= 1
        try:
            self._record(copy, result)
        except Exception:
            log.exception("shadow request failed unexpectedly")
        self._take()

    def _record(self, copy: ShadowCopy, result: UpstreamResponse) -> None:
        arm = copy.arm
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
        """Give queued and in-flight copies ``drain_s`` seconds to finish; drop the rest of
        the queue (uncounted: the gateway is stopping)."""
        deadline = time.monotonic() + drain_s
        while (self._waiting or self._in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._running = False
        self._waiting.clear()
