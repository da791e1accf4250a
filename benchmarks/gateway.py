"""Gateway overhead: the same load straight at a model server and through the gateway.

One run starts a trivial upstream (uvicorn, its own process, a fixed OIP v2 answer) and the
gateway (its own process, on a temporary SQLite home with one model whose champion points at
the upstream), then drives each with the same closed-loop load at concurrency 1, 16 and 64 for
a fixed time. Load comes from ``wrk`` when it is on PATH, else from an async httpx client
(which is itself slower than the gateway, so its figures understate the gateway's capacity).
Reported: requests/s direct and through the gateway, their ratio, and the added p50/p99
latency. Then shadow mode: champion p99 with a mirrored challenger vs without (ratio).

    python benchmarks/gateway.py [--quick] [--json] [--duration S] [--loadgen wrk|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
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
LOG = open(os.devnull, "w")  # noqa: SIM115  # replaced by a file in the temporary home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the processes under test ---------------------------------------------------------------


async def trivial_upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_upstream(port: int) -> None:
    import uvicorn

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
    from shelf.runner import Listener, run

    settings = ControllerSettings()
    database = Database(settings.resolved_database_url)
    run([Listener("gateway", create_gateway_app(settings, database), "127.0.0.1", port)])


def prepare_home(home: Path, upstream: str, shadow_upstream: str) -> None:
    """One model `bench`: v1 (champion) and v2 (the shadow challenger) and a rollout row."""
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
    with database.session() as session:
        for i, serving in enumerate((upstream, shadow_upstream)):
            digest = f"{i:064x}"
            record_blob(session, digest, 1)
            spec = VersionSpec(serving_url=serving)
            register_version(session, "bench", [FileEntry("m", 1, digest)], spec, "bench")
        aliases.set_alias(session, "bench", "champion", 1, "bench")
    database.dispose()
    del select, Model, Rollout, utcnow


def set_rollout(home: Path, state: str | None) -> None:
    """``None``: no rollout; ``"off"``: a rollout at weight 0; ``"mirror"``: shadowing."""
    from sqlalchemy import delete, select

    from controller.tables import Rollout
    from registry.db.base import utcnow
    from registry.db.session import Database
    from registry.db.tables import Model, ModelVersion

    database = Database(f"sqlite:///{home / 'shelf.db'}")
    with database.session() as session:
        session.execute(delete(Rollout))
        if state is not None:
            model = session.scalar(select(Model).where(Model.name == "bench"))
            assert model is not None
            ids = list(session.scalars(select(ModelVersion.id).order_by(ModelVersion.version)))
            now = utcnow()
            session.add(
                Rollout(
                    model_id=model.id,
                    active_model_id=model.id,
                    champion_version_id=ids[0],
                    challenger_version_id=ids[1],
                    strategy="shadow",
                    state="shadowing",
                    challenger_weight_bp=0,
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


def wait_route(gateway: str, mirror: bool | None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        routes = httpx.get(f"{gateway}/v1/routes").json()["models"]
        route = routes.get("bench")
        if route and mirror is None and route["rollout_id"] is None:
            return
        if route and mirror is not None and route["rollout_id"] and route["mirror"] == mirror:
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
    threads = 1 if concurrency < 16 else 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    percentiles = {
        int(p): _ms(v, u)
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


async def _load_httpx(url: str, concurrency: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(url, content=BODY, headers=headers)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code >= 400

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": float(errors),
    }


async def _load_at_rate(url: str, rate: float, duration: float) -> dict[str, float]:
    """Open loop: request i is due at start + i / rate, and its latency counts from then, so a
    slow answer cannot hold back the requests behind it (no coordinated omission)."""
    # httpx's pool bookkeeping grows with the queue of pending requests and would become the
    # bottleneck here; the gateway's own lean HTTP/1.1 client does not.
    from controller.gateway.upstream import Upstream

    latencies: list[float] = []
    headers = [(b"content-type", b"application/json")]
    base, _, path = url.partition("/v2/")
    client = Upstream(max_connections=256, timeout_s=30)
    start = time.perf_counter() + 0.05

    async def one(due: float) -> None:
        await client.call("POST", base, "/v2/" + path, headers, BODY)
        latencies.append(time.perf_counter() - due)

    in_flight = []
    for i in range(int(rate * duration)):  # start each request when it is due, not all upfront
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        in_flight.append(asyncio.create_task(one(due)))
    await asyncio.gather(*in_flight)
    await client.close()
    latencies.sort()
    return {
        "rps": rate,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": 0.0,
    }


def load(
    url: str, concurrency: int, duration: float, loadgen: str, script: Path
) -> dict[str, float]:
    if loadgen == "wrk":
        return load_wrk(url, concurrency, duration, script)
    return asyncio.run(_load_httpx(url, concurrency, duration))


# -- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs (under 60 s in all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--loadgen", choices=["wrk", "httpx"], help="default: wrk if on PATH")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 16, 64])
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    if args.serve_gateway:
        serve_gateway(args.serve_gateway)
        return

    duration = args.duration or (3.0 if args.quick else 10.0)
    loadgen = args.loadgen or ("wrk" if shutil.which("wrk") else "httpx")
    up_port, shadow_port, gw_port = free_port(), free_port(), free_port()
    upstream, shadow_upstream = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{shadow_port}"
    gateway = f"http://127.0.0.1:{gw_port}"
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="shelf-bench-") as tmp:
        home = Path(tmp)
        script = home / "post.lua"
        script.write_text(WRK_SCRIPT)
        global LOG
        LOG = (home / "servers.log").open("w")
        prepare_home(home, upstream, shadow_upstream)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHELF_")}
        env.update(
            SHELF_HOME=str(home),
            SHELF_SECRET_KEY="benchmark-secret",
            SHELF_REPLICA_ID="bench",
            PYTHONPATH=str(ROOT),
        )
        try:
            processes.append(spawn(["--serve-upstream", str(up_port)]))
            processes.append(spawn(["--serve-upstream", str(shadow_port)]))
            processes.append(spawn(["--serve-gateway", str(gw_port)], env))
            wait_http(f"{upstream}/")
            wait_http(f"{shadow_upstream}/")
            wait_http(f"{gateway}/healthz")
            wait_route(gateway, None)
            results = []
            for concurrency in args.concurrency:
                load(upstream + PATH, concurrency, min(1.0, duration), loadgen, script)  # warm
                load(gateway + PATH, concurrency, min(1.0, duration), loadgen, script)
                direct = load(upstream + PATH, concurrency, duration, loadgen, script)
                through = load(gateway + PATH, concurrency, duration, loadgen, script)
                results.append(
                    {
                        "concurrency": concurrency,
                        "loadgen": loadgen,
                        "direct_rps": round(direct["rps"], 1),
                        "gateway_rps": round(through["rps"], 1),
                        "ratio": round(through["rps"] / direct["rps"], 3),
                        "direct_p50_ms": round(direct["p50_ms"], 3),
                        "direct_p99_ms": round(direct["p99_ms"], 3),
                        "gateway_p50_ms": round(through["p50_ms"], 3),
                        "gateway_p99_ms": round(through["p99_ms"], 3),
                        "added_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
                        "added_p99_ms": round(through["p99_ms"] - direct["p99_ms"], 3),
                        "gateway_errors": through["errors"],
                    }
                )
            shadow = measure_shadow(home, gateway, duration, loadgen, script)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    errors = sum(row["gateway_errors"] for row in results)
    if errors:
        print(f"warning: {errors:.0f} non-2xx answers through the gateway", file=sys.stderr)
    if args.json:
        for row in results:
            print(json.dumps(row))
        print(json.dumps(shadow))
        return
    print(f"load generator: {loadgen}, {duration:.0f} s per measurement")
    print(f"{'conc':>5} {'direct rps':>11} {'gateway rps':>12} {'ratio':>6} "
          f"{'+p50 ms':>8} {'+p99 ms':>8}")  # fmt: skip
    for row in results:
        print(
            f"{row['concurrency']:>5} {row['direct_rps']:>11.0f} {row['gateway_rps']:>12.0f} "
            f"{row['ratio']:>6.2f} {row['added_p50_ms']:>8.2f} {row['added_p99_ms']:>8.2f}"
        )
    print(
        f"shadow (concurrency {shadow['concurrency']}): champion p99 {shadow['p99_off_ms']:.2f} ms "
        f"without, {shadow['p99_on_ms']:.2f} ms with mirroring "
        f"(ratio {shadow['p99_ratio']:.2f}); rps {shadow['rps_off']:.0f} -> {shadow['rps_on']:.0f}"
    )
    print(
        f"shadow at a fixed {shadow['fixed_rate_rps']:.0f} req/s: champion p99 "
        f"{shadow['fixed_rate_p99_off_ms']:.2f} ms without, "
        f"{shadow['fixed_rate_p99_on_ms']:.2f} ms with mirroring "
        f"(ratio {shadow['fixed_rate_p99_ratio']:.2f})"
    )


def measure_shadow(
    home: Path, gateway: str, duration: float, loadgen: str, script: Path, concurrency: int = 16
) -> dict[str, Any]:
    """Champion p99 under a rollout at weight 0, without and with mirroring to a challenger:
    at saturation (closed loop, ``concurrency`` clients), where every copy competes with the
    champion for the same two cores, and at a fixed rate of a quarter of that throughput
    (open loop), the load a gateway is provisioned for."""
    figures = {}
    for mode in ("off", "mirror"):
        set_rollout(home, mode)
        wait_route(gateway, mode == "mirror")
        load(gateway + PATH, concurrency, min(1.0, duration), loadgen, script)
        figures[mode] = load(gateway + PATH, concurrency, duration, loadgen, script)
    rate = min(figures["off"]["rps"] / 4, 1500.0)
    p99s: dict[str, list[float]] = {"off": [], "mirror": []}
    for mode in ("off", "mirror", "mirror", "off"):  # alternated, so drift favours neither
        set_rollout(home, mode)
        wait_route(gateway, mode == "mirror")
        asyncio.run(_load_at_rate(gateway + PATH, rate, min(1.0, duration)))  # warm
        measured = asyncio.run(_load_at_rate(gateway + PATH, rate, duration / 2))
        p99s[mode].append(measured["p99_ms"])
    set_rollout(home, None)
    off, on = figures["off"], figures["mirror"]
    rate_off = {"p99_ms": statistics.mean(p99s["off"])}
    rate_on = {"p99_ms": statistics.mean(p99s["mirror"])}
    return {
        "mode": "shadow",
        "concurrency": concurrency,
        "p99_off_ms": round(off["p99_ms"], 3),
        "p99_on_ms": round(on["p99_ms"], 3),
        "p99_ratio": round(on["p99_ms"] / off["p99_ms"], 3) if off["p99_ms"] else None,
        "rps_off": round(off["rps"], 1),
        "rps_on": round(on["rps"], 1),
        "fixed_rate_rps": round(rate, 1),
        "fixed_rate_p99_off_ms": round(rate_off["p99_ms"], 3),
        "fixed_rate_p99_on_ms": round(rate_on["p99_ms"], 3),
        "fixed_rate_p99_ratio": round(rate_on["p99_ms"] / rate_off["p99_ms"], 3),
    }


if __name__ == "__main__":
    main()
