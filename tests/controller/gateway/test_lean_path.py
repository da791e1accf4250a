"""What the lean request path batches or checks less often stays exact: request metrics folded
at scrape time equal one observation at a time, upstream timeouts from the deadline sweep
still fire on time, and request-id MACs from the cached keyed state are plain keyed BLAKE2b."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from hashlib import blake2b
from pathlib import Path

import pytest

from controller.gateway.metrics import LATENCY_BUCKETS, GatewayMetrics
from controller.gateway.request_id import RequestIdSigner
from controller.gateway.upstream import DEADLINE_TICK_S, TIMEOUT, Upstream


def _series(text: str) -> dict[str, float]:
    """The request and duration series of a scrape, by name and labels (sums rounded: added
    in another order, floats may differ in their last bits)."""
    found = {}
    for line in text.splitlines():
        match = re.match(
            r"(shelf_gateway_request(?:s_total|_duration_seconds_\w+)\{.*\}) (.+)$", line
        )
        if match and "_created" not in match.group(1):
            found[match.group(1)] = round(float(match.group(2)), 9)
    return found


def test_batched_request_metrics_render_like_one_observation_at_a_time() -> None:
    batched = GatewayMetrics()
    reference = GatewayMetrics()
    rng = random.Random(12)
    # Bucket bounds themselves (``le`` is inclusive), values between and beyond them.
    seconds = [*LATENCY_BUCKETS, 0.0, 0.0004, 31.0, *(rng.expovariate(50) for _ in range(300))]
    for index, value in enumerate(seconds):
        arm = ("champion", "challenger")[index % 2]
        outcome = ("2xx", "5xx", "timeout")[index % 3]
        latency = None if outcome == "timeout" else value
        batched.observe_request("m", str(1 + index % 2), arm, outcome, latency)
        reference.requests.labels("m", str(1 + index % 2), arm, outcome).inc()
        if latency is not None:
            reference.duration.labels("m", arm).observe(latency)
        if index == 150:  # a scrape in between: folded once, never twice
            assert _series(batched.render().decode()) == _series(reference.render().decode())
    expected = _series(reference.render().decode())
    assert expected and _series(batched.render().decode()) == expected
    assert _series(batched.render().decode()) == expected  # a second scrape adds nothing


def test_multiprocess_metrics_are_written_at_once(tmp_path: Path) -> None:
    # Under ``--workers`` another worker may answer the scrape: nothing waits in this one.
    metrics = GatewayMetrics(tmp_path)
    metrics.observe_request("m", "1", "champion", "2xx", 0.002)
    assert metrics.requests.labels("m", "1", "champion", "2xx")._value.get() == 1


async def _silent_upstream() -> tuple[asyncio.AbstractServer, int]:
    """Accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


def test_upstream_timeouts_fire_within_a_tick() -> None:
    async def scenario() -> None:
        server, port = await _silent_upstream()
        upstream = Upstream(10, 0.3)
        try:
            started = time.perf_counter()
            calls = asyncio.gather(
                *(
                    upstream.call("POST", f"http://127.0.0.1:{port}", "/infer", [], b"{}")
                    for _ in range(3)
                )
            )
            results = await asyncio.wait_for(calls, 5)  # a sweep that never fires fails here
            elapsed = time.perf_counter() - started
            assert [r.outcome for r in results] == [TIMEOUT] * 3
            # On time give or take a tick (plus slack for a loaded test machine).
            assert all(0.3 <= r.latency_s < 0.3 + DEADLINE_TICK_S + 0.2 for r in results)
            assert elapsed < 0.3 + DEADLINE_TICK_S + 0.25
            assert not upstream._deadlines  # nothing left behind to expire later
        finally:
            await upstream.close()
            server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("key", [b"short-key", b"k" * 100])
def test_request_id_mac_is_keyed_blake2b(key: bytes) -> None:
    signer = RequestIdSigner(key)
    for _ in range(2):  # the cached keyed state is copied, never consumed
        token = signer.issue(3, 9, 1, "cat", 1_700_000_000)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body, mac = raw[:-16], raw[-16:]
        mac_key = key if len(key) <= 64 else blake2b(key).digest()
        assert mac == blake2b(body, key=mac_key, digest_size=16).digest()
        assert signer.verify(token).predicted_class == "cat"
