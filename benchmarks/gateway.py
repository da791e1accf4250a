"""Gateway overhead: the same load straight at a model server, through the gateway, and
through nginx as a reference reverse proxy doing the same weighted split.

One run starts a trivial upstream (uvicorn, its own process, a fixed OIP v2 answer), the
gateway (its own process, on a temporary SQLite home with one model whose champion points at
the upstream) and, when ``nginx`` is on PATH, nginx (one worker, like the one gateway process)
splitting by ``split_clients`` between two upstream groups that both reach the same upstream.
``wrk`` (Debian/Ubuntu: ``apt-get install wrk``) drives each with the same closed-loop load at
concurrency 1, 16 and 64 for a fixed time; a Python load generator would be slower than the
gateway and measure itself. Every row checks that wrk was not the bottleneck (its CPU time per
thread against the wall clock) and prints no ratio when it was.

Reported per concurrency: requests/s direct, through the gateway and through nginx; ratios to
direct; added p50/p99 latency; and CPU milliseconds per request of each proxy's process tree
(from /proc), with the gateway's ratio to nginx's. A second upstream that spends about 2 ms of
CPU per request (like a small model) gets the same rows. Then shadow mode: champion p99 with a
mirrored challenger vs without (ratio), at saturation (with how many copies the gateway sent,
shed because it was saturated, or dropped on a full queue) and at half of the saturation
throughput (the best of two closed-loop runs; wrk paced by its ``delay()`` hook, the achieved
rate printed). A p99 over a few seconds on a shared machine swings with the machine's other
load, so the paced runs alternate off and on in ABBA order (off, on, on, off, off, on) and the
row gives each mode's median with its range; the ratio is that of the medians.

``--compiled`` runs the gateway with its request path compiled by Cython, as the production
image does (``hatch_build.py``; built once per source version by ``benchmarks/compiled.py``,
which needs a C compiler); without it the gateway is this checkout's interpreted code.

    python benchmarks/gateway.py [--quick] [--json] [--duration S] [--concurrency 1 16 64]
                                 [--only overhead|shadow] [--compiled]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.0,2.0,3.0,4.0]}]}'
ANSWER = (
    b'{"model_name":"bench","model_version":"1","outputs":['
    b'{"name":"label","datatype":"BYTES","shape":[1],"data":["1"]},'
    b'{"name":"probabilities","datatype":"FP32","shape":[1,3],"data":[0.1,0.8,0.1]}]}'
)
PATH = "/v2/models/bench/infer"
HEAVY_PATH = "/v2/models/heavy/infer"
CANARY_BP = 1000  # the share nginx's split_clients and the gateway's canary send to the challenger
HEAVY_CPU_MS = 2.0
LOG = open(os.devnull, "w")  # noqa: SIM115  # replaced by a file in the temporary home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the processes under test ---------------------------------------------------------------


UPSTREAM_CPU_S = 0.0  # set by --serve-upstream-cpu-ms in the upstream's own process


def _spin(seconds: float) -> None:
    """Burns ``seconds`` of CPU, as a small model's forward pass would."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def trivial_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if UPSTREAM_CPU_S:
        _spin(UPSTREAM_CPU_S)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_upstream(port: int, cpu_ms: float = 0.0) -> None:
    import uvicorn

    global UPSTREAM_CPU_S
    UPSTREAM_CPU_S = cpu_ms / 1000.0
    uvicorn.run(
        trivial_upstream,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="off",
    )


def serve_gateway(port: int) -> None:
    """Settings from SHELF_* (set by the parent), served like `shelf gateway` serves it."""
    from controller.config import ControllerSettings
    from controller.gateway.app import create_gateway_app
    from registry.db.session import Database
    from shelf.roles import gateway_server
    from shelf.runner import Listener, run

    settings = ControllerSettings()
    database = Database(settings.resolved_database_url)
    app = create_gateway_app(settings, database)
    run([Listener("gateway", app, "127.0.0.1", port, server=gateway_server)])


def prepare_home(home: Path, upstream: str, shadow_upstream: str, heavy_upstream: str) -> None:
    """Model `bench`: v1 (champion) and v2 (the shadow challenger, its own upstream), v3 (a
    canary challenger on v1's upstream); model `heavy`: v1 and v2 on the CPU-bound upstream."""
    from sqlalchemy import select

    from controller.tables import Rollout
    from registry.db.base import utcnow
    from registry.db.session import Database
    from registry.db.tables import Model
    from registry.services import aliases
    from registry.services.blobs import record_blob
    from registry.services.versions import FileEntry, VersionSpec, register_version
    from shelf import migrate

    url = f"sqlite:///{home / 'shelf.db'}"
    migrate.upgrade(url)
    database = Database(url)
    versions = [
        ("bench", upstream),
        ("bench", shadow_upstream),
        ("bench", upstream),
        ("heavy", heavy_upstream),
        ("heavy", heavy_upstream),
    ]
    with database.session() as session:
        for i, (model, serving) in enumerate(versions):
            digest = f"{i:064x}"
            record_blob(session, digest, 1)
            spec = VersionSpec(serving_url=serving)
            register_version(session, model, [FileEntry("m", 1, digest)], spec, "bench")
        for model in ("bench", "heavy"):
            aliases.set_alias(session, model, "champion", 1, "bench")
    database.dispose()
    del select, Model, Rollout, utcnow


def set_rollout(home: Path, state: str | None) -> None:
    """``None``: no rollout; ``"off"``: a rollout at weight 0; ``"mirror"``: shadowing;
    ``"canary"``: both models split 10 % to a challenger on the same upstream, so every request
    is recorded in its arm's statistics (the gateway's real work during a rollout)."""
    from sqlalchemy import delete, select

    from controller.tables import Rollout
    from registry.db.base import utcnow
    from registry.db.session import Database
    from registry.db.tables import Model, ModelVersion

    database = Database(f"sqlite:///{home / 'shelf.db'}")
    with database.session() as session:
        session.execute(delete(Rollout))
        canary = state == "canary"
        for name in ("bench", "heavy") if canary else ("bench",) if state else ():
            model = session.scalar(select(Model).where(Model.name == name))
            assert model is not None
            ids = list(
                session.scalars(
                    select(ModelVersion.id)
                    .where(ModelVersion.model_id == model.id)
                    .order_by(ModelVersion.version)
                )
            )
            now = utcnow()
            session.add(
                Rollout(
                    model_id=model.id,
                    active_model_id=model.id,
                    champion_version_id=ids[0],
                    challenger_version_id=ids[2 if canary and name == "bench" else 1],
                    strategy="canary" if canary else "shadow",
                    state="canary" if canary else "shadowing",
                    challenger_weight_bp=CANARY_BP if canary else 0,
                    mirror=state == "mirror",
                    plan={},
                    created_at=now,
                    updated_at=now,
                    created_by="bench",
                )
            )
    database.dispose()


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=LOG,
    )


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def wait_route(gateway: str, mirror: bool | None, canary: bool = False) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        routes = httpx.get(f"{gateway}/v1/routes").json()["models"]
        route = routes.get("bench")
        if canary and route and route["weight_bp"] == CANARY_BP:
            return
        if not canary and route and mirror is None and route["rollout_id"] is None:
            return
        if (
            not canary
            and route
            and mirror is not None
            and route["rollout_id"]
            and route["mirror"] == mirror
            and route["weight_bp"] == 0
        ):
            return
        time.sleep(0.05)
    raise RuntimeError("the gateway never picked up the routing change")


# -- load -----------------------------------------------------------------------------------

WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{BODY.decode()}'
wrk.headers["Content-Type"] = "application/json"
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(url: str, concurrency: int, duration: float, script: Path) -> dict[str, float]:
    """Closed-loop load from wrk. ``loadgen_busy`` is the share of its threads' wall time wrk
    spent on CPU (from its rusage): near 1, wrk itself limited the throughput."""
    threads = 1 if concurrency < 16 else 2
    seconds = max(1, round(duration))
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            [
                "wrk",
                f"-t{threads}",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"wrk exited with {process.returncode}")
        out.seek(0)
        text = out.read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    percentiles = {
        int(p): _ms(v, u)
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": rps,
        "requests": float(total),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
        "loadgen_busy": (usage.ru_utime + usage.ru_stime) / (seconds * threads),
    }


# -- CPU of a process tree, from /proc -------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant (nginx's master and workers, say)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_s(root: int) -> tuple[float, float]:
    """User and system CPU seconds used so far by ``root`` and its descendants."""
    user = system = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields is not None:
            user += int(fields[11])  # utime
            system += int(fields[12])  # stime
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def measure(
    url: str, concurrency: int, duration: float, script: Path, pid: int | None = None
) -> dict[str, float]:
    """wrk's figures, plus the CPU milliseconds per request of process tree ``pid``: in all,
    in user space and in the kernel (the system calls, and the wake-ups of the peers a write
    reaches, which are charged to the writer)."""
    user_before, system_before = tree_cpu_s(pid) if pid else (0.0, 0.0)
    result = load_wrk(url, concurrency, duration, script)
    if pid:
        user_after, system_after = tree_cpu_s(pid)
        per_request = 1000.0 / max(result["requests"], 1.0)
        result["cpu_user_ms_per_req"] = (user_after - user_before) * per_request
        result["cpu_sys_ms_per_req"] = (system_after - system_before) * per_request
        result["cpu_ms_per_req"] = result["cpu_user_ms_per_req"] + result["cpu_sys_ms_per_req"]
    return result


def pooled(runs: list[dict[str, float]]) -> dict[str, float]:
    """Several runs of one target as one: requests/s and CPU per request over all of them,
    the median of their latency percentiles, the busiest load generator."""
    requests = sum(r["requests"] for r in runs)
    result = {
        "rps": statistics.mean(r["rps"] for r in runs),
        "requests": requests,
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "loadgen_busy": max(r["loadgen_busy"] for r in runs),
    }
    for figure in ("cpu_ms_per_req", "cpu_user_ms_per_req", "cpu_sys_ms_per_req"):
        if all(figure in r for r in runs):
            cpu_ms = sum(r[figure] * r["requests"] for r in runs)
            result[figure] = cpu_ms / max(requests, 1.0)
    return result


# -- nginx as the reference proxy ------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {home}/nginx.pid;
error_log {home}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/nginx-body;
    proxy_temp_path {home}/nginx-proxy;
    fastcgi_temp_path {home}/nginx-fastcgi;
    uwsgi_temp_path {home}/nginx-uwsgi;
    scgi_temp_path {home}/nginx-scgi;
    upstream champion {{ server 127.0.0.1:{up}; keepalive 64; }}
    upstream challenger {{ server 127.0.0.1:{up}; keepalive 64; }}
    upstream heavy_champion {{ server 127.0.0.1:{heavy}; keepalive 64; }}
    upstream heavy_challenger {{ server 127.0.0.1:{heavy}; keepalive 64; }}
    # The decision the gateway makes: a hash of the request picks the arm and {share}% go to
    # the challenger; both arms reach the same upstream, as the gateway's canary here does.
    split_clients "${{remote_addr}}${{remote_port}}${{connection_requests}}" $arm {{
        {share}% challenger;
        * champion;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /v2/models/heavy/ {{
            proxy_pass http://heavy_$arm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location / {{
            proxy_pass http://$arm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    return found or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def start_nginx(home: Path, port: int, up: int, heavy: int) -> subprocess.Popen[bytes] | None:
    binary = nginx_binary()
    if binary is None:
        return None
    conf = home / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(home=home, port=port, up=up, heavy=heavy, share=f"{CANARY_BP / 100:g}")
    )
    return subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(home)], stdout=subprocess.DEVNULL, stderr=LOG
    )


def load(url: str, concurrency: int, duration: float, script: Path) -> dict[str, float]:
    return load_wrk(url, concurrency, duration, script)


# -- the run --------------------------------------------------------------------------------


LOADGEN_BOUND = 0.9  # wrk threads this busy were the bottleneck, not the system under test


def row(
    upstream_kind: str,
    concurrency: int,
    direct: dict[str, float],
    through: dict[str, float],
    nginx: dict[str, float] | None,
) -> dict[str, Any]:
    """One line of results. Ratios are ``None`` where wrk itself was the bottleneck."""
    bound = [
        name
        for name, figures in (("direct", direct), ("gateway", through), ("nginx", nginx))
        if figures is not None and figures["loadgen_busy"] >= LOADGEN_BOUND
    ]

    def ratio(a: float, b: float) -> float | None:
        return None if bound or not b else round(a / b, 3)

    result: dict[str, Any] = {
        "upstream": upstream_kind,
        "concurrency": concurrency,
        "loadgen": "wrk",
        "loadgen_bound": bound,
        "direct_rps": round(direct["rps"], 1),
        "gateway_rps": round(through["rps"], 1),
        "ratio": ratio(through["rps"], direct["rps"]),
        "direct_p50_ms": round(direct["p50_ms"], 3),
        "direct_p99_ms": round(direct["p99_ms"], 3),
        "gateway_p50_ms": round(through["p50_ms"], 3),
        "gateway_p99_ms": round(through["p99_ms"], 3),
        "added_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
        "added_p99_ms": round(through["p99_ms"] - direct["p99_ms"], 3),
        "gateway_errors": through["errors"],
        "cpu_ms_per_req": round(through["cpu_ms_per_req"], 4),
        "cpu_user_ms_per_req": round(through["cpu_user_ms_per_req"], 4),
        "cpu_sys_ms_per_req": round(through["cpu_sys_ms_per_req"], 4),
    }
    if nginx is not None:
        result.update(
            nginx_rps=round(nginx["rps"], 1),
            nginx_ratio=ratio(nginx["rps"], direct["rps"]),
            nginx_added_p50_ms=round(nginx["p50_ms"] - direct["p50_ms"], 3),
            nginx_added_p99_ms=round(nginx["p99_ms"] - direct["p99_ms"], 3),
            nginx_cpu_ms_per_req=round(nginx["cpu_ms_per_req"], 4),
            nginx_cpu_user_ms_per_req=round(nginx["cpu_user_ms_per_req"], 4),
            nginx_cpu_sys_ms_per_req=round(nginx["cpu_sys_ms_per_req"], 4),
            cpu_ratio_vs_nginx=ratio(through["cpu_ms_per_req"], nginx["cpu_ms_per_req"]),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 16, 64])
    parser.add_argument(
        "--only",
        choices=("overhead", "shadow"),
        help="only the proxy rows (overhead) or only the shadow rows",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="run the gateway compiled, as the production image does (needs a C compiler)",
    )
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-cpu-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.upstream_cpu_ms)
        return
    if args.serve_gateway:
        serve_gateway(args.serve_gateway)
        return
    if shutil.which("wrk") is None:
        raise SystemExit(
            "benchmarks/gateway.py needs wrk, a load generator faster than the gateway "
            "(Debian/Ubuntu: apt-get install wrk)"
        )

    code_path = str(ROOT)
    if args.compiled:
        from compiled import compiled_tree

        code_path = f"{compiled_tree()}{os.pathsep}{ROOT}"
    duration = args.duration or (3.0 if args.quick else 10.0)
    concurrencies = [16] if args.quick and args.concurrency == [1, 16, 64] else args.concurrency
    ports = {name: free_port() for name in ("up", "shadow", "heavy", "gateway", "nginx")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="shelf-bench-") as tmp:
        home = Path(tmp)
        script = home / "post.lua"
        script.write_text(WRK_SCRIPT)
        global LOG
        LOG = (home / "servers.log").open("w")
        prepare_home(home, url["up"], url["shadow"], url["heavy"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHELF_")}
        env.update(
            SHELF_HOME=str(home),
            SHELF_SECRET_KEY="benchmark-secret",
            SHELF_REPLICA_ID="bench",
            PYTHONPATH=code_path,
        )
        try:
            processes.append(spawn(["--serve-upstream", str(ports["up"])]))
            processes.append(spawn(["--serve-upstream", str(ports["shadow"])]))
            heavy_args = ["--upstream-cpu-ms", str(HEAVY_CPU_MS)]
            processes.append(spawn(["--serve-upstream", str(ports["heavy"]), *heavy_args]))
            gateway_process = spawn(["--serve-gateway", str(ports["gateway"])], env)
            processes.append(gateway_process)
            nginx = start_nginx(home, ports["nginx"], ports["up"], ports["heavy"])
            if nginx is not None:
                processes.append(nginx)
                wait_http(f"{url['nginx']}/")
            for name in ("up", "shadow", "heavy"):
                wait_http(f"{url[name]}/")
            wait_http(f"{url['gateway']}/healthz")
            set_rollout(home, "canary")
            wait_route(url["gateway"], None, canary=True)
            results = []
            for kind, path, upstream in (
                ()
                if args.only == "shadow"
                else (
                    ("trivial", PATH, url["up"]),
                    (f"{HEAVY_CPU_MS:g}ms-cpu", HEAVY_PATH, url["heavy"]),
                )
            ):
                for concurrency in concurrencies:
                    warm = min(1.0, duration)
                    for target in (upstream, url["gateway"], url["nginx"] if nginx else None):
                        if target is not None:
                            load(target + path, concurrency, warm, script)
                    direct = measure(upstream + path, concurrency, duration, script)
                    # Gateway and nginx alternate (ABBA) and each pools its two runs, so that
                    # a burst of the machine's other load weighs on both alike.
                    runs: dict[str, list[dict[str, float]]] = {"gateway": [], "nginx": []}
                    pids = {"gateway": gateway_process.pid, "nginx": nginx.pid if nginx else 0}
                    for name in ("gateway", "nginx", "nginx", "gateway"):
                        if pids[name]:
                            runs[name].append(
                                measure(url[name] + path, concurrency, duration, script, pids[name])
                            )
                    through = pooled(runs["gateway"])
                    reference = pooled(runs["nginx"]) if runs["nginx"] else None
                    results.append(row(kind, concurrency, direct, through, reference))
            shadow = (
                measure_shadow(home, url["gateway"], duration, script)
                if args.only != "overhead"
                else None
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    report(
        results,
        shadow,
        duration,
        as_json=args.json,
        with_nginx=nginx is not None,
        compiled=args.compiled,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _cpu_split(r: dict[str, Any], with_nginx: bool) -> str:
    """Where a row's CPU per request went: user space (the proxy's own code) and the kernel."""
    gateway = f"gw user {r['cpu_user_ms_per_req']:.4f} + sys {r['cpu_sys_ms_per_req']:.4f} ms/req"
    if not with_nginx:
        return gateway
    ratios = [
        _fmt(r[f"cpu_{part}_ms_per_req"] / nginx if nginx else None, ".2f")
        for part, nginx in (
            ("user", r["nginx_cpu_user_ms_per_req"]),
            ("sys", r["nginx_cpu_sys_ms_per_req"]),
        )
    ]
    return (
        f"{gateway}; nginx user {r['nginx_cpu_user_ms_per_req']:.4f} + sys "
        f"{r['nginx_cpu_sys_ms_per_req']:.4f}; gw/nginx user {ratios[0]}, sys {ratios[1]}"
    )


def report(
    results: list[dict[str, Any]],
    shadow: dict[str, Any] | None,
    duration: float,
    as_json: bool,
    with_nginx: bool,
    compiled: bool,
) -> None:
    errors = sum(r["gateway_errors"] for r in results)
    if errors:
        print(f"warning: {errors:.0f} non-2xx answers through the gateway", file=sys.stderr)
    if as_json:
        for result in results:
            print(json.dumps({**result, "compiled": compiled}))
        if shadow is not None:
            print(json.dumps(shadow))
        return
    print(f"load generator: wrk, {duration:.0f} s per measurement; canary at {CANARY_BP / 100:g}%")
    print(
        "gateway: compiled (Cython), as in the production image"
        if compiled
        else "gateway: interpreted (--compiled: as in the production image)"
    )
    if not with_nginx:
        print("nginx not on PATH: no reference proxy (Debian/Ubuntu: apt-get install nginx)")
    header = (
        f"{'upstream':>9} {'conc':>4} {'direct rps':>10} {'gw rps':>8} {'ratio':>6} "
        f"{'+p50 ms':>7} {'+p99 ms':>7} {'gw cpu ms/req':>13}"
    )
    if with_nginx:
        header += f" {'nginx rps':>9} {'ratio':>6} {'nginx cpu ms/req':>16} {'cpu gw/nginx':>12}"
    print(header)
    for r in results:
        line = (
            f"{r['upstream']:>9} {r['concurrency']:>4} {r['direct_rps']:>10.0f} "
            f"{r['gateway_rps']:>8.0f} {_fmt(r['ratio'], '>6.2f')} {r['added_p50_ms']:>7.2f} "
            f"{r['added_p99_ms']:>7.2f} {r['cpu_ms_per_req']:>13.4f}"
        )
        if with_nginx:
            line += (
                f" {r['nginx_rps']:>9.0f} {_fmt(r['nginx_ratio'], '>6.2f')} "
                f"{r['nginx_cpu_ms_per_req']:>16.4f} {_fmt(r['cpu_ratio_vs_nginx'], '>12.2f')}"
            )
        if r["loadgen_bound"]:
            line += f"  (wrk was the bottleneck: {', '.join(r['loadgen_bound'])}; no ratio)"
        print(line)
    for r in results:
        print(f"{r['upstream']:>9} {r['concurrency']:>4}  {_cpu_split(r, with_nginx)}")
    if shadow is None:
        return
    print(
        f"shadow (concurrency {shadow['concurrency']}): champion p99 {shadow['p99_off_ms']:.2f} ms "
        f"without, {shadow['p99_on_ms']:.2f} ms with mirroring "
        f"(ratio {shadow['p99_ratio']:.2f}); rps {shadow['rps_off']:.0f} -> {shadow['rps_on']:.0f}"
    )
    print(
        f"  copies at saturation: {shadow['saturation_copies_sent']:.0f} sent, "
        f"{shadow['saturation_copies_shed']:.0f} shed (gateway saturated), "
        f"{shadow['saturation_copies_queue_full']:.0f} dropped (queue full)"
    )
    off_lo, off_hi = shadow["fixed_rate_p99_off_range_ms"]
    on_lo, on_hi = shadow["fixed_rate_p99_on_range_ms"]
    print(
        f"shadow at {shadow['fixed_rate_rps']:.0f} req/s "
        f"({shadow['fixed_rate_share_of_saturation']:.2f} of saturation, "
        f"{shadow['fixed_rate_runs']} runs ABBA, medians): champion p99 "
        f"{shadow['fixed_rate_p99_off_ms']:.2f} ms without [{off_lo:.2f}-{off_hi:.2f}], "
        f"{shadow['fixed_rate_p99_on_ms']:.2f} ms with mirroring [{on_lo:.2f}-{on_hi:.2f}] "
        f"(ratio {shadow['fixed_rate_p99_ratio']:.2f}); copies "
        f"{shadow['fixed_rate_copies_sent']:.0f} sent, "
        f"{shadow['fixed_rate_copies_dropped']:.0f} dropped"
    )


def shadow_counts(gateway: str) -> dict[str, float]:
    """Copies sent to the challenger and dropped (by reason), from the gateway's /metrics."""
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    counts = {"sent": 0.0, "overload": 0.0, "queue_full": 0.0}
    for line in text.splitlines():
        if line.startswith("shelf_gateway_shadow_requests_total{"):
            counts["sent"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shelf_gateway_shadow_dropped_total{"):
            reason = re.search(r'reason="([^"]+)"', line)
            if reason and reason.group(1) in counts:
                counts[reason.group(1)] += float(line.rsplit(" ", 1)[1])
    return counts


PACED_CONCURRENCY = 64


def paced_script(home: Path, rate: float, latency_ms: float = 0.0) -> Path:
    """wrk at about ``rate`` requests/s: each of PACED_CONCURRENCY connections waits
    ``PACED_CONCURRENCY / rate`` less one request's ``latency_ms`` between its requests (wrk's
    ``delay()``, whole milliseconds). The achieved rate is measured, not assumed."""
    path = home / "paced.lua"
    delay_ms = max(1, round(PACED_CONCURRENCY * 1000 / rate - latency_ms))
    path.write_text(WRK_SCRIPT + f"\nfunction delay()\n  return {delay_ms}\nend\n")
    return path


def calibrate_pacing(home: Path, url: str, rate: float, duration: float) -> Path:
    """A paced script whose achieved rate is near ``rate``: one trial run tells how long a
    request takes on top of the delay, which the final delay leaves out."""
    first_delay = max(1, round(PACED_CONCURRENCY * 1000 / rate))
    trial = load(url, PACED_CONCURRENCY, duration, paced_script(home, rate))
    per_request_ms = PACED_CONCURRENCY * 1000 / max(trial["rps"], 1.0)
    return paced_script(home, rate, max(per_request_ms - first_delay, 0.0))


PACED_PAIRS = 3  # off/on pairs at the fixed rate, in ABBA order


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def measure_shadow(
    home: Path,
    gateway: str,
    duration: float,
    script: Path,
    concurrency: int = 16,
    pairs: int = PACED_PAIRS,
) -> dict[str, Any]:
    """Champion p99 under a rollout at weight 0, without and with mirroring to a challenger:
    at saturation (closed loop, ``concurrency`` clients), where every copy competes with the
    champion for the same two cores and the gateway sheds copies first, and at half of that
    throughput (wrk paced by ``delay()``, calibrated by a trial run), the load a gateway is
    provisioned for. The paced runs alternate ``pairs`` times in ABBA order (off, on, on, off,
    off, on…) so that drift in the machine's other load favours neither mode; the figures are
    medians over the runs, with their range, and the ratio is that of the medians."""
    figures = {}
    shed: dict[str, float] = {}
    for mode in ("off", "mirror"):
        set_rollout(home, mode)
        wait_route(gateway, mode == "mirror")
        load(gateway + PATH, concurrency, min(1.0, duration), script)
        before = shadow_counts(gateway)
        figures[mode] = load(gateway + PATH, concurrency, duration, script)
        if mode == "mirror":
            after = shadow_counts(gateway)
            shed = {k: after[k] - before[k] for k in after}
    set_rollout(home, "off")
    wait_route(gateway, False)
    # Saturation is the best of two closed-loop runs: the machine's other load only ever
    # lowers a run's throughput, and half of an underestimate would not be half of saturation.
    again = load(gateway + PATH, concurrency, duration, script)
    saturation = max(figures["off"]["rps"], again["rps"])
    paced = calibrate_pacing(home, gateway + PATH, saturation / 2, min(2.0, duration))
    p99s: dict[str, list[float]] = {"off": [], "mirror": []}
    rates: dict[str, list[float]] = {"off": [], "mirror": []}
    paced_shed = {"sent": 0.0, "overload": 0.0, "queue_full": 0.0}
    modes = [m for i in range(pairs) for m in (("off", "mirror"), ("mirror", "off"))[i % 2]]
    for mode in modes:
        set_rollout(home, mode)
        wait_route(gateway, mode == "mirror")
        load(gateway + PATH, PACED_CONCURRENCY, min(1.0, duration), paced)  # warm
        before = shadow_counts(gateway)
        measured = load(gateway + PATH, PACED_CONCURRENCY, max(duration, 3.0), paced)
        if mode == "mirror":
            after = shadow_counts(gateway)
            for k in paced_shed:
                paced_shed[k] += after[k] - before[k]
        p99s[mode].append(measured["p99_ms"])
        rates[mode].append(measured["rps"])
    set_rollout(home, None)
    off, on = figures["off"], figures["mirror"]
    rate_off = statistics.median(p99s["off"])
    rate_on = statistics.median(p99s["mirror"])
    copies = sum(shed.values())
    all_rates = rates["off"] + rates["mirror"]
    return {
        "mode": "shadow",
        "concurrency": concurrency,
        "p99_off_ms": round(off["p99_ms"], 3),
        "p99_on_ms": round(on["p99_ms"], 3),
        "p99_ratio": round(on["p99_ms"] / off["p99_ms"], 3) if off["p99_ms"] else None,
        "rps_off": round(off["rps"], 1),
        "rps_on": round(on["rps"], 1),
        "saturation_copies_sent": shed.get("sent", 0.0),
        "saturation_copies_shed": shed.get("overload", 0.0),
        "saturation_copies_queue_full": shed.get("queue_full", 0.0),
        "saturation_shed_share": round(shed.get("overload", 0.0) / copies, 3) if copies else None,
        "fixed_rate_rps": round(statistics.median(all_rates), 1),
        "saturation_rps": round(saturation, 1),
        "fixed_rate_share_of_saturation": round(statistics.median(all_rates) / saturation, 3),
        "fixed_rate_runs": len(modes),
        "fixed_rate_p99_off_ms": round(rate_off, 3),
        "fixed_rate_p99_on_ms": round(rate_on, 3),
        "fixed_rate_p99_off_range_ms": [_spread(p99s["off"])["min"], _spread(p99s["off"])["max"]],
        "fixed_rate_p99_on_range_ms": [
            _spread(p99s["mirror"])["min"],
            _spread(p99s["mirror"])["max"],
        ],
        "fixed_rate_rps_off": round(statistics.median(rates["off"]), 1),
        "fixed_rate_rps_on": round(statistics.median(rates["mirror"]), 1),
        "fixed_rate_p99_ratio": round(rate_on / rate_off, 3),
        "fixed_rate_copies_sent": paced_shed["sent"],
        "fixed_rate_copies_dropped": paced_shed["overload"] + paced_shed["queue_full"],
    }


if __name__ == "__main__":
    main()
