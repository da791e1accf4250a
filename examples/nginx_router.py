"""A Shelf router webhook for nginx: Shelf sends the weights it wants, this rewrites nginx's
upstreams and reloads it, then acknowledges once nginx serves the new configuration.

Shelf's ``webhook`` router POSTs, at every change of a rollout's weights (each step,
promotion, rollback, abort), a JSON body signed like Shelf's other webhooks
(``X-Shelf-Signature: sha256=<hex HMAC-SHA256 of the body>``)::

    {"event": "router.weights", "model": "fraud", "rollout_id": 3, "revision": 7,
     "state": "canary", "challenger_weight_bp": 1000, "mirror": false,
     "champion": {"version": 1, "serving_url": "http://10.0.0.5:9001"},
     "challenger": {"version": 2, "serving_url": "http://10.0.0.6:9001"}}

This receiver writes ``shelf-upstreams.conf`` (include it inside ``http {}`` of your nginx.conf)
with one ``upstream shelf_<model>`` per model, weighted ``10000 - bp`` for the champion and
``bp`` for the challenger (nginx's weighted round robin), plus a status server that reports
the applied revision; it runs ``nginx -s reload``, waits until nginx answers with the new
revision and every worker that ran the old configuration has exited (with ``--pid-file``), and
replies ``200 {"applied_revision": 7}``. Shelf counts the step as started only
then. Anything else (a bad signature, nginx refusing the configuration) is a non-2xx answer, and
Shelf retries.

Your nginx.conf routes a model to its upstream::

    http {
        include /etc/nginx/shelf/shelf-upstreams.conf;
        server {
            listen 80;
            location /v2/models/fraud/ { proxy_pass http://shelf_fraud; }
        }
    }

Run::

    python examples/nginx_router.py --port 9100 --secret "$SECRET" \\
        --include /etc/nginx/shelf/shelf-upstreams.conf --nginx-conf /etc/nginx/nginx.conf \\
        --status-port 9101 --pid-file /run/nginx.pid --initial fraud=http://10.0.0.5:9001

Standard library only, so it runs beside any nginx.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FULL_BP = 10_000
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def server_address(url: str) -> str:
    """``http://host:port/...`` -> ``host:port`` (nginx upstreams take addresses, not URLs)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only plain http:// serving URLs can be upstreams here, not {url!r}")
    return f"{parts.hostname}:{parts.port or 80}"


class NginxUpstreams:
    """The desired weights of every model, rendered as nginx configuration."""

    def __init__(self, include: Path, status_port: int) -> None:
        self.include = include
        self.status_port = status_port
        self.models: dict[str, dict[str, Any]] = {}
        self.revision = 0

    def set_champion(self, model: str, url: str) -> None:
        self.models[model] = {"champion": server_address(url), "challenger": None, "bp": 0}

    def apply(self, desired: dict[str, Any]) -> None:
        model = str(desired["model"])
        if not MODEL_NAME.match(model):
            raise ValueError(f"invalid model name {model!r}")
        bp = int(desired["challenger_weight_bp"])
        if not 0 <= bp <= FULL_BP:
            raise ValueError(f"challenger_weight_bp must be in [0, {FULL_BP}], got {bp}")
        challenger = desired.get("challenger")
        self.models[model] = {
            "champion": server_address(desired["champion"]["serving_url"]),
            "challenger": server_address(challenger["serving_url"]) if challenger else None,
            "bp": bp if challenger else 0,
        }
        self.revision = max(self.revision + 1, int(desired.get("revision", 0)))

    def render(self) -> str:
        lines = [f"# written by examples/nginx_router.py, revision {self.revision}"]
        for model, arms in sorted(self.models.items()):
            servers = []
            champion_weight = FULL_BP - arms["bp"]
            if champion_weight > 0:
                servers.append(f"server {arms['champion']} weight={champion_weight};")
            if arms["challenger"] and arms["bp"] > 0:
                servers.append(f"server {arms['challenger']} weight={arms['bp']};")
            body = " ".join(servers)
            lines.append(f"upstream shelf_{model.replace('.', '_')} {{ {body} keepalive 16; }}")
        lines.append(
            f"server {{ listen 127.0.0.1:{self.status_port}; "
            f'location = /shelf/revision {{ return 200 "{self.revision}"; }} }}'
        )
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        temporary = self.include.with_suffix(".tmp")
        temporary.write_text(self.render())
        temporary.replace(self.include)


class Router:
    """Applies desired weights to nginx, one change at a time."""

    def __init__(
        self, upstreams: NginxUpstreams, nginx: list[str], secret: bytes, pid_file: Path | None
    ) -> None:
        self.upstreams = upstreams
        self.nginx = nginx
        self.secret = secret
        self.pid_file = pid_file
        self.lock = threading.Lock()

    def verify(self, body: bytes, signature: str) -> bool:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def apply(self, desired: dict[str, Any]) -> int:
        """Rewrites, reloads, and returns the revision once nginx serves it."""
        with self.lock:
            self.upstreams.apply(desired)
            self.upstreams.write()
            test = subprocess.run([*self.nginx, "-t"], capture_output=True, text=True)
            if test.returncode != 0:
                raise RuntimeError(f"nginx refused the configuration: {test.stderr.strip()}")
            old_workers = self.workers()
            subprocess.run([*self.nginx, "-s", "reload"], check=True, capture_output=True)
            self.wait_applied(self.upstreams.revision, old_workers)
            return self.upstreams.revision

    def workers(self) -> set[int]:
        """The master's worker processes (Linux /proc); empty without --pid-file."""
        if self.pid_file is None:
            return set()
        try:
            master = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return set()
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == master:
                found.add(int(entry.name))
        return found

    def wait_applied(self, revision: int, old_workers: set[int], timeout_s: float = 10.0) -> None:
        """Until nginx serves ``revision`` and no worker of the old configuration is left to
        accept a connection with the old weights."""
        url = f"http://127.0.0.1:{self.upstreams.status_port}/shelf/revision"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    served = int(response.read().decode() or 0) >= revision
            except (OSError, ValueError):
                served = False
            if served and not (old_workers & self.workers()):
                return
            time.sleep(0.02)
        raise RuntimeError(f"nginx did not apply revision {revision} within {timeout_s:g}s")


def handler_for(router: Router) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 1 << 20))
            if not router.verify(body, self.headers.get("X-Shelf-Signature", "")):
                self._answer(401, {"error": "bad signature"})
                return
            try:
                desired = json.loads(body)
                applied = router.apply(desired)
            except (ValueError, KeyError, TypeError) as exc:
                self._answer(422, {"error": str(exc)})
                return
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                self._answer(503, {"error": str(exc)})
                return
            self._answer(200, {"applied_revision": applied})

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            out = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--secret", required=True, help="The router secret given to Shelf")
    parser.add_argument("--include", type=Path, required=True, help="File nginx.conf includes")
    parser.add_argument("--nginx-conf", type=Path, required=True, help="nginx's main config")
    parser.add_argument("--nginx-prefix", type=Path, help="nginx -p PREFIX")
    parser.add_argument("--nginx", default="nginx", help="The nginx binary")
    parser.add_argument(
        "--pid-file",
        type=Path,
        help="nginx's pid file: acknowledge only once the old workers have exited",
    )
    parser.add_argument("--status-port", type=int, default=9101)
    parser.add_argument(
        "--initial",
        action="append",
        default=[],
        metavar="MODEL=URL",
        help="A model's champion before Shelf says anything; repeatable",
    )
    args = parser.parse_args(argv)
    upstreams = NginxUpstreams(args.include, args.status_port)
    for item in args.initial:
        model, _, url = item.partition("=")
        upstreams.set_champion(model, url)
    upstreams.write()
    nginx = [args.nginx, "-c", str(args.nginx_conf)]
    if args.nginx_prefix:
        nginx += ["-p", str(args.nginx_prefix)]
    router = Router(upstreams, nginx, args.secret.encode(), args.pid_file)
    server = ThreadingHTTPServer((args.host, args.port), handler_for(router))
    server.serve_forever()


if __name__ == "__main__":
    main()
