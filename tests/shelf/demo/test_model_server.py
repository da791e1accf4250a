"""The demo model server exports what it served as Prometheus metrics, as model servers behind
someone else's traffic split do (the source Shelf's Prometheus guardrails read)."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shelf.demo.model_server import ModelServer, ServerConfig

BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [4]}]}


async def _serve(config: ServerConfig, requests: int) -> dict[str, float]:
    transport = httpx.ASGITransport(app=ModelServer(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
        for _ in range(requests):
            await client.post("/v2/models/fraud/infer", json=BODY)
        await client.get("/v2/health/ready")  # not an inference: not counted
        text = (await client.get("/metrics")).text
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_inferences_by_version_and_code() -> None:
    healthy = asyncio.run(_serve(ServerConfig(latency_ms=0, version_name="fraud-v1"), 5))
    assert healthy["model_requests_total[('code', '200'), ('version', 'fraud-v1')]"] == 5
    assert healthy["model_request_duration_seconds_count[('version', 'fraud-v1')]"] == 5
    assert (
        healthy["model_request_duration_seconds_bucket[('le', '+Inf'), ('version', 'fraud-v1')]"]
        == 5
    )

    failing = asyncio.run(
        _serve(ServerConfig(latency_ms=0, error_rate=1.0, version_name="fraud-v2"), 3)
    )
    assert failing["model_requests_total[('code', '500'), ('version', 'fraud-v2')]"] == 3
    assert not any("'200'" in key for key in failing if key.startswith("model_requests_total"))
