"""A small Open Inference Protocol v2 model server with dials for failure, latency and drift.

Run: ``python -m shelf.demo.model_server --port 9001 --error-rate 0.0 --latency-ms 5
--latency-jitter 0.3 --class-bias 0.0 --accuracy 0.9 --version-name v1``.

Every input has a deterministic *true label*: ``int(abs(x0)) % 3`` of its first number ``x0``
(see ``true_label``), so a client can send feedback. The server predicts the true label with
probability ``accuracy`` and another class otherwise; with probability ``class_bias`` it
predicts class "0" whatever the input (a shifted prediction distribution). ``error_rate`` of
requests get a 500. Latency is ``latency_ms`` times a log-normal factor of spread
``latency_jitter``.

Endpoints: ``POST /v2/models/{name}/infer``, ``GET /v2/health/ready``, ``GET /v2/health/live``,
``GET /v2/models/{name}``, ``POST /dials`` (turn the dials of a running server: a JSON object
of ``error_rate``, ``latency_ms``, ``class_bias``, ``accuracy``; the drifting champion of the
quickstart's third act), ``POST /predict`` (a non-OIP shape:
``{"prediction": {"label": …, "score": …}}``), ``/echo/…`` (returns what it received) and
``GET /metrics``: Prometheus counters ``model_requests_total{version, code}`` and the histogram
``model_request_duration_seconds{version}`` of the inference requests it served, as a model
server behind someone else's traffic split exports them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CLASSES = ("0", "1", "2")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def true_label(x0: float) -> str:
    return CLASSES[int(abs(x0)) % len(CLASSES)]


def first_number(document: Any) -> float:
    """The first number of the first input (OIP) or of ``instances``/``x`` (other shapes)."""
    try:
        if "inputs" in document:
            data = document["inputs"][0]["data"]
        else:
            data = document.get("instances", document.get("x", [0]))
        while isinstance(data, list):
            data = data[0]
        return float(data)
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0


@dataclass
class ServerConfig:
    error_rate: float = 0.0
    latency_ms: float = 5.0
    latency_jitter: float = 0.3
    class_bias: float = 0.0
    accuracy: float = 0.9
    version_name: str = "v1"
    seed: int | None = None


DIALS = frozenset({"error_rate", "latency_ms", "class_bias", "accuracy"})
DURATION_BUCKETS = (
    0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip


class ServedMetrics:
    """What the server exports at ``/metrics``, in its own registry."""

    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "model_requests",
            "Inference requests served, by version and status code",
            ["version", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "model_request_duration_seconds",
            "Time to answer an inference request",
            ["version"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        ).labels(version)
        self.version = version

    def observe(self, status: int, seconds: float) -> None:
        self.requests.labels(self.version, str(status)).inc()
        self.duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.requests = 0
        self.metrics = ServedMetrics(config.version_name)

    def predict(self, x0: float) -> tuple[str, list[float]]:
        c, rng = self.config, self.rng
        truth = true_label(x0)
        if rng.random() < c.class_bias:
            predicted = CLASSES[0]
        elif rng.random() < c.accuracy:
            predicted = truth
        else:
            predicted = rng.choice([k for k in CLASSES if k != truth])
        top = 0.4 + 0.55 * rng.random()
        rest = (1.0 - top) / (len(CLASSES) - 1)
        return predicted, [top if k == predicted else rest for k in CLASSES]

    def turn_dials(self, body: bytes) -> tuple[int, Any]:
        try:
            dials = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, {"error": "body is not JSON"}
        if not isinstance(dials, dict) or not set(dials) <= DIALS:
            return 400, {"error": f"an object of {', '.join(sorted(DIALS))}"}
        for name, value in dials.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                return 400, {"error": f"{name} must be a non-negative number"}
        for name, value in dials.items():
            setattr(self.config, name, float(value))
        return 200, {name: getattr(self.config, name) for name in sorted(DIALS)}

    async def delay(self) -> None:
        c = self.config
        if c.latency_ms > 0:
            factor = math.exp(c.latency_jitter * self.rng.gauss(0.0, 1.0))
            await asyncio.sleep(c.latency_ms * factor / 1000.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/metrics":
            await self._respond(send, 200, self.metrics.render(), CONTENT_TYPE_LATEST.encode())
            return
        started = time.perf_counter()
        status, payload = await self.handle(scope, body)
        if self._is_inference(scope):
            self.metrics.observe(status, time.perf_counter() - started)
        await self._respond(send, status, orjson.dumps(payload), b"application/json")

    @staticmethod
    def _is_inference(scope: Scope) -> bool:
        path: str = scope["path"]
        return scope["method"] == "POST" and (path.endswith("/infer") or path == "/predict")

    async def _respond(self, send: Send, status: int, out: bytes, content_type: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(out)).encode()),
                    (b"x-model-version", self.config.version_name.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": out})

    async def handle(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/echo"):
            return 200, {
                "method": method,
                "path": path,
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "body": body.decode("utf-8", "replace"),
                "version": self.config.version_name,
            }
        if path in ("/v2/health/ready", "/v2/health/live"):
            return 200, {"ready": True, "live": True}
        if path == "/dials" and method == "POST":
            return self.turn_dials(body)
        parts = path.strip("/").split("/")
        is_infer = len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer"
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v2", "models"]:
            return 200, {"name": parts[2], "versions": [self.config.version_name]}
        if method != "POST" or not (is_infer or path == "/predict"):
            return 404, {"error": "not_found", "path": path}
        self.requests += 1
        await self.delay()
        if self.rng.random() < self.config.error_rate:
            return 500, {"error": "injected failure"}
        try:
            document = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return 400, {"error": "body is not JSON"}
        predicted, probabilities = self.predict(first_number(document))
        if not is_infer:
            return 200, {"prediction": {"label": predicted, "score": max(probabilities)}}
        return 200, {
            "model_name": parts[2],
            "model_version": self.config.version_name,
            "id": document.get("id", "") if isinstance(document, dict) else "",
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [1], "data": [predicted]},
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": [1, len(CLASSES)],
                    "data": probabilities,
                },
            ],
        }


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, ServerConfig]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--latency-jitter", type=float, default=0.3)
    parser.add_argument("--class-bias", type=float, default=0.0)
    parser.add_argument("--accuracy", type=float, default=0.9)
    parser.add_argument("--version-name", default="v1")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    config = ServerConfig(
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        latency_jitter=args.latency_jitter,
        class_bias=args.class_bias,
        accuracy=args.accuracy,
        version_name=args.version_name,
        seed=args.seed,
    )
    return args, config


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args, config = parse_args(argv)
    uvicorn.run(
        ModelServer(config),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
