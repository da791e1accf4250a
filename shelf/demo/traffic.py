"""Synthetic live traffic for demos, end-to-end tests and benchmarks: concurrent OIP v2
inference requests through the gateway, and delayed ground-truth feedback for a share of them.

The demo model servers (``shelf.demo.model_server``) treat ``int(first input) % 3`` as an
input's true class, so the labels sent back here are the truth the servers are judged by."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

CLASSES = 3


def true_label(value: int) -> str:
    return str(value % CLASSES)


@dataclass(frozen=True)
class Served:
    """One request as the client saw it (monotonic seconds)."""

    sent: float
    done: float
    status: int
    version: str | None


@dataclass
class TrafficStats:
    by_version: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    feedback_sent: int = 0
    feedback_rejected: int = 0
    transport_errors: int = 0


class Traffic:
    """Runs ``concurrency`` request loops on a private event loop in a background thread.

    ``label_fraction`` of answered requests get their true label posted to ``/v1/feedback``
    ``label_delay_s`` later (ground truth arrives late and only for some requests).
    ``keep_log`` records every request's timing and answering version (benchmarks)."""

    def __init__(
        self,
        gateway_url: str,
        model: str,
        concurrency: int = 8,
        label_fraction: float = 0.3,
        label_delay_s: float = 1.0,
        keep_log: bool = False,
        seed: int | None = None,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.label_fraction = label_fraction
        self.label_delay_s = label_delay_s
        self.keep_log = keep_log
        self.stats = TrafficStats()
        self.log: list[Served] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="shelf-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            feedback: asyncio.Queue[tuple[float, str, str]] = asyncio.Queue()
            workers = [
                asyncio.create_task(self._worker(client, feedback)) for _ in range(self.concurrency)
            ]
            # Several senders, so labels keep up with the traffic instead of queueing behind it.
            senders = [
                asyncio.create_task(self._send_feedback(client, feedback))
                for _ in range(max(1, self.concurrency // 2))
            ]
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            # Let requests in flight finish, so every request the gateway answered is counted.
            await asyncio.wait(workers, timeout=35)
            for task in [*workers, *senders]:
                task.cancel()
            await asyncio.gather(*workers, *senders, return_exceptions=True)

    async def _worker(
        self, client: httpx.AsyncClient, feedback: asyncio.Queue[tuple[float, str, str]]
    ) -> None:
        url = f"{self.gateway_url}/v2/models/{self.model}/infer"
        while not self._stop.is_set():
            value = self._random.randrange(1_000_000)
            body = {
                "inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [value, 1]}]
            }
            headers = {"X-Shelf-Routing-Key": f"user-{self._random.randrange(10**9)}"}
            sent = time.monotonic()
            try:
                response = await client.post(url, json=body, headers=headers)
            except httpx.HTTPError:
                self.stats.transport_errors += 1
                await asyncio.sleep(0.05)
                continue
            done = time.monotonic()
            version = response.headers.get("x-shelf-version")
            self.stats.statuses[response.status_code] += 1
            if version is not None:
                self.stats.by_version[version] += 1
            if self.keep_log:
                self.log.append(Served(sent, done, response.status_code, version))
            request_id = response.headers.get("x-shelf-request-id")
            if (
                request_id
                and response.status_code == 200
                and self._random.random() < self.label_fraction
            ):
                feedback.put_nowait((done + self.label_delay_s, request_id, true_label(value)))

    async def _send_feedback(
        self, client: httpx.AsyncClient, queue: asyncio.Queue[tuple[float, str, str]]
    ) -> None:
        url = f"{self.gateway_url}/v1/feedback"
        while True:
            due, request_id, label = await queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                response = await client.post(url, json={"request_id": request_id, "label": label})
            except httpx.HTTPError:
                self.stats.feedback_rejected += 1
                continue
            if response.status_code < 300:
                self.stats.feedback_sent += 1
            else:
                self.stats.feedback_rejected += 1
