"""Rollout commands: start (optionally as a CI gate with --wait), status, control, rollback."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click

from registry.cli import exit_codes, output
from registry.cli.client import ShelfClient
from registry.cli.output import print_json, short_time, table
from registry.cli.registry_commands import client_of
from registry.errors import InvalidInput
from registry.names import check_model_name

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
OUTCOME_CODES = {
    "promoted": exit_codes.OK,
    "rolled_back": exit_codes.ROLLED_BACK,
    "aborted": exit_codes.ABORTED,
}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``5m``, ``1.5h``, ``2d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_margins(items: tuple[str, ...]) -> dict[str, dict[str, float]]:
    options: dict[str, dict[str, float]] = {}
    for item in items:
        metric, _, value = item.partition("=")
        try:
            options[metric.strip()] = {"margin": float(value)}
        except ValueError:
            raise InvalidInput(
                f"invalid margin {item!r}: use METRIC=VALUE, e.g. error_rate=0.01"
            ) from None
    return options


def parse_steps(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"invalid steps {text!r}: use percentages like 1,5,25,50,100") from None


def _verdicts(rollout: dict[str, Any]) -> str:
    evidence = rollout.get("evidence") or []
    if isinstance(evidence, dict):
        evidence = evidence.get("guardrails", [])
    return " ".join(f"{e.get('metric')}={e.get('verdict')}" for e in evidence)


def progress_line(r: dict[str, Any]) -> str:
    champion, challenger = r["arms"]["champion"], r["arms"]["challenger"]
    step = f"step {r['step_index'] + 1}/{len(r['steps'])}" if r["state"] == "canary" else r["state"]
    return (
        f"{r['model']} rollout {r['id']}: {step}, challenger {r['challenger_weight_bp'] / 100:g}%"
        f"{' + mirror' if r['mirror'] else ''} | n={champion['requests']}/{challenger['requests']}"
        f" err={champion['error_rate']:.4f}/{challenger['error_rate']:.4f} | {_verdicts(r)}"
    )


def wait_for_outcome(client: ShelfClient, rollout_id: int, timeout_s: float, as_json: bool) -> int:
    """Streams progress until the rollout ends; the exit code tells the outcome."""
    deadline = time.monotonic() + timeout_s
    last_key: tuple[Any, ...] | None = None
    last_print = 0.0
    while True:
        rollout = client.get(f"/v1/rollouts/{rollout_id}")
        key = (rollout["state"], rollout["step_index"], rollout["challenger_weight_bp"])
        now = time.monotonic()
        if key != last_key or now - last_print >= 10:
            if not as_json:
                output.console.print(progress_line(rollout), highlight=False)
            last_key, last_print = key, now
        if rollout["state"] in OUTCOME_CODES:
            if as_json:
                print_json(rollout)
            else:
                outcome = f"{rollout['state']} ({rollout['reason']})"
                output.console.print(
                    f"{rollout['model']} rollout {rollout_id}: {outcome}", highlight=False
                )
            return OUTCOME_CODES[rollout["state"]]
        if now >= deadline:
            output.err_console.print(
                f"timed out after {timeout_s:g}s waiting; rollout {rollout_id} is still "
                f"{rollout['state']} (see 'shelf rollout status {rollout['model']}')"
            )
            return exit_codes.TIMED_OUT
        time.sleep(1.0)


@click.group()
def rollout() -> None:
    """Canary, shadow and blue-green rollouts judged by sequential tests."""


@rollout.command("start")
@click.argument("name")
@click.option("--challenger", type=int, required=True, help="Version to roll out")
@click.option(
    "--strategy",
    type=click.Choice(["canary", "shadow", "blue-green"]),
    default="canary",
    show_default=True,
)
@click.option("--steps", help="Challenger traffic % per step [default 1,5,25,50,100]")
@click.option(
    "--min-samples",
    type=int,
    default=2000,
    show_default=True,
    help="Challenger requests per step before it may advance",
)
@click.option("--min-step-duration", default="5m", show_default=True)
@click.option("--shadow-duration", help="Shadow phase length [default: --min-step-duration]")
@click.option("--max-duration", default="6h", show_default=True, help="Then --on-timeout applies")
@click.option(
    "--on-timeout",
    type=click.Choice(["rollback", "promote"]),
    default="rollback",
    show_default=True,
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Family-wise false-alarm rate over all guardrails",
)
@click.option(
    "--guardrail",
    "guardrails",
    multiple=True,
    help="Metric to guard; repeatable [default: the standard set]",
)
@click.option(
    "--margin",
    "margins",
    multiple=True,
    metavar="METRIC=VALUE",
    help="Non-inferiority margin of a guardrail, e.g. error_rate=0.01; repeatable",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Stream progress; exit 0 promoted, 3 rolled back, 4 aborted, 5 timed out",
)
@click.option(
    "--timeout", "wait_timeout", default="7h", show_default=True, help="How long --wait waits"
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_start(
    ctx: click.Context,
    name: str,
    challenger: int,
    strategy: str,
    steps: str | None,
    min_samples: int,
    min_step_duration: str,
    shadow_duration: str | None,
    max_duration: str,
    on_timeout: str,
    alpha: float,
    guardrails: tuple[str, ...],
    margins: tuple[str, ...],
    wait: bool,
    wait_timeout: str,
    as_json: bool,
) -> int:
    """Start rolling out version CHALLENGER of NAME against its champion."""
    check_model_name(name)
    body: dict[str, Any] = {
        "challenger": challenger,
        "strategy": strategy,
        "min_samples": min_samples,
        "min_step_duration_s": parse_duration(min_step_duration),
        "max_duration_s": parse_duration(max_duration),
        "on_timeout": on_timeout,
        "alpha": alpha,
        "guardrails": list(guardrails),
        "guardrail_options": parse_margins(margins),
    }
    if steps is not None:
        body["steps"] = parse_steps(steps)
    if shadow_duration is not None:
        body["shadow_duration_s"] = parse_duration(shadow_duration)
    client = client_of(ctx)
    created = client.post(f"/v1/models/{name}/rollouts", body)
    if not wait:
        if as_json:
            print_json(created)
        else:
            output.console.print(
                f"started rollout {created['id']}: {name}@{created['challenger_version']} vs "
                f"champion {name}@{created['champion_version']} ({strategy})"
            )
        return exit_codes.OK
    return wait_for_outcome(client, created["id"], parse_duration(wait_timeout), as_json)


@rollout.command("status")
@click.argument("name")
@click.option(
    "--watch",
    is_flag=True,
    help="Stream progress until the rollout ends; exit code as for `start --wait`",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_status(ctx: click.Context, name: str, watch: bool, as_json: bool) -> int:
    """State, step, weights, per-arm counts and each guardrail's evidence."""
    check_model_name(name)
    client = client_of(ctx)
    current = client.get(f"/v1/models/{name}/rollout")
    if watch:  # exits with the outcome's code, like `rollout start --wait`
        return wait_for_outcome(client, current["id"], float("inf"), as_json)
    if as_json:
        print_json(current)
        return exit_codes.OK
    show_status(current)
    return exit_codes.OK


def show_status(r: dict[str, Any]) -> None:
    output.console.print(
        f"[bold]{r['model']}[/bold] rollout {r['id']}: {r['state']}"
        f" ({r['strategy']}, champion v{r['champion_version']} vs challenger "
        f"v{r['challenger_version']})\n"
        f"  step {r['step_index'] + 1}/{len(r['steps']) or 1}, challenger weight "
        f"{r['challenger_weight_bp'] / 100:g}%{' + mirror' if r['mirror'] else ''}; "
        f"started {short_time(r['created_at'])} by {r['created_by']}\n  {r['reason']}",
        highlight=False,
    )
    arms = r["arms"]
    rows = []
    for key in (
        "requests",
        "errors",
        "error_rate",
        "latency_p50_ms",
        "latency_p99_ms",
        "labels",
        "accuracy",
        "mean_reward",
        "shadow_agreement",
    ):
        rows.append([key, arms["champion"].get(key), arms["challenger"].get(key)])
    table(["", "champion", "challenger"], rows)
    evidence = r.get("evidence") or []
    if isinstance(evidence, dict):
        evidence = evidence.get("guardrails", [])
    if evidence:
        table(
            ["guardrail", "verdict", "p-value", "effect", "confidence sequence"],
            [
                [
                    e.get("metric"),
                    e.get("verdict"),
                    _num(e.get("p_value")),
                    _num(e.get("estimate")),
                    f"[{_num(e.get('lower'))}, {_num(e.get('upper'))}]",
                ]
                for e in evidence
            ],
        )


def _num(value: Any) -> str:
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _control(action: str) -> click.Command:
    @click.command(action, help=f"{action.capitalize()} the active rollout of NAME.")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        check_model_name(name)
        result = client_of(ctx).post(f"/v1/models/{name}/rollout/{action}")
        if as_json:
            print_json(result)
        else:
            output.console.print(f"{name} rollout {result['id']}: {result['state']}")

    return command


for _action in ("pause", "resume", "promote", "abort"):
    rollout.add_command(_control(_action))


@rollout.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_list(ctx: click.Context, name: str, as_json: bool) -> None:
    """Past and current rollouts of NAME."""
    check_model_name(name)
    rows = client_of(ctx).get(f"/v1/models/{name}/rollouts")
    if as_json:
        print_json(rows)
        return
    table(
        ["id", "challenger", "champion", "strategy", "state", "started", "reason"],
        [
            [
                r["id"],
                r["challenger_version"],
                r["champion_version"],
                r["strategy"],
                r["state"],
                short_time(r["created_at"]),
                r["reason"],
            ]
            for r in rows
        ],
    )


@rollout.command("report")
@click.argument("name")
@click.option("--rollout", "rollout_id", type=int, help="One rollout [default: the latest]")
@click.option("--last", default=1, show_default=True, help="How many recent rollouts")
@click.option(
    "-o", "--output", "target", type=click.Path(dir_okay=False, path_type=Path), required=True
)
@click.pass_context
def rollout_report(
    ctx: click.Context, name: str, rollout_id: int | None, last: int, target: Path
) -> None:
    """Write an HTML report: weights and each guardrail's evidence over time."""
    from controller.report import RolloutHistory, render_html

    check_model_name(name)
    client = client_of(ctx)
    if rollout_id is not None:
        rollouts = [client.get(f"/v1/rollouts/{rollout_id}")]
    else:
        rollouts = list(reversed(client.get(f"/v1/models/{name}/rollouts")[: max(last, 1)]))
    histories = [
        RolloutHistory(r, client.get(f"/v1/rollouts/{r['id']}/observations")) for r in rollouts
    ]
    target.write_text(render_html(histories, title=f"Shelf rollouts of {name}"))
    output.console.print(f"report: {target.resolve()}", highlight=False)


@click.command()
@click.argument("name")
@click.option("--to", "to_version", type=int, help="Version to make champion")
@click.option("--reason", default="", help="Recorded in the audit trail")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollback(
    ctx: click.Context, name: str, to_version: int | None, reason: str, as_json: bool
) -> None:
    """Incident button: end any rollout and send all traffic to the previous champion now."""
    check_model_name(name)
    body: dict[str, Any] = {"reason": reason}
    if to_version is not None:
        body["to"] = to_version
    result = client_of(ctx).post(f"/v1/models/{name}/rollback", body)
    if as_json:
        print_json(result)
        return
    ended = f" (ended rollout {result['ended_rollout_id']})" if result["ended_rollout_id"] else ""
    output.console.print(
        f"{name}: champion is now v{result['champion_version']}{ended}", highlight=False
    )


@click.group()
def webhook() -> None:
    """Webhooks announcing rollout transitions (JSON, signed with HMAC-SHA256)."""


@webhook.command("add")
@click.argument("url")
@click.option("--model", help="Only this model's transitions [default: every model]")
@click.option("--secret", help="Signing secret [default: generated and printed once]")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_add(
    ctx: click.Context, url: str, model: str | None, secret: str | None, as_json: bool
) -> None:
    body = {"url": url, "model": model, "secret": secret}
    created = client_of(ctx).post("/v1/webhooks", body)
    if as_json:
        print_json(created)
        return
    output.console.print(f"webhook {created['id']} -> {url}; signing secret: {created['secret']}")


@webhook.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def webhook_list(ctx: click.Context, as_json: bool) -> None:
    rows = client_of(ctx).get("/v1/webhooks")
    if as_json:
        print_json(rows)
        return
    table(
        ["id", "url", "model", "created", "by"],
        [
            [h["id"], h["url"], h["model"] or "*", short_time(h["created_at"]), h["created_by"]]
            for h in rows
        ],
    )


@webhook.command("delete")
@click.argument("webhook_id", type=int)
@click.pass_context
def webhook_delete(ctx: click.Context, webhook_id: int) -> None:
    client_of(ctx).delete(f"/v1/webhooks/{webhook_id}")
    output.console.print(f"deleted webhook {webhook_id}")


COMMANDS = [rollout, rollback, webhook]
