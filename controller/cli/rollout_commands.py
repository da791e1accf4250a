"""Rollout commands: start (optionally as a CI gate with --wait), status, control, report,
and the incident button ``shelf rollback``. Each is a thin layer over
:class:`controller.client.RolloutClient`."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from controller.api.schemas import RolloutOut
from controller.cli import summary as ci_summary
from controller.client import RolloutClient, RolloutTimeout
from controller.metric_sources.queries import PrometheusQueries
from controller.report import RolloutHistory, render_html
from controller.routers.base import RouterSpec
from controller.stats import Evidence
from controller.vocabulary import ARMS, STRATEGIES, RolloutState, Strategy
from registry.cli import exit_codes, output
from registry.cli.context import connection_of
from registry.cli.durations import parse_duration
from registry.cli.output import print_json, short_time, table
from registry.errors import InvalidInput

OUTCOME_CODES = {
    RolloutState.promoted: exit_codes.OK,
    RolloutState.rolled_back: exit_codes.ROLLED_BACK,
    RolloutState.aborted: exit_codes.ABORTED,
}
PROGRESS_EVERY_S = 10.0


def client_of(ctx: click.Context) -> RolloutClient:
    return RolloutClient(connection_of(ctx))


_THRESHOLD = re.compile(r"^[+]?\d+(?:\.\d+)?(?:e-?\d+)?%?$")


def parse_thresholds(
    items: tuple[str, ...], key: str, options: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """``METRIC=VALUE`` items into guardrail options: ``error_rate=0.002`` (absolute, the
    effect's units) or ``error_rate=+20%`` (relative to the champion)."""
    options = options if options is not None else {}
    for item in items:
        metric, _, value = item.partition("=")
        value = value.strip()
        if not metric.strip() or not _THRESHOLD.match(value):
            raise InvalidInput(
                f"invalid {key} {item!r}: use METRIC=VALUE, e.g. error_rate=0.002 or latency=5%"
            )
        number: float | str = value if value.endswith("%") else float(value)
        options.setdefault(metric.strip(), {})[key] = number
    return options


def parse_margins(items: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return parse_thresholds(items, "margin")


def parse_steps(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"invalid steps {text!r}: use percentages like 1,5,25,50,100") from None


def router_spec(kind: str, url: str | None, secret: str | None) -> RouterSpec | None:
    if kind == "gateway":
        if url or secret:
            raise InvalidInput("--router-url and --router-secret go with --router webhook")
        return None
    if not url or not secret:
        raise InvalidInput("--router webhook needs --router-url and --router-secret")
    try:
        return RouterSpec(kind=kind, url=url, secret=secret)
    except ValueError as error:
        raise InvalidInput(f"invalid router: {error}") from None


def prometheus_queries(
    url: str | None,
    requests: str | None,
    errors: str | None,
    latency_buckets: str | None,
    interval_s: float,
    lag_s: float,
) -> PrometheusQueries | None:
    if url is None:
        if requests or errors or latency_buckets:
            raise InvalidInput("--promql-* options go with --prometheus URL")
        return None
    if not (requests and errors):
        raise InvalidInput("--prometheus needs --promql-requests and --promql-errors")
    try:
        return PrometheusQueries(
            url=url,
            requests=requests,
            errors=errors,
            latency_buckets=latency_buckets,
            interval_s=interval_s,
            lag_s=lag_s,
        )
    except ValueError as error:
        raise InvalidInput(f"invalid metric source: {error}") from None


def _guardrails(r: RolloutOut) -> tuple[Evidence, ...]:
    return r.evidence.guardrails if r.evidence is not None else ()


def mirror_label(r: RolloutOut) -> str:
    """`` + mirror`` while mirroring every request, `` + mirror 25%`` for a sampled shadow."""
    if not r.mirror:
        return ""
    return " + mirror" if r.mirror_percent >= 100 else f" + mirror {r.mirror_percent:g}%"


def progress_line(r: RolloutOut) -> str:
    champion, challenger = r.arms[ARMS[0]], r.arms[ARMS[1]]
    step = f"step {r.step_index + 1}/{len(r.steps)}" if r.state == RolloutState.canary else r.state
    verdicts = " ".join(f"{e.metric}={e.verdict}" for e in _guardrails(r))
    if len(r.challengers) > 1:
        shown = " ".join(
            f"v{c.version}:{c.status}@{c.weight_bp / 100:g}%"
            f" n={r.arms[c.arm].requests if c.arm in r.arms else 0}"
            f" {c.evidence.verdict if c.evidence else '-'}"
            for c in r.challengers
        )
        return (
            f"{r.model} rollout {r.id}: {step} | champion n={champion.requests}"
            f" err={champion.error_rate:.4f} | {shown}"
        )
    return (
        f"{r.model} rollout {r.id}: {step}, challenger {r.challenger_weight_bp / 100:g}%"
        f"{mirror_label(r)} | n={champion.requests}/{challenger.requests}"
        f" err={champion.error_rate:.4f}/{challenger.error_rate:.4f} | {verdicts}"
    )


def wait_for_outcome(
    client: RolloutClient,
    rollout_id: int,
    timeout_s: float,
    as_json: bool,
    summary: Path | None = None,
) -> int:
    """Streams progress until the rollout ends; the exit code tells the outcome. With
    ``summary``, the outcome and its evidence are appended to it as Markdown."""
    shown: dict[str, Any] = {"key": None, "at": 0.0}

    def show(rollout: RolloutOut) -> None:
        key = (rollout.state, rollout.step_index, rollout.challenger_weight_bp)
        now = time.monotonic()
        if not as_json and (key != shown["key"] or now - shown["at"] >= PROGRESS_EVERY_S):
            output.console.print(progress_line(rollout), highlight=False)
            shown.update(key=key, at=now)

    try:
        rollout = client.wait(rollout_id, timeout_s, on_progress=show)
    except RolloutTimeout as timeout:
        if summary is not None:
            ci_summary.append(summary, timeout.rollout, timed_out=True)
        output.err_console.print(
            f"timed out after {timeout_s:g}s waiting; rollout {rollout_id} is still "
            f"{timeout.rollout.state} (see 'shelf rollout status {timeout.rollout.model}')"
        )
        return exit_codes.TIMED_OUT
    if summary is not None:
        ci_summary.append(summary, rollout)
    if as_json:
        print_json(rollout.model_dump(mode="json"))
    else:
        output.console.print(
            f"{rollout.model} rollout {rollout_id}: {rollout.state} ({rollout.reason})",
            highlight=False,
        )
    return OUTCOME_CODES[RolloutState(rollout.state)]


summary_option = click.option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="GITHUB_STEP_SUMMARY",
    help="When the wait ends, append the outcome and its evidence as Markdown to this file "
    "[default: $GITHUB_STEP_SUMMARY]",
)


@click.group()
def rollout() -> None:
    """Canary, shadow and blue-green rollouts judged by sequential tests."""


@rollout.command("start")
@click.argument("name")
@click.option(
    "--challenger",
    "challengers",
    type=int,
    required=True,
    multiple=True,
    help="Version to roll out; repeat (up to 4) to judge several against the champion at once",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=Strategy.canary.value,
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
@click.option(
    "--mirror-percent",
    type=float,
    default=100.0,
    show_default=True,
    help="Shadow: share of requests mirrored to the challenger, in (0, 100], sticky by routing "
    "key; both arms are judged on the mirrored requests, so a small share only takes longer",
)
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
    help="Family-wise false-alarm rate over all guardrails (and all challengers)",
)
@click.option(
    "--on-harm",
    type=click.Choice(["rollback", "pause"]),
    default="rollback",
    show_default=True,
    help="rollback: end the rollout (several challengers: drop the harmful one); pause: "
    "harmful challenger to 0 %, wait for review ('shelf rollout resume' or 'shelf rollback')",
)
@click.option(
    "--review-timeout",
    default="1h",
    show_default=True,
    help="With --on-harm pause: roll back if nobody resumes within this",
)
@click.option(
    "--primary-metric",
    help="Several challengers: the guardrail that picks the best non-inferior one "
    "[default: the first guardrail]",
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
    help="Non-inferiority margin of a guardrail, absolute or relative to the champion, "
    "e.g. error_rate=0.002, latency=5%; repeatable",
)
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="METRIC=VALUE",
    help="Harm threshold of a guardrail (at least its margin), e.g. error_rate=+20%, "
    "latency=10%; repeatable",
)
@click.option(
    "--time-block",
    default="10m",
    show_default=True,
    help="Statistics compare the arms within steps and time blocks of this length",
)
@click.option(
    "--warmup",
    default="0s",
    show_default=True,
    help="Start of every step that is recorded and shown but not judged, e.g. 60s",
)
@click.option(
    "--router",
    "router_kind",
    type=click.Choice(["gateway", "webhook"]),
    default="gateway",
    show_default=True,
    help="What applies the weights: Shelf's gateway, or any data plane behind a webhook",
)
@click.option("--router-url", help="webhook router: where Shelf POSTs the desired weights")
@click.option(
    "--prometheus",
    "prometheus_url",
    help="Read the arms' statistics from this Prometheus (with --router webhook)",
)
@click.option(
    "--promql-requests",
    metavar="QUERY",
    help="Cumulative request counter of version {version}, e.g. "
    'sum(model_requests_total{version="{version}"})',
)
@click.option("--promql-errors", metavar="QUERY", help="Cumulative server-error counter")
@click.option(
    "--promql-latency-buckets",
    metavar="QUERY",
    help="Cumulative latency histogram buckets, summed `by (le)`",
)
@click.option(
    "--metrics-interval", default="10s", show_default=True, help="How often counters are read"
)
@click.option(
    "--metrics-lag", default="5s", show_default=True, help="How long scrapes take to land"
)
@click.option(
    "--router-secret",
    envvar="SHELF_ROUTER_SECRET",
    help="webhook router: HMAC key its receiver checks [SHELF_ROUTER_SECRET]",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Stream progress; exit 0 promoted, 3 rolled back, 4 aborted, 5 timed out",
)
@click.option(
    "--timeout", "wait_timeout", default="7h", show_default=True, help="How long --wait waits"
)
@summary_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_start(
    ctx: click.Context,
    name: str,
    challengers: tuple[int, ...],
    strategy: str,
    steps: str | None,
    min_samples: int,
    min_step_duration: str,
    shadow_duration: str | None,
    mirror_percent: float,
    max_duration: str,
    on_timeout: str,
    alpha: float,
    on_harm: str,
    review_timeout: str,
    primary_metric: str | None,
    guardrails: tuple[str, ...],
    margins: tuple[str, ...],
    tolerances: tuple[str, ...],
    time_block: str,
    warmup: str,
    router_kind: str,
    router_url: str | None,
    router_secret: str | None,
    prometheus_url: str | None,
    promql_requests: str | None,
    promql_errors: str | None,
    promql_latency_buckets: str | None,
    metrics_interval: str,
    metrics_lag: str,
    wait: bool,
    wait_timeout: str,
    summary: Path | None,
    as_json: bool,
) -> int:
    """Start rolling out one or several challenger versions of NAME against its champion."""
    client = client_of(ctx)
    created = client.start_rollout(
        name,
        challengers[0] if len(challengers) == 1 else challengers,
        on_harm=on_harm,
        review_timeout_s=parse_duration(review_timeout),
        primary_metric=primary_metric,
        strategy=strategy,
        steps=parse_steps(steps) if steps is not None else None,
        min_samples=min_samples,
        min_step_duration_s=parse_duration(min_step_duration),
        shadow_duration_s=parse_duration(shadow_duration) if shadow_duration else None,
        mirror_percent=mirror_percent,
        max_duration_s=parse_duration(max_duration),
        on_timeout=on_timeout,
        alpha=alpha,
        guardrails=guardrails,
        guardrail_options=parse_thresholds(tolerances, "tolerance", parse_margins(margins)),
        time_block_s=parse_duration(time_block),
        warmup_s=parse_duration(warmup),
        router=router_spec(router_kind, router_url, router_secret),
        metrics=prometheus_queries(
            prometheus_url,
            promql_requests,
            promql_errors,
            promql_latency_buckets,
            parse_duration(metrics_interval),
            parse_duration(metrics_lag),
        ),
    )
    if wait:
        return wait_for_outcome(client, created.id, parse_duration(wait_timeout), as_json, summary)
    if as_json:
        print_json(created.model_dump(mode="json"))
    else:
        versions = ", ".join(f"{name}@{c.version}" for c in created.challengers)
        output.console.print(
            f"started rollout {created.id}: {versions} vs "
            f"champion {name}@{created.champion_version} ({strategy}"
            + (f", mirroring {created.mirror_percent:g}%" if created.mirror_percent < 100 else "")
            + ")"
        )
    return exit_codes.OK


@rollout.command("status")
@click.argument("name")
@click.option(
    "--watch",
    is_flag=True,
    help="Stream progress until the rollout ends; exit code as for `start --wait`",
)
@summary_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_status(
    ctx: click.Context, name: str, watch: bool, summary: Path | None, as_json: bool
) -> int:
    """State, step, weights, per-arm counts and each guardrail's evidence."""
    client = client_of(ctx)
    current = client.rollout(name)
    if watch:  # exits with the outcome's code, like `rollout start --wait`
        return wait_for_outcome(client, current.id, float("inf"), as_json, summary)
    if as_json:
        print_json(current.model_dump(mode="json"))
        return exit_codes.OK
    show_status(current)
    return exit_codes.OK


def show_status(r: RolloutOut) -> None:
    versus = ", ".join(f"v{c.version}" for c in r.challengers) or f"v{r.challenger_version}"
    output.console.print(
        f"[bold]{r.model}[/bold] rollout {r.id}: {r.state}"
        f" ({r.strategy_label}, champion v{r.champion_version} vs "
        f"challenger{'s' if len(r.challengers) > 1 else ''} {versus}; on harm: {r.on_harm})\n"
        f"  step {r.step_index + 1}/{len(r.steps) or 1}, challenger weight "
        f"{r.challenger_weight_bp / 100:g}%{mirror_label(r)}; "
        f"started {short_time(r.created_at.isoformat())} by {r.created_by}\n  {r.reason}",
        highlight=False,
    )
    if r.mirror_percent < 100:
        output.console.print(
            f"  sampled shadow: both arms are counted and judged on the {r.mirror_percent:g}% "
            "of requests mirrored (sticky by routing key)",
            highlight=False,
        )
    if r.router is not None:
        acked = r.router.acknowledged_weight_bp
        state = "waiting for acknowledgement" if r.router.pending else "acknowledged"
        output.console.print(
            f"  router {r.router.kind} {r.router.url}: {state}; last acknowledged "
            f"{'-' if acked is None else f'{acked / 100:g}%'} (revision "
            f"{r.router.acknowledged_revision})"
            + (f"; last error: {r.router.last_error}" if r.router.last_error else ""),
            highlight=False,
            markup=False,
        )
    if r.state == RolloutState.paused_on_harm and r.review_deadline is not None:
        output.console.print(
            f"  [bold]paused on harm[/bold] since {short_time(str(r.harm_paused_at))}: review "
            f"the evidence, then 'shelf rollout resume {r.model}' (fresh evidence) or "
            f"'shelf rollback {r.model}'; rolled back at "
            f"{short_time(r.review_deadline.isoformat())} otherwise",
            highlight=False,
        )
    names = list(r.arms)
    arms = {arm: r.arms[arm].model_dump() for arm in names}
    keys = (
        "requests",
        "errors",
        "error_rate",
        "latency_p50_ms",
        "latency_p99_ms",
        "labels",
        "accuracy",
        "mean_reward",
        "shadow_agreement",
    )
    table(["", *names], [[key, *(arms[arm][key] for arm in names)] for key in keys])
    if len(r.challengers) > 1:
        table(
            ["arm", "version", "weight", "status", "verdict", "reason"],
            [
                [
                    c.arm,
                    c.version,
                    f"{c.weight_bp / 100:g}%",
                    c.status,
                    c.evidence.verdict if c.evidence else "-",
                    c.reason or (c.evidence.reason if c.evidence else ""),
                ]
                for c in r.challengers
            ],
        )
        for c in r.challengers:
            if c.evidence is not None:
                output.console.print(f"  {c.arm} (v{c.version}):", highlight=False)
                _evidence_table(c.evidence.guardrails)
        return
    _evidence_table(_guardrails(r))


def _evidence_table(evidence: tuple[Evidence, ...]) -> None:
    if evidence:
        table(
            [
                "guardrail",
                "verdict",
                "p-value",
                "effect",
                "confidence sequence",
                "margin/tolerance",
            ],
            [
                [
                    e.metric,
                    e.verdict,
                    _num(e.p_value),
                    _effect(e),
                    f"[{e.shown(e.ci_low)}, {e.shown(e.ci_high)}]",
                    f"{e.shown(e.margin, False)} / {e.shown(e.tolerance, False)}",
                ]
                for e in evidence
            ],
        )
        if any(e.verdict == "harm" for e in evidence):
            output.console.print(
                "  * at an early stop the effect overstates the truth; the conservative end of "
                "the confidence sequence does not",
                highlight=False,
            )


def _effect(e: Evidence) -> str:
    if e.verdict == "harm" and e.effect_conservative is not None:
        return f"{e.shown(e.effect)} (at least {e.shown(e.effect_conservative)})*"
    return e.shown(e.effect)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _control(action: str) -> click.Command:
    @click.command(action, help=f"{action.capitalize()} the active rollout of NAME.")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True)
    @click.pass_context
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        result: RolloutOut = getattr(client_of(ctx), action)(name)
        if as_json:
            print_json(result.model_dump(mode="json"))
        else:
            output.console.print(f"{name} rollout {result.id}: {result.state}")

    return command


for _action in ("pause", "abort"):
    rollout.add_command(_control(_action))


@rollout.command("promote")
@click.argument("name")
@click.option(
    "--challenger", "version", type=int, help="Which challenger (A/B/n) [default: the first]"
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_promote(ctx: click.Context, name: str, version: int | None, as_json: bool) -> None:
    """Promote the active rollout of NAME now: its challenger becomes champion."""
    result = client_of(ctx).promote(name, version)
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        output.console.print(
            f"{name} rollout {result.id}: {result.state} (v{result.challenger_version})"
        )


@rollout.command("resume")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Resume a rollout paused on harm without asking")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_resume(ctx: click.Context, name: str, yes: bool, as_json: bool) -> int:
    """Resume the active rollout of NAME. One paused on harm asks for confirmation first: the
    suspended challenger gets traffic again and the evidence starts afresh."""
    client = client_of(ctx)
    if not yes:
        current = client.rollout(name)
        if current.state == RolloutState.paused_on_harm:
            show_status(current)
            if not sys.stdin.isatty():
                output.err_console.print(
                    f"{name} rollout {current.id} is paused on harm: resuming sends traffic "
                    "to the harmful challenger again; add --yes to confirm"
                )
                return exit_codes.USAGE
            if not click.confirm(
                "A guardrail showed harm. Resume, sending traffic to the suspended challenger "
                "again with fresh evidence?",
                default=False,
            ):
                output.err_console.print("not resumed")
                return exit_codes.ERROR
    result = client.resume(name)
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        output.console.print(f"{name} rollout {result.id}: {result.state}")
    return exit_codes.OK


@rollout.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rollout_list(ctx: click.Context, name: str, as_json: bool) -> None:
    """Past and current rollouts of NAME."""
    rows = client_of(ctx).rollouts(name)
    if as_json:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table(
        ["id", "challenger", "champion", "strategy", "state", "started", "reason"],
        [
            [
                r.id,
                ", ".join(str(c.version) for c in r.challengers) or r.challenger_version,
                r.champion_version,
                r.strategy_label,
                r.state,
                short_time(r.created_at.isoformat()),
                r.reason,
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
    client = client_of(ctx)
    if rollout_id is not None:
        rollouts = [client.rollout_by_id(rollout_id)]
    else:
        rollouts = list(reversed(client.rollouts(name)[: max(last, 1)]))
    histories = [RolloutHistory(r, client.observations(r.id)) for r in rollouts]
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
    result = client_of(ctx).rollback(name, to_version, reason)
    if as_json:
        print_json(result)
        return
    ended = f" (ended rollout {result['ended_rollout_id']})" if result["ended_rollout_id"] else ""
    output.console.print(
        f"{name}: champion is now v{result['champion_version']}{ended}", highlight=False
    )
