"""The gateway ASGI app: routes, proxies, mirrors and measures; ``create_gateway_app`` builds it.

Endpoints: ``/{model}/{path…}`` (proxied to the serving URL + ``/{path…}``),
``/v2/models/{model}/…`` (Open Inference Protocol v2, proxied with its path unchanged),
``POST /v1/feedback``, ``GET /v1/routes``, ``/healthz``, ``/readyz`` and ``/metrics``. Those
exact paths are reserved; every other path is a model's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from controller.config import ControllerSettings
from controller.gateway.asgi import (
    REQUEST_SKIP,
    BodyTooLarge,
    Headers,
    Receive,
    Reply,
    Scope,
    Send,
    error_reply,
    read_body,
    send_bytes,
    send_error,
    send_json,
    send_reply,
)
from controller.gateway.feedback import FeedbackIntake
from controller.gateway.forced import (
    ARM_HEADER,
    TOKEN_HEADER,
    ForcedArmPolicy,
    ForcedArmRefused,
    forced_arm,
    is_loopback,
)
from controller.gateway.inputs import InputSampler, input_summaries
from controller.gateway.loop_lag import LoopLag
from controller.gateway.metrics import GatewayMetrics
from controller.gateway.paths import TargetCache, UnsafePath
from controller.gateway.prediction import PredictionParser
from controller.gateway.recorder import Recorder, default_replica_id
from controller.gateway.request_id import RequestIdSigner
from controller.gateway.route import Route, RouteArm
from controller.gateway.routing import RoutingTable, RoutingTableSource, clocks_of
from controller.gateway.secret import gateway_secret
from controller.gateway.shadow import ShadowCopy, ShadowMirror
from controller.gateway.split import draw, pick_at
from controller.gateway.upstream import TIMEOUT, Upstream, UpstreamResponse, content_type
from registry.auth import Authenticator
from registry.config import Role
from registry.db.session import Database
from registry.errors import ShelfError

log = logging.getLogger(__name__)

ROUTING_KEY = b"x-shelf-routing-key"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
DRAIN_S = 10.0
SHADOW_DRAIN_S = 2.0


class GatewayApp:
    def __init__(self, settings: ControllerSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.metrics = GatewayMetrics(settings.gateway_metrics_dir)
        self.parser = PredictionParser(
            settings.gateway_prediction_path, settings.gateway_confidence_path
        )
        self.signer = RequestIdSigner(gateway_secret(settings))
        self.recorder = Recorder(
            database,
            settings.replica_id or default_replica_id(),
            on_flush_failure=self.metrics.flush_failures.inc,
            max_pending_arms=settings.gateway_stats_max_pending_arms,
            on_drop=self.metrics.stats_dropped.inc,
            champion_block_s=settings.champion_block_s,
        )
        self._input_sampler = InputSampler(settings.gateway_input_samples_per_s)
        self.routes = RoutingTableSource(
            database, settings.gateway_refresh_interval_s, on_change=self._routes_changed
        )
        self.feedback = FeedbackIntake(
            self.signer,
            database,
            self.recorder,
            settings.feedback_ttl_hours,
            settings.champion_block_s,
        )
        self.max_body = settings.max_request_body_mb * 1024 * 1024
        # Only ``GET /v1/routes`` and forced arms read tokens: the data plane itself trusts no
        # caller (docs/security.md, "The gateway").
        self.authenticator = Authenticator(settings.all_tokens())
        self.forcing = ForcedArmPolicy(settings.gateway_forced_arm, self.authenticator)
        self.lag = LoopLag()
        self.targets = TargetCache()
        self.upstream: Upstream | None = None
        self.shadow: ShadowMirror | None = None
        self.in_flight = 0
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reserved = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/v1/routes": self._routes,
            "/v1/feedback": self._feedback,
        }

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            handler = self._reserved.get(path)
            if handler is not None:
                await handler(scope, receive, send)
                return
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                    await send_reply(send, self.too_large())
                    return
            try:
                body = await read_body(receive, self.max_body)
            except BodyTooLarge:
                await send_reply(send, self.too_large())
                return
            raw: bytes = scope.get("raw_path") or path.encode()
            client = scope.get("client")
            reply, copy = await self.proxy(
                scope["method"],
                raw,
                scope["query_string"],
                scope["headers"],
                body,
                client[0] if client else None,
            )
            await send_reply(send, reply)
            if copy is not None:
                self.mirror(copy)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def is_reserved(self, path: str) -> bool:
        """Whether ``path`` is one of the gateway's own endpoints rather than a model's."""
        return path in self._reserved

    # -- the hot path ----------------------------------------------------------------------

    async def proxy(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: Headers,
        body: bytes,
        client_host: str | None = None,
    ) -> tuple[Reply, ShadowCopy | None]:
        """:meth:`answer` for a caller that awaits (the ASGI entry)."""
        answered: asyncio.Future[tuple[Reply, ShadowCopy | None]] = (
            asyncio.get_running_loop().create_future()
        )

        def done(reply: Reply, copy: ShadowCopy | None) -> None:
            answered.set_result((reply, copy))

        self.answer(method, raw_path, query, headers, body, client_host, done)
        return await answered

    def answer(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: Headers,
        body: bytes,
        client_host: str | None,
        done: Answered,
    ) -> None:
        """Answer a proxied request whose body was read (at most ``max_body`` bytes): ``done``
        gets the answer and the copy to mirror to the challenger once that answer is written,
        if any (a copy sent earlier would compete with the champion's answer for the event
        loop). Callbacks, not a coroutine: the upstream's answer arrives in a parser callback
        and is settled there (:meth:`_answered`), so the common case costs no task wake-up
        (each wake-up was a few µs of the gateway's CPU per request, profiled). ``done`` runs
        once, maybe before this returns (an error answered by the gateway itself)."""
        try:
            model, upstream_path = self.targets.split(raw_path)
        except UnsafePath as exc:
            self.metrics.rejected.labels("bad_path").inc()
            done(error_reply(400, "bad_request", str(exc)), None)
            return
        if query:
            upstream_path = f"{upstream_path}?{query.decode('latin-1')}"
        route = self.routes.table.get(model)
        upstream = self.upstream
        if route is None or upstream is None:
            self.metrics.rejected.labels("not_found").inc()
            done(error_reply(404, "not_found", f"no model {model!r} is served here"), None)
            return
        forward: Headers = []
        key: bytes | None = None
        arm_name: bytes | None = None
        token: bytes | None = None
        for name, value in headers:
            if name in REQUEST_SKIP:
                continue
            if name == ROUTING_KEY:
                key = value
            elif name == ARM_HEADER:
                arm_name = value
                continue
            elif name == TOKEN_HEADER:
                token = value
                continue
            forward.append((name, value))
        forced: RouteArm | None = None
        if arm_name is not None:
            try:
                self.forcing.check(token, client_host)
                forced = forced_arm(route, arm_name.decode("latin-1"))
            except ForcedArmRefused as refused:
                self.metrics.forced_refused.labels(model, refused.reason).inc()
                done(error_reply(refused.status, refused.code, refused.message), None)
                return
        choice = self._choose(route, key, forced)
        call = _Call(self, route, choice, forced, method, upstream_path, forward, body, done)
        self.in_flight += 1
        try:
            upstream.send(
                method, choice[0].serving_url, upstream_path, forward, body, call.answered
            )
        except BaseException:
            self.in_flight -= 1
            raise

    def _answered(self, call: _Call, result: UpstreamResponse) -> None:
        """The upstream answered ``call`` (or failed): retry it on the champion, or settle it."""
        try:
            settled = self._settle(call, result)
        except Exception:
            log.exception("gateway request failed")
            settled = error_reply(500, "internal_error", "the gateway failed to answer"), None
        if settled is None:
            return  # sent again, to the champion
        self.in_flight -= 1
        call.done(*settled)

    def _settle(
        self, call: _Call, result: UpstreamResponse
    ) -> tuple[Reply, ShadowCopy | None] | None:
        """The client's answer and the shadow copy for ``call``'s upstream ``result``, after
        its metrics and statistics; None when a challenger's failure was sent to the champion
        instead (its answer comes back here)."""
        route = call.route
        arm = call.arm
        counted = call.counted
        body = call.body
        unit = call.unit
        self._observe(route, arm, result, call.forced)
        if (
            counted
            and arm is not route.champion
            and result.failed
            and self._retry_on_champion(result, call.method)
        ):
            self._record(arm, result, self._prediction(arm, result), body, unit)
            self.metrics.retried_on_champion.labels(route.model, result.outcome).inc()
            call.arm = champion = route.champion
            upstream = self.upstream
            assert upstream is not None
            upstream.send(
                call.method, champion.serving_url, call.path, call.headers, body, call.answered
            )
            return None
        prediction = self._prediction(arm, result) if counted else (None, None)
        mirror = call.mirror
        if counted and not mirror:
            self._record(arm, result, prediction, body, unit)
        reply = self._reply(route, arm, result, prediction[0], counted)
        challenger = route.challenger
        if not mirror or challenger is None:
            return reply, None
        # The champion's side of the comparison is the copies the challenger got: its answer
        # is recorded when the copy is sent, so a copy dropped (full queue) or shed (saturated
        # gateway) takes the champion's answer out of the statistics too and both arms are
        # measured on the same requests.
        copy = ShadowCopy(
            route.model,
            challenger,
            call.method,
            call.path,
            call.headers,
            body,
            prediction[0],
            unit,
            lambda: self._record(arm, result, prediction, body, unit),
        )
        return reply, copy

    def mirror(self, copy: ShadowCopy) -> None:
        """Queue a shadow copy (after the champion's answer went out); never blocks."""
        if self.shadow is not None:
            self.shadow.submit(copy)

    def _choose(
        self, route: Route, key: bytes | None, forced: RouteArm | None
    ) -> tuple[RouteArm, int | None, bool, bool]:
        """The arm that answers; the routing key's unit bucket (the unit the variance follows;
        None: each request its own); whether a shadow copy goes to the challenger; whether the
        answer counts in the statistics."""
        # One draw per request: the key's point routes it and decides its mirroring, and its
        # unit bucket is the unit the variance follows.
        point, unit = draw(route.model.encode(), key)
        if route.rollout_id is None:
            unit = None
        arm = route.champion
        if forced is not None:
            arm = forced
        elif route.ranges and not route.mirror:
            position = pick_at(point, route.ranges)
            if position >= 0:
                arm = route.challengers[position]
        # A sampled shadow compares the arms on the mirrored requests only: the champion's
        # answers to the others are served and shown in the metrics, never judged.
        mirror = (
            forced is None
            and route.mirror
            and route.challenger is not None
            and self.shadow is not None
            and point < route.mirror_bp
        )
        return arm, unit, mirror, forced is None and (mirror or not route.mirror)

    def _reply(
        self,
        route: Route,
        arm: RouteArm,
        result: UpstreamResponse,
        predicted: str | None,
        counted: bool,
    ) -> Reply:
        """The client's answer: the upstream's (hop-by-hop headers dropped) or a 502/504, with
        the signed request id and the version that answered."""
        request_id = self.signer.issue(
            route.rollout_id, arm.version_id, arm.index, predicted, int(time.time()), counted
        )
        shelf = (
            (b"x-shelf-request-id", request_id.encode()),
            (b"x-shelf-version", arm.version_header),
        )
        if result.status:
            # The upstream client dropped the hop-by-hop headers already; the list is this
            # answer's alone, so it is extended in place.
            headers = result.headers
            headers.append((b"content-length", b"%d" % len(result.body)))
            headers += shelf
            return result.status, headers, result.body
        if result.outcome == TIMEOUT:
            return error_reply(
                504, "upstream_timeout", f"{route.model}@{arm.version} timed out", shelf
            )
        return error_reply(
            502,
            "upstream_error",
            f"{route.model}@{arm.version} could not be reached ({result.error})",
            shelf,
        )

    def _observe(
        self, route: Route, arm: RouteArm, result: UpstreamResponse, forced: RouteArm | None
    ) -> None:
        """One upstream call in the metrics; a ``forced`` one only in its own counter."""
        if forced is not None:
            self.metrics.forced.labels(
                route.model, arm.version_label, arm.name, result.outcome
            ).inc()
            return
        self.metrics.observe_request(
            route.model,
            arm.version_label,
            arm.name,
            result.outcome,
            result.latency_s if result.status else None,
        )

    def _prediction(
        self, arm: RouteArm, result: UpstreamResponse
    ) -> tuple[str | None, float | None]:
        """The answer's predicted class and confidence, for an arm whose statistics are kept."""
        if arm.stats_key is None or not result.status:
            return None, None
        return self.parser.parse(result.body, content_type(result.headers))

    def _record(
        self,
        arm: RouteArm,
        result: UpstreamResponse,
        prediction: tuple[str | None, float | None],
        body: bytes,
        unit: int | None,
    ) -> None:
        """One answer into its arm's statistics (and, for a champion outside rollouts, a
        sample of its inputs)."""
        stats_key = arm.stats_key
        if stats_key is None:
            return
        stats = self.recorder.arm(stats_key)
        predicted, confidence = prediction
        stats.record_response(result.outcome, result.latency_s, predicted, confidence, unit)
        # the champion outside rollouts: a sample of its inputs too
        if stats_key[0] is None and body and self._input_sampler.take(stats_key, len(body)):
            stats.record_inputs(input_summaries(body))

    def _retry_on_champion(self, result: UpstreamResponse, method: str) -> bool:
        """Whether a challenger's failure is retried on the champion: a failure before any
        response byte always (the client has seen nothing), a timeout as configured."""
        settings = self.settings
        if not settings.gateway_retry_on_champion:
            return False
        if result.unanswered:
            return True
        if result.outcome != TIMEOUT:
            return False
        policy = settings.gateway_retry_timeouts
        return policy == "always" or (policy == "idempotent" and method in IDEMPOTENT_METHODS)

    def too_large(self) -> Reply:
        """The answer to a request body beyond ``max_request_body_mb``."""
        self.metrics.rejected.labels("too_large").inc()
        return error_reply(
            413,
            "payload_too_large",
            f"request body exceeds {self.settings.max_request_body_mb} MB",
        )

    # -- operational endpoints -------------------------------------------------------------

    async def _healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "ok"})

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        def ping() -> None:
            with self.database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        checks = {"routing_table": "ok" if self.routes.loaded else "not loaded yet"}
        try:
            await asyncio.wait_for(asyncio.to_thread(ping), timeout=5)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {exc}".splitlines()[0][:300]
        ready = all(v == "ok" for v in checks.values())
        await send_json(send, 200 if ready else 503, {"ready": ready, "checks": checks})

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.metrics.render()
        await send_bytes(
            send,
            200,
            body,
            [
                (b"content-type", self.metrics.content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        )

    async def _routes(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The routing table; serving URLs only for a caller with a token (any role), or, on a
        gateway without tokens, a caller on loopback (the embedded default)."""
        try:
            with_urls = self._may_see_urls(scope)
        except ShelfError as exc:
            await send_error(send, exc.status_code, exc.code, exc.message)
            return
        table = self.routes.table
        await send_json(
            send,
            200,
            {
                "replica_id": self.recorder.replica_id,
                "loaded": self.routes.loaded,
                "listening": self.routes.listening,
                "urls_shown": with_urls,
                "models": {name: route.to_json(with_urls) for name, route in table.items()},
            },
        )

    def _may_see_urls(self, scope: Scope) -> bool:
        authorization = next(
            (value for name, value in scope["headers"] if name == b"authorization"), None
        )
        if self.authenticator.is_open:
            client = scope.get("client")
            return client is not None and is_loopback(client[0])
        if authorization is None:
            return False
        self.authenticator.authenticate(authorization.decode("latin-1")).require(Role.read)
        return True

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(send, 405, "method_not_allowed", "POST a JSON body")
            return
        try:
            body = await read_body(receive, 64 * 1024)
        except BodyTooLarge:
            await send_error(send, 413, "payload_too_large", "feedback bodies are at most 64 KB")
            return
        result = await self.feedback.submit(body)
        self.metrics.feedback.labels(str(result.status)).inc()
        await send_json(send, result.status, result.payload)

    # -- lifecycle -------------------------------------------------------------------------

    def _routes_changed(self, table: RoutingTable) -> None:
        self.metrics.set_weights({name: route.weight_bp for name, route in table.items()})
        self.recorder.set_clocks(clocks_of(table))
        self.lag.measure(any(route.mirror for route in table.values()))  # only the shadow reads it

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        settings = self.settings
        self._stop = stop = asyncio.Event()
        self.upstream = Upstream(
            settings.gateway_max_connections,
            settings.gateway_upstream_timeout_s,
            settings.outbound_policy(),
        )
        self.shadow = ShadowMirror(
            self.upstream,
            self.recorder,
            self.parser,
            self.metrics,
            settings.gateway_shadow_queue,
            settings.gateway_shadow_concurrency,
            self.lag,
            settings.gateway_shadow_shed_lag_ms / 1000.0,
            settings.gateway_shadow_busy_target,
        )
        self.shadow.start()
        await self.routes.refresh()
        self._tasks = [
            asyncio.create_task(
                self.routes.run(stop, self.metrics.routing_refresh_failures.inc), name="routing"
            ),
            asyncio.create_task(
                self.recorder.run(settings.gateway_flush_interval_s, stop), name="flush"
            ),
            asyncio.create_task(self.lag.run(stop), name="loop-lag"),
        ]
        if self.database.engine.dialect.name == "postgresql":
            self._tasks.append(asyncio.create_task(self.routes.listen(stop), name="listen"))

    async def shutdown(self) -> None:
        """Let in-flight requests finish, then queued shadow copies, flush the statistics."""
        deadline = time.monotonic() + DRAIN_S
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.shadow is not None:
            await self.shadow.stop(SHADOW_DRAIN_S)
        if self._stop is not None:
            self._stop.set()
        flush_task = None
        for task in self._tasks:
            if task.get_name() == "flush":
                flush_task = task
            else:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        del flush_task
        self._tasks = []
        await self.recorder.final_flush()
        self.routes.close()
        if self.upstream is not None:
            await self.upstream.close()


Answered = Callable[[Reply, ShadowCopy | None], None]


class _Call:
    """A proxied request between its upstream call and its answer: what settling it needs."""

    __slots__ = (
        "app",
        "arm",
        "body",
        "counted",
        "done",
        "forced",
        "headers",
        "method",
        "mirror",
        "path",
        "route",
        "unit",
    )

    def __init__(
        self,
        app: GatewayApp,
        route: Route,
        choice: tuple[RouteArm, int | None, bool, bool],
        forced: RouteArm | None,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        done: Answered,
    ) -> None:
        self.app = app
        self.route = route
        self.arm, self.unit, self.mirror, self.counted = choice
        self.forced = forced
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.done = done

    def answered(self, result: UpstreamResponse) -> None:
        """The upstream's callback."""
        self.app._answered(self, result)


def create_gateway_app(settings: ControllerSettings, database: Database) -> Any:
    """The gateway as an ASGI app; serve it with uvicorn (lifespan on)."""
    return GatewayApp(settings, database)
