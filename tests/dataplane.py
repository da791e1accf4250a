"""A real nginx whose upstreams examples/nginx_router.py rewrites: the data plane of the
router tests (tests/examples, tests/e2e)."""

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shelf.demo.processes import free_port, wait_http
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
INFER = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}

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
        location /v2/models/{model}/ {{
            proxy_pass http://shelf_{model};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class NginxSplit:
    nginx_url: str
    router_url: str
    model: str
    secret: str

    def send(self, desired: dict[str, object], secret: str | None = None) -> httpx.Response:
        """POSTs ``desired`` to the receiver as Shelf's webhook router would."""
        body = json.dumps(desired).encode()
        key = (secret or self.secret).encode()
        signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        headers = {"X-Shelf-Signature": signature, "Content-Type": "application/json"}
        return httpx.post(self.router_url, content=body, headers=headers, timeout=20)

    def versions(self, requests: int) -> Counter[str]:
        """Which model server (its X-Model-Version) answered each of ``requests``."""
        seen: Counter[str] = Counter()
        with httpx.Client() as client:
            for _ in range(requests):
                answer = client.post(f"{self.nginx_url}/v2/models/{self.model}/infer", json=INFER)
                seen[answer.headers["x-model-version"]] += 1
        return seen


def nginx_or_skip() -> str:
    if NGINX is None:
        if IN_CI:
            pytest.fail("CI=true but nginx is not installed")
        pytest.skip("nginx not installed")
    return NGINX


@contextmanager
def nginx_split(home: Path, model: str, champion_url: str, secret: str) -> Iterator[NginxSplit]:
    """nginx on a free port routing ``model`` to ``champion_url``, and the example receiver."""
    binary = nginx_or_skip()
    home.mkdir(parents=True, exist_ok=True)
    nginx_port, router_port, status_port = free_port(), free_port(), free_port()
    conf = home / "nginx.conf"
    conf.write_text(NGINX_CONF.format(home=home, port=nginx_port, model=model))
    router = subprocess.Popen(
        [
            sys.executable, str(ROOT / "examples" / "nginx_router.py"),
            "--port", str(router_port), "--secret", secret,
            "--include", str(home / "shelf-upstreams.conf"),
            "--nginx-conf", str(conf), "--nginx-prefix", str(home), "--nginx", binary,
            "--status-port", str(status_port), "--initial", f"{model}={champion_url}",
            "--pid-file", str(home / "nginx.pid"),
        ],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not (home / "shelf-upstreams.conf").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    nginx = subprocess.Popen([binary, "-c", str(conf), "-p", str(home)])
    try:
        wait_http(f"http://127.0.0.1:{status_port}/shelf/revision", nginx)
        yield NginxSplit(
            f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{router_port}", model, secret
        )
    finally:
        for process in (router, nginx):
            process.terminate()
            process.wait(timeout=10)
