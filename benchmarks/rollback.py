"""How fast a rollback takes effect: with the gateway under load and a canary at 50 %, the time
from `shelf rollback` returning to the last request the challenger served.

Each trial starts a canary, waits until the challenger is taking traffic, runs the real CLI
`shelf rollback`, and looks at every request sent after it returned: the figure is how long
after the return the challenger still got a request (0 if none did). Embedded SQLite by
default (gateways poll the routing table); ``--database-url postgresql://…`` adds LISTEN/NOTIFY.

    python benchmarks/rollback.py [--trials 10] [--quick] [--json] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shelf import Client
from shelf.demo.processes import start_model_server, start_shelf_server
from shelf.demo.traffic import Traffic


def register(client: Client, folder: Path, url: str) -> None:
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(folder.name.encode())
    client.register("bench", folder, serving_url=url)


def trial(client: Client, traffic: Traffic, env: dict[str, str]) -> tuple[float, float]:
    """Returns (ms after `shelf rollback` returned, ms after it was launched) of the last
    request the challenger served."""
    client.start_rollout("bench", 2, steps=[50], min_samples=10**9, min_step_duration_s=3600)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        recent = [s for s in traffic.log[-200:] if s.version == "2"]
        if len(recent) >= 20:
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the challenger never received traffic")
    launched = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "shelf", "rollback", "bench"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    returned = time.monotonic()
    time.sleep(1.5)
    last = max((s.sent for s in traffic.log if s.version == "2"), default=launched)
    return max(last - returned, 0.0) * 1000, max(last - launched, 0.0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="3 trials")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--database-url", help="Default: embedded SQLite")
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    work = Path(tempfile.mkdtemp(prefix="shelf-rollback-"))
    extra = {"SHELF_DATABASE_URL": args.database_url} if args.database_url else {}
    if args.database_url:  # only the embedded SQLite is migrated by `shelf server` itself
        subprocess.run(
            [sys.executable, "-m", "shelf", "db", "upgrade"],
            env={**os.environ, **extra},
            check=True,
            capture_output=True,
        )
    server, gateway = start_shelf_server(work / "home", extra)
    models = [start_model_server(f"v{i}", work / "logs", latency_ms=2.0) for i in (1, 2)]
    try:
        client = Client(server.url)
        for i, model in enumerate(models, 1):
            register(client, work / f"v{i}", model.url)
        client.set_alias("bench", "champion", 1)
        env = {**os.environ, "SHELF_URL": server.url}
        with Traffic(gateway, "bench", args.concurrency, label_fraction=0, keep_log=True) as load:
            pairs = [trial(client, load, env) for _ in range(trials)]
        served = len(load.log)
    finally:
        for process in [*models, server]:
            process.stop()
        shutil.rmtree(work, ignore_errors=True)
    results = [after for after, _ in pairs]
    since_launch = [launched for _, launched in pairs]
    figures = {
        "trials": trials,
        "requests": served,
        "database": "postgresql" if args.database_url else "sqlite",
        "rollback_p50_ms": round(statistics.median(results), 1),
        "rollback_max_ms": round(max(results), 1),
        "since_launch_p50_ms": round(statistics.median(since_launch), 1),
        "since_launch_max_ms": round(max(since_launch), 1),
        "target_max_ms": 1000,
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{trials} rollbacks under load ({args.concurrency} concurrent clients, "
        f"{served} requests, {figures['database']})"
    )
    print(
        "last challenger request after `shelf rollback` returned, per trial (ms): "
        + ", ".join(f"{r:.0f}" for r in results)
    )
    print(
        f"p50 {figures['rollback_p50_ms']} ms, max {figures['rollback_max_ms']} ms "
        f"(target max < 1000 ms; ratio {figures['rollback_max_ms'] / 1000:.2f})"
    )
    print(
        "counted from launching the command instead (includes the CLI's own start-up): "
        f"p50 {figures['since_launch_p50_ms']} ms, max {figures['since_launch_max_ms']} ms"
    )


if __name__ == "__main__":
    main()
