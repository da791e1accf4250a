"""examples/nginx_router.py drives a real nginx: Shelf's desired weights in, nginx's split out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shelf.demo.processes import start_model_server
from tests.dataplane import NginxSplit, nginx_or_skip, nginx_split

pytestmark = pytest.mark.e2e
SECRET = "router-secret-0123456789"


def _desired(champion: str, challenger: str, bp: int, revision: int) -> dict[str, object]:
    return {
        "event": "router.weights",
        "model": "fraud",
        "rollout_id": 1,
        "revision": revision,
        "state": "canary",
        "challenger_weight_bp": bp,
        "mirror": False,
        "champion": {"version": 1, "serving_url": champion},
        "challenger": {"version": 2, "serving_url": challenger},
    }


def test_weights_become_nginx_behaviour(tmp_path: Path) -> None:
    nginx_or_skip()
    v1 = start_model_server("fraud-v1", tmp_path / "logs", latency_ms=0.5)
    v2 = start_model_server("fraud-v2", tmp_path / "logs", latency_ms=0.5)
    try:
        with nginx_split(tmp_path / "nginx", "fraud", v1.url, SECRET) as split:
            _check(split, v1.url, v2.url)
    finally:
        v1.stop()
        v2.stop()


def _check(split: NginxSplit, v1: str, v2: str) -> None:
    assert split.versions(20) == Counter({"fraud-v1": 20})

    answer = split.send(_desired(v1, v2, 5000, revision=2))
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied_revision"] >= 2
    half = split.versions(200)
    assert 80 <= half["fraud-v2"] <= 120, half  # nginx's weighted round robin: close to 50 %

    assert split.send(_desired(v1, v2, 0, revision=3)).status_code == 200  # a rollback
    assert split.versions(50) == Counter({"fraud-v1": 50})

    forged = split.send(_desired(v1, v2, 10_000, revision=4), secret="not-the-secret-0123")
    assert forged.status_code == 401
    assert split.versions(20) == Counter({"fraud-v1": 20})
    assert split.send(_desired(v1, v2, 20_000, revision=5)).status_code == 422
