"""`shelf quickstart`: the whole product in one command on the embedded default.

Starts `shelf server` (SQLite + a local artifact folder) and three example model servers,
registers them as versions of one model, sends synthetic traffic with delayed labels through
the gateway, and runs two canaries: a worse challenger that the guardrails roll back on their
own, then a good one they promote. Third act: the promoted champion's accuracy silently decays
(no errors, no slowdown), and the champion watch sees it against the reference profile captured
in its rollout. Writes an HTML report and prints its path."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from controller.api.schemas import RolloutOut
from controller.cli.watch_commands import headline
from controller.report import RolloutHistory, render_html
from controller.stats.watch_report import WatchReport
from controller.vocabulary import Arm, RolloutState
from registry.errors import NotFound
from shelf.client import Client
from shelf.demo.processes import (
    Process,
    spawn_model_server,
    start_shelf_server,
    stop_all,
    wait_ready,
)
from shelf.demo.traffic import Traffic

MODEL = "fraud"
GUARDRAILS = ("error_rate", "latency", "accuracy")
# Challenger traffic shares; the first step at 20 % collects the guardrails' minimum samples
# twice as fast as 10 % would, which keeps the story under a minute on a loaded machine.
STEPS = (20, 50, 100)


@dataclass(frozen=True)
class DemoVersion:
    name: str
    error_rate: float
    latency_ms: float
    accuracy: float
    description: str


VERSIONS = (
    DemoVersion("v1", 0.002, 8.0, 0.90, "champion: the model in production"),
    DemoVersion("v2", 0.06, 16.0, 0.75, "regressed: more errors, slower, less accurate"),
    DemoVersion("v3", 0.002, 7.0, 0.95, "improved: as reliable, a little faster, more accurate"),
)


def register(client: Client, home: Path, number: int, spec: DemoVersion, url: str) -> None:
    folder = home / "models" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(
        json.dumps({"weights": [number, spec.accuracy], "classes": ["0", "1", "2"]})
    )
    (folder / "README.txt").write_text(f"Example model {spec.name}: {spec.description}\n")
    client.register(
        MODEL,
        folder,
        description=spec.description,
        source_uri="examples/model_server.py",
        serving_url=url,
        tags={"demo": spec.name},
        data_window=("2026-01-01", "2026-06-30"),
    )


def run_rollout(
    client: Client, challenger: int, say: Callable[[str], None], timeout_s: float
) -> RolloutOut:
    rollout = client.start_rollout(
        MODEL,
        challenger,
        strategy="canary",
        steps=list(STEPS),
        min_samples=300,
        min_step_duration_s=3,
        max_duration_s=timeout_s,
        on_timeout="rollback",
        guardrails=GUARDRAILS,
        # Demo thresholds: two points of accuracy and one of errors. The defaults (one point, a
        # tenth of a point) need more requests and labels than a one-minute demo collects on a
        # loaded two-core machine.
        guardrail_options={"accuracy": {"margin": 0.02}, "error_rate": {"margin": 0.01}},
    )
    say(
        f"rollout {rollout.id}: canary of v{challenger} against champion "
        f"v{rollout.champion_version}, steps {' → '.join(f'{step}%' for step in STEPS)}"
    )
    shown: list[str] = []

    def progress(current: RolloutOut) -> None:
        line = _progress(current)
        if not shown or line != shown[-1]:
            say(line)
            shown.append(line)

    rollout = client.wait(rollout.id, on_progress=progress)
    say(f"rollout {rollout.id}: {rollout.state} — {rollout.reason}")
    return rollout


def _progress(r: RolloutOut) -> str:
    champion, challenger = r.arms[Arm.champion], r.arms[Arm.challenger]
    guardrails = r.evidence.guardrails if r.evidence is not None else ()
    verdicts = ", ".join(f"{e.metric} {e.verdict}" for e in guardrails)
    return (
        f"  {r.state:<9} challenger {r.challenger_weight_bp / 100:>5g}%  "
        f"requests {champion.requests:>6}/{challenger.requests:<6} "
        f"errors {champion.error_rate:.3f}/{challenger.error_rate:.3f}  "
        f"{verdicts}"
    )


DRIFTED_ACCURACY = 0.5


def watch_decay(
    client: Client, server_url: str, say: Callable[[str], None], timeout_s: float
) -> WatchReport | None:
    """Act three: the champion's accuracy drifts; the champion watch reports it decayed."""
    deadline = time.monotonic() + timeout_s
    report = _first_look(client, deadline)
    if report is None:
        return None
    say(f"{headline(report)} — watched against the reference profile captured in its rollout")
    httpx.post(
        f"{server_url}/dials", json={"accuracy": DRIFTED_ACCURACY}, timeout=5
    ).raise_for_status()
    drift = f"{DRIFTED_ACCURACY:.0%} (no errors, no slowdown)"
    say(f"v{report.version}'s accuracy silently drifts to {drift}")
    while time.monotonic() < deadline:
        report = client.watch(MODEL).report
        if report.status == "decayed":
            say(f"  {headline(report)}: {report.reason}")
            return report
        time.sleep(0.5)
    return report


def _first_look(client: Client, deadline: float) -> WatchReport | None:
    while time.monotonic() < deadline:
        try:
            return client.watch(MODEL).report
        except NotFound:  # the watch has not looked at the new champion yet
            time.sleep(0.25)
    return None


@dataclass(frozen=True)
class Outcome:
    rollouts: list[RolloutOut]
    champion: WatchReport | None


def run(home: Path, say: Callable[[str], None], timeout_s: float = 50.0) -> Outcome:
    """The story; returns the two finished rollouts and the champion's watch report at the
    end. ``home`` is a fresh SHELF_HOME."""
    home.mkdir(parents=True, exist_ok=True)
    processes: list[Process] = []
    try:
        say(f"starting Shelf (SQLite + local artifacts in {home}) and 3 example model servers")
        # The model servers start while Shelf does (two cores: the phases overlap).
        models = [
            spawn_model_server(
                spec.name,
                home / "logs",
                error_rate=spec.error_rate,
                latency_ms=spec.latency_ms,
                accuracy=spec.accuracy,
            )
            for spec in VERSIONS
        ]
        processes.extend(models)
        server, gateway = start_shelf_server(
            home,
            {
                "SHELF_RECONCILER_INTERVAL_S": "0.5",
                "SHELF_GATEWAY_FLUSH_INTERVAL_S": "0.5",
                "SHELF_CHAMPION_BLOCK_S": "1",
            },
        )
        processes.insert(0, server)
        for process in models:
            wait_ready(process)
        client = Client(server.url, timeout_s=30)
        for number, (spec, process) in enumerate(zip(VERSIONS, processes[1:], strict=True), 1):
            register(client, home, number, spec, process.url)
            say(f"registered {MODEL}@{number} ({spec.description}) serving at {process.url}")
        client.set_alias(MODEL, Arm.champion, 1)
        say(f"{MODEL}@champion -> v1; live traffic through the gateway at {gateway}")
        finished = []
        champion = None
        with Traffic(gateway, MODEL, concurrency=8, label_fraction=0.5, label_delay_s=0.5):
            time.sleep(1.0)
            for challenger in (2, 3):
                finished.append(run_rollout(client, challenger, say, timeout_s))
            if finished[-1].state == RolloutState.promoted:
                champion = watch_decay(client, processes[3].url, say, timeout_s=20.0)
        histories = [RolloutHistory(r, client.observations(r.id)) for r in finished]
        report = home / "report.html"
        watched = client.watch(MODEL, history=600) if champion is not None else None
        report.write_text(render_html(histories, title="Shelf quickstart", champion=watched))
        say(f"report: {report}")
        client.close()
        return Outcome(finished, champion)
    finally:
        stop_all(list(reversed(processes)))
