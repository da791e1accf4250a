"""`shelf quickstart`: the whole product in one command on the embedded default.

Starts `shelf server` (SQLite + a local artifact folder) and three example model servers,
registers them as versions of one model, sends synthetic traffic with delayed labels through
the gateway, and runs two canaries: a worse challenger that the guardrails roll back on their
own, then a good one they promote. Writes an HTML report of both and prints its path."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.api.schemas import RolloutOut
from controller.report import RolloutHistory, render_html
from controller.vocabulary import Arm
from shelf.client import Client
from shelf.demo.processes import Process, start_model_server, start_shelf_server
from shelf.demo.traffic import Traffic

MODEL = "fraud"
GUARDRAILS = ("error_rate", "latency", "accuracy")


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
        steps=[10, 50, 100],
        min_samples=300,
        min_step_duration_s=3,
        max_duration_s=timeout_s,
        on_timeout="rollback",
        guardrails=GUARDRAILS,
        # Demo thresholds: two accuracy points and half a point of errors. The defaults (one
        # point, a tenth of a point) need more requests and labels than a one-minute demo
        # collects.
        guardrail_options={"accuracy": {"margin": 0.02}, "error_rate": {"margin": 0.005}},
    )
    say(
        f"rollout {rollout.id}: canary of v{challenger} against champion "
        f"v{rollout.champion_version}, steps 10% → 50% → 100%"
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


def run(home: Path, say: Callable[[str], None], timeout_s: float = 50.0) -> list[RolloutOut]:
    """The story; returns the two finished rollouts. ``home`` is a fresh SHELF_HOME."""
    home.mkdir(parents=True, exist_ok=True)
    processes: list[Process] = []
    try:
        say(f"starting Shelf (SQLite + local artifacts in {home}) and 3 example model servers")
        server, gateway = start_shelf_server(
            home,
            {
                "SHELF_RECONCILER_INTERVAL_S": "0.5",
                "SHELF_GATEWAY_FLUSH_INTERVAL_S": "0.5",
            },
        )
        processes.append(server)
        for spec in VERSIONS:
            processes.append(
                start_model_server(
                    spec.name,
                    home / "logs",
                    error_rate=spec.error_rate,
                    latency_ms=spec.latency_ms,
                    accuracy=spec.accuracy,
                )
            )
        client = Client(server.url, timeout_s=30)
        for number, (spec, process) in enumerate(zip(VERSIONS, processes[1:], strict=True), 1):
            register(client, home, number, spec, process.url)
            say(f"registered {MODEL}@{number} ({spec.description}) serving at {process.url}")
        client.set_alias(MODEL, Arm.champion, 1)
        say(f"{MODEL}@champion -> v1; live traffic through the gateway at {gateway}")
        finished = []
        with Traffic(gateway, MODEL, concurrency=8, label_fraction=0.5, label_delay_s=0.5):
            time.sleep(1.0)
            for challenger in (2, 3):
                finished.append(run_rollout(client, challenger, say, timeout_s))
        histories = [RolloutHistory(r, client.observations(r.id)) for r in finished]
        report = home / "report.html"
        report.write_text(render_html(histories, title="Shelf quickstart"))
        say(f"report: {report}")
        client.close()
        return finished
    finally:
        for process in reversed(processes):
            process.stop()
