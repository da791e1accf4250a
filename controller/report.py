"""A self-contained HTML report of rollouts (weights and every guardrail's evidence over time)
and of a champion (each watched statistic over time against its reference).

Inline SVG, no JavaScript and no plotting dependency, so the file opens anywhere and can be
attached to an incident ticket or a CI run."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.api.schemas import ObservationOut, RolloutOut, WatchOut
from controller.stats import CONTINUE, Evidence
from controller.stats.evidence import DISPLAY_UNITS, EffectUnit, display_value
from controller.vocabulary import Arm

WIDTH, HEIGHT, PAD = 640, 180, 44
# The other challengers of an A/B/n rollout, in arm order.
CHALLENGER_COLOURS = ("#c05621", "#6b46c1", "#2c7a7b", "#b83280")
COLOURS = {
    Arm.champion: "#2b6cb0",
    Arm.challenger: CHALLENGER_COLOURS[0],
    "band": "#fbd38d",
    "margin": "#9b2c2c",
}
VERDICT_COLOURS = {"harm": "#c53030", "no_harm_within_margin": "#2f855a", "continue": "#718096"}


@dataclass(frozen=True)
class RolloutHistory:
    """A rollout as the API returns it, with its observations (one per reconciler look)."""

    rollout: RolloutOut
    observations: Sequence[ObservationOut]


def _time(moment: datetime) -> float:
    return moment.timestamp()


class _Chart:
    """Maps data to one SVG panel's pixels."""

    def __init__(self, x_max: float, y_min: float, y_max: float, log_y: bool = False) -> None:
        self.x_max = max(x_max, 1e-9)
        self.log_y = log_y
        self.y_min, self.y_max = (math.log10(y_min), math.log10(y_max)) if log_y else (y_min, y_max)
        if self.y_max <= self.y_min:
            self.y_max = self.y_min + 1.0
        self.parts: list[str] = []

    def x(self, seconds: float) -> float:
        return PAD + seconds / self.x_max * (WIDTH - 2 * PAD)

    def y(self, value: float) -> float:
        if self.log_y:
            value = math.log10(max(value, 10**self.y_min))
        value = min(max(value, self.y_min), self.y_max)
        return HEIGHT - PAD + (value - self.y_min) / (self.y_min - self.y_max) * (HEIGHT - 2 * PAD)

    def dots(self, points: list[tuple[float, float]], colour: str) -> None:
        """A marker per point, so a rollout decided after one look still shows its data."""
        for t, v in points:
            self.parts.append(
                f'<circle cx="{self.x(t):.1f}" cy="{self.y(v):.1f}" r="2.5" fill="{colour}"/>'
            )

    def bars(self, lows: list[tuple[float, float]], highs: list[tuple[float, float]]) -> None:
        """The interval at each look as a vertical bar (visible even for one look)."""
        for (t, low), (_, high) in zip(lows, highs, strict=True):
            x = self.x(t)
            self.parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.y(low):.1f}" y2="{self.y(high):.1f}" '
                f'stroke="{COLOURS["band"]}" stroke-width="3"/>'
            )

    def line(self, points: list[tuple[float, float]], colour: str, step: bool = False) -> None:
        if not points:
            return
        coords: list[str] = []
        for i, (t, v) in enumerate(points):
            if step and i:
                coords.append(f"{self.x(t):.1f},{self.y(points[i - 1][1]):.1f}")
            coords.append(f"{self.x(t):.1f},{self.y(v):.1f}")
        joined = " ".join(coords)
        self.parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{joined}"/>'
        )

    def band(self, lows: list[tuple[float, float]], highs: list[tuple[float, float]]) -> None:
        if not lows:
            return
        outline = [(self.x(t), self.y(v)) for t, v in highs]
        outline += [(self.x(t), self.y(v)) for t, v in reversed(lows)]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in outline)
        self.parts.append(f'<polygon fill="{COLOURS["band"]}" opacity="0.7" points="{coords}"/>')

    def hline(self, value: float, colour: str, label: str) -> None:
        y = self.y(value)
        self.parts.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="4 3"/><text x="{WIDTH - PAD + 2}" y="{y + 4:.1f}" '
            f'font-size="10" fill="{colour}">{html.escape(label)}</text>'
        )

    def svg(self, title: str, y_label: str) -> str:
        low = 10**self.y_min if self.log_y else self.y_min
        high = 10**self.y_max if self.log_y else self.y_max
        axes = (
            f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" '
            f'fill="none" stroke="#cbd5e0"/>'
            f'<text x="{PAD}" y="{PAD - 8}" font-size="12" font-weight="bold">'
            f"{html.escape(title)}</text>"
            f'<text x="4" y="{PAD + 4}" font-size="10">{high:.3g}</text>'
            f'<text x="4" y="{HEIGHT - PAD}" font-size="10">{low:.3g}</text>'
            f'<text x="{PAD}" y="{HEIGHT - PAD + 16}" font-size="10">0 s</text>'
            f'<text x="{WIDTH - PAD - 30}" y="{HEIGHT - PAD + 16}" font-size="10">'
            f"{self.x_max:.0f} s</text>"
            f'<text x="{PAD + 40}" y="{HEIGHT - 6}" font-size="10">{html.escape(y_label)}</text>'
        )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
            f"{axes}{''.join(self.parts)}</svg>"
        )


def _weights_chart(
    start: float, span: float, observations: Sequence[ObservationOut], arms: Sequence[str] = ()
) -> str:
    chart = _Chart(span, 0, 100)
    if not arms:
        points = [(_time(o.at) - start, o.challenger_weight_bp / 100) for o in observations]
        chart.line(points, COLOURS[Arm.challenger], step=True)
        chart.dots(points, COLOURS[Arm.challenger])
        return chart.svg("challenger traffic (%)", "time since start")
    for position, arm in enumerate(arms):
        colour = CHALLENGER_COLOURS[position % len(CHALLENGER_COLOURS)]
        points = [
            (_time(o.at) - start, o.challengers[arm].weight_bp / 100)
            for o in observations
            if o.challengers and arm in o.challengers
        ]
        chart.line(points, colour, step=True)
        chart.dots(points, colour)
    legend = ", ".join(
        f"{arm} {CHALLENGER_COLOURS[i % len(CHALLENGER_COLOURS)]}" for i, arm in enumerate(arms)
    )
    return chart.svg(f"each challenger's traffic (%): {legend}", "time since start")


def _arm_observations(observations: Sequence[ObservationOut], arm: str) -> list[ObservationOut]:
    """The looks with ``arm``'s evidence in place of the lead challenger's."""
    return [
        o.model_copy(update={"evidence": o.challengers[arm].evidence})
        for o in observations
        if o.challengers and arm in o.challengers
    ]


def _guardrail_charts(
    start: float, span: float, observations: Sequence[ObservationOut], prefix: str = ""
) -> list[str]:
    metrics: list[str] = []
    for obs in observations:
        for evidence in obs.evidence.guardrails:
            if evidence.metric not in metrics:
                metrics.append(evidence.metric)
    charts = []
    for metric in metrics:
        points: list[tuple[float, Evidence]] = [
            (_time(o.at) - start, e)
            for o in observations
            if (e := o.evidence.guardrail(metric)) is not None
        ]
        unit: EffectUnit = points[0][1].unit if points else "mean"

        def shown(value: float, unit: EffectUnit = unit) -> float:
            return display_value(value, unit)

        both = [(t, e) for t, e in points if e.ci_low is not None and e.ci_high is not None]
        lows = [(t, shown(e.ci_low)) for t, e in both if e.ci_low is not None]
        highs = [(t, shown(e.ci_high)) for t, e in both if e.ci_high is not None]
        effects = [(t, shown(e.effect)) for t, e in points if e.effect is not None]
        last = points[-1][1] if points else None
        sign = -1.0 if last is not None and last.worse == "lower" else 1.0
        lines: list[tuple[float, str, str]] = []
        if last is not None:
            lines.append((sign * shown(last.margin), COLOURS["margin"], "margin"))
            if last.tolerance is not None and last.tolerance != last.margin:
                lines.append((sign * shown(last.tolerance), COLOURS["margin"], "tolerance"))
        values = [v for _, v in lows + highs + effects] + [0.0] + [v for v, _, _ in lines]
        finite = [v for v in values if math.isfinite(v)]
        low_y, high_y = (min(finite), max(finite)) if finite else (-1.0, 1.0)
        pad = 0.08 * (high_y - low_y or 1.0)
        band = _Chart(span, low_y - pad, high_y + pad)
        band.band(lows, highs)
        band.bars(lows, highs)
        band.hline(0.0, "#4a5568", "0")
        for value, colour, label in lines:
            band.hline(value, colour, label)
        band.line(effects, COLOURS[Arm.challenger])
        band.dots(effects, COLOURS[Arm.challenger])
        verdict = points[-1][1].verdict if points else CONTINUE
        charts.append(
            f"<h3>{html.escape(prefix)}{html.escape(metric)} "
            f'<span style="color:{VERDICT_COLOURS.get(verdict, "#000")}">'
            f"{html.escape(verdict)}</span></h3>"
            + band.svg(
                f"{metric}: effect and confidence sequence",
                f"challenger minus champion ({DISPLAY_UNITS.get(unit, '')})",
            )
        )
        p_values = [(t, e.p_value) for t, e in points if e.p_value is not None]
        if p_values:
            floor = min([1e-6, *(p for _, p in p_values if p > 0.0)])
            pv = _Chart(span, floor, 1.0, log_y=True)
            pv.line(p_values, COLOURS[Arm.challenger])
            pv.dots(p_values, COLOURS[Arm.challenger])
            alpha = points[0][1].alpha if points else None
            if alpha:
                pv.hline(alpha, COLOURS["margin"], "alpha")
            charts.append(pv.svg(f"{metric}: anytime-valid p-value for harm", "log scale"))
    return charts


def _section(history: RolloutHistory) -> str:
    r = history.rollout
    observations = list(history.observations)
    several = len(r.challengers) > 1
    versus = ", ".join(f"v{c.version}" for c in r.challengers) or f"v{r.challenger_version}"
    title = f"{r.model} rollout {r.id}: v{r.champion_version} → {versus} ({r.strategy_label})"
    colour = {"promoted": "#2f855a", "rolled_back": "#c53030"}.get(r.state, "#4a5568")
    head = (
        f"<h2>{html.escape(title)}</h2><p><b style='color:{colour}'>{html.escape(r.state)}</b>: "
        f"{html.escape(r.reason)}</p>"
    )
    if r.state == "paused_on_harm" and r.review_deadline is not None:
        head += (
            f"<p><b>Paused on harm</b> since {r.harm_paused_at}: resume (fresh evidence) or roll "
            f"back; rolled back automatically at {r.review_deadline.isoformat()}.</p>"
        )
    if several:
        rows = "".join(
            f"<tr><td>{html.escape(c.arm)}</td><td>v{c.version}</td>"
            f"<td>{c.weight_bp / 100:g}%</td><td>{html.escape(c.status)}</td>"
            f"<td>{html.escape(c.evidence.verdict if c.evidence else '-')}</td>"
            f"<td>{html.escape(c.reason)}</td></tr>"
            for c in r.challengers
        )
        head += (
            "<table><tr><th>arm</th><th>version</th><th>weight</th><th>status</th>"
            f"<th>verdict</th><th>reason</th></tr>{rows}</table>"
        )
    if not observations:
        return head + "<p>No observations recorded.</p>"
    start = _time(r.created_at)
    # At least a second, so a rollout decided at its first look still has an x axis.
    span = max(1.0, *(_time(o.at) - start for o in observations))
    arms = {arm: summary.model_dump() for arm, summary in r.arms.items()}
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td>"
        + "".join(f"<td>{arms.get(arm, {}).get(key)}</td>" for arm in arms)
        + "</tr>"
        for key in ("requests", "error_rate", "latency_p50_ms", "latency_p99_ms", "accuracy")
    )
    header = "".join(f"<th>{html.escape(arm)}</th>" for arm in arms)
    table = f"<table><tr><th></th>{header}</tr>{rows}</table>"
    if not several:
        charts = [
            _weights_chart(start, span, observations),
            *_guardrail_charts(start, span, observations),
        ]
    else:
        names = [c.arm for c in r.challengers]
        charts = [_weights_chart(start, span, observations, names)]
        for c in r.challengers:
            charts += _guardrail_charts(
                start, span, _arm_observations(observations, c.arm), f"{c.arm} (v{c.version}): "
            )
    return head + table + "".join(f"<div>{c}</div>" for c in charts)


def _watched_value(check: str, summary: dict[str, Any]) -> float | None:
    """A judged block's value of ``check`` (``controller.watch.watcher.summarise``)."""
    value: Any
    if check == "latency":
        value = summary.get("latency_p50_s")
    elif check == "confidence":
        value = summary.get("mean_confidence")
    elif check.startswith("class:"):
        value = (summary.get("classes") or {}).get(check[6:], 0.0)
    elif check.startswith("input:"):
        value = (summary.get("inputs") or {}).get(check[6:])
    else:
        value = summary.get(check)
    return float(value) if isinstance(value, int | float) else None


def champion_section(watched: WatchOut) -> str:
    """The champion page: each watched statistic per judged block against what it should be
    (dashed: the reference or first period; shaded: within tolerance of the reference), and
    each check's detector statistic against its alarm level."""
    report, history = watched.report, watched.history
    colour = {"fresh": "#2f855a", "stale": "#b7791f"}.get(report.status, "#c53030")
    head = (
        f"<h2>champion {html.escape(report.model)} v{report.version}</h2>"
        f"<p><b style='color:{colour}'>{report.status}</b> since "
        f"{report.since.isoformat(timespec='seconds')}: {html.escape(report.reason)}</p>"
    )
    if not history:
        return head + "<p>No judged blocks yet.</p>"
    start = _time(history[0].at)
    span = max(1.0, _time(history[-1].at) - start)
    charts = []
    for check in dict.fromkeys(c.check for c in report.checks):
        checks = [c for c in report.checks if c.check == check]
        points = [
            (_time(p.at) - start, v)
            for p in history
            if (v := _watched_value(check, p.summary)) is not None
        ]
        if not points:
            continue
        shown = [v for _, v in points] + [c.expected for c in checks if check != "latency"]
        low, high = min(shown), max(shown)
        chart = _Chart(span, low - 0.1 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
        for c in checks:
            if check == "latency":
                continue  # judged as the share above the first period's p90; shown as p50
            if c.against == "reference" and not check.startswith("input:"):
                edges = [(0.0, c.expected - c.tolerance), (span, c.expected - c.tolerance)]
                tops = [(0.0, c.expected + c.tolerance), (span, c.expected + c.tolerance)]
                chart.band(edges, tops)
            chart.hline(c.expected, COLOURS["margin"], c.against)
        chart.line(points, COLOURS[Arm.champion])
        chart.dots(points, COLOURS[Arm.champion])
        unit = "median latency (s)" if check == "latency" else "per judged block"
        charts.append(chart.svg(f"{check}: {', '.join(c.state for c in checks)}", unit))
        for c in checks:
            key = f"{c.check}@{c.against}"
            stats = [
                (_time(p.at) - start, float(p.summary.get("statistics", {}).get(key, 0.0)))
                for p in history
            ]
            detector = _Chart(span, min(0.0, *(v for _, v in stats)), c.threshold * 1.1)
            detector.hline(c.threshold, COLOURS["margin"], "alarm")
            detector.line(stats, COLOURS[Arm.challenger])
            charts.append(detector.svg(f"{check} vs {c.against}: detector (log e)", "time"))
    return head + "".join(f"<div>{c}</div>" for c in charts)


def render_html(
    histories: Sequence[RolloutHistory],
    title: str = "Shelf rollout report",
    champion: WatchOut | None = None,
) -> str:
    body = "".join(f"<section>{_section(h)}</section>" for h in histories)
    if champion is not None:
        body += f"<section>{champion_section(champion)}</section>"
    style = (
        "body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;color:#1a202c}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #e2e8f0;"
        "padding:2px 8px;text-align:right}section{margin-bottom:3em}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
