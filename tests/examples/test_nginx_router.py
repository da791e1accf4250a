"""examples/nginx_router.py drives a real nginx: Shelf's desired weights in, nginx's split out."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shelf.demo.processes import Process, free_port, start_model_server, wait_http
from tests.conftest import IN_CI

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SECRET = "router-secret-0123456789"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    include {home}/shelf-upstreams.conf;
    server {{
        listen 127.0.0.1:{port};
        location /v2/models/fraud/ {{
            proxy_pass http://shelf_fraud;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Split:
    nginx_url: str
    router_url: str
    v1: Process
    v2: Process

    def send(self, desired: dict[str, object], secret: str = SECRET) -> httpx.Response:
        body = json.dumps(desired).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Shelf-Signature": signature, "Content-Type": "application/json"}
        return httpx.post(self.router_url, content=body, headers=headers, timeout=20)

    def versions(self, requests: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}
        with httpx.Client() as client:
            for _ in range(requests):
                answer = client.post(f"{self.nginx_url}/v2/models/fraud/infer", json=body)
                seen[answer.headers["x-model-version"]] += 1
        return seen


@pytest.fixture
def split(tmp_path: Path) -> Iterator[Split]:
    if NGINX is None:
        if IN_CI:
            pytest.fail("CI=true but nginx is not installed")
        pytest.skip("nginx not installed")
    v1 = start_model_server("fraud-v1", tmp_path / "logs", latency_ms=0.5)
    v2 = start_model_server("fraud-v2", tmp_path / "logs", latency_ms=0.5)
    nginx_port, router_port, status_port = free_port(), free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(home=tmp_path, port=nginx_port))
    router = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "nginx_router.py"),
            "--port",
            str(router_port),
            "--secret",
            SECRET,
            "--include",
            str(tmp_path / "shelf-upstreams.conf"),
            "--nginx-conf",
            str(conf),
            "--nginx-prefix",
            str(tmp_path),
            "--nginx",
            NGINX,
            "--status-port",
            str(status_port),
            "--initial",
            f"fraud={v1.url}",
        ],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "shelf-upstreams.conf").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)])
    try:
        wait_http(f"http://127.0.0.1:{status_port}/shelf/revision", nginx)
        yield Split(f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{router_port}", v1, v2)
    finally:
        for process in (router, nginx):
            process.terminate()
            process.wait(timeout=10)
        v1.stop()
        v2.stop()


def _desired(split: Split, bp: int, revision: int) -> dict[str, object]:
    return {
        "event": "router.weights",
        "model": "fraud",
        "rollout_id": 1,
        "revision": revision,
        "state": "canary",
        "challenger_weight_bp": bp,
        "mirror": False,
        "champion": {"version": 1, "serving_url": split.v1.url},
        "challenger": {"version": 2, "serving_url": split.v2.url},
    }


def test_weights_become_nginx_behaviour(split: Split) -> None:
    assert split.versions(20) == Counter({"fraud-v1": 20})

    answer = split.send(_desired(split, 5000, revision=2))
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied_revision"] >= 2
    half = split.versions(200)
    assert 80 <= half["fraud-v2"] <= 120, half  # nginx's weighted round robin: close to 50 %

    assert split.send(_desired(split, 0, revision=3)).status_code == 200  # a rollback
    assert split.versions(50) == Counter({"fraud-v1": 50})

    forged = split.send(_desired(split, 10_000, revision=4), secret="not-the-secret-0123")
    assert forged.status_code == 401
    assert split.versions(20) == Counter({"fraud-v1": 20})
    invalid = split.send({**_desired(split, 20_000, revision=5)})
    assert invalid.status_code == 422
