"""The reconciler leader's champion watch: one look at one model's champion.

Each look consumes the gateways' champion deltas (outside rollouts) into open time blocks,
judges every block that has closed, in order, with the detectors of ``controller.stats.drift``
and stores the state (so a restarted leader resumes where it was). A block is judged once the
gateways' flushes for it have landed (``SETTLE_FLUSHES`` flush intervals after it ends); a delta
arriving later than that is merged into the next block judged.

Re-arming: a check that alarms restarts its detector from zero at once, so a persisting change
alarms again after about the same delay and the false-alarm bound applies afresh; the check,
and the champion's status, stay in alarm until someone acknowledges them
(:func:`acknowledge`, ``shelf watch NAME --ack``).
"""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.stats.check_step import Detector, step_check
from controller.stats.drift import (
    DECAY_CHECKS,
    LOG_R_FLOOR,
    MIN_INPUT_SAMPLES,
    Target,
    log_threshold,
    mixture_statistic,
    observe,
)
from controller.stats.drift_targets import (
    baseline_targets,
    check_weights,
    group_shares,
    reference_targets,
    target_json,
    target_of,
)
from controller.stats.sufficient import ArmStats
from controller.stats.watch_report import Status, WatchCheck, WatchReport
from controller.tables import ArmStatsDelta, ChampionObservation, ChampionWatch
from controller.vocabulary import CHAMPION_STEP
from controller.watch.policy import WatchPolicySpec
from controller.webhooks import outbox
from registry.db.base import utcnow
from registry.db.tables import Model, ModelVersion
from registry.services import audit

ACTOR = "champion-watch"
SETTLE_FLUSHES = 3.0  # a block is judged this many gateway flush intervals after it ends
ANNOUNCED: frozenset[str] = frozenset({"drifting", "decayed", "stale"})
MAX_OPEN_BLOCKS = 64


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def fresh_state(
    champion: ModelVersion, previous: ModelVersion | None, policy: WatchPolicySpec, block_s: float
) -> dict[str, Any]:
    """Detector state of a new champion: its reference targets, and (for the bake window) the
    decay checks against the previous champion's reference."""
    tolerances = policy.tolerance_set()
    targets: list[Target] = []
    if champion.reference_profile:
        targets += reference_targets(champion.reference_profile, tolerances)
    if previous is not None and previous.reference_profile:
        targets += [
            t
            for t in reference_targets(previous.reference_profile, tolerances, "previous")
            if t.check in DECAY_CHECKS
        ]
    shares = group_shares(t.against for t in targets)
    return {
        "targets": [target_json(t) for t in targets],
        "log_r": {t.key: [LOG_R_FLOOR] * t.width for t in targets},
        "shares": shares,
        "weights": check_weights(targets, shares),
        "totals": {},
        "alarms": {},
        "baseline": ArmStats().to_json(),
        "baseline_done": False,
        "block_s": block_s,
    }


class ChampionLook:
    """One look at one model's champion, in the caller's transaction."""

    def __init__(
        self,
        session: Session,
        model: Model,
        champion: ModelVersion,
        policy: WatchPolicySpec,
        block_s: float,
        now: datetime,
        flush_interval_s: float = 1.0,
    ) -> None:
        self.session = session
        self.model = model
        self.champion = champion
        self.policy = policy
        self.block_s = block_s
        self.now = now
        self.settle_s = SETTLE_FLUSHES * flush_interval_s
        self.new_alarms: list[str] = []

    # -- the look, as a table of contents ----------------------------------------------------

    def run(self) -> tuple[ChampionWatch, WatchReport]:
        row = self._row()
        self._consume(row)
        state = _upgraded(copy.deepcopy(row.detectors))  # JSON columns see only new values
        open_blocks = dict(row.open_blocks)
        for block in sorted(int(b) for b in open_blocks):
            if (block + 1) * self.block_s + self.settle_s > self.now.timestamp():
                break
            stats = ArmStats.from_json(open_blocks.pop(str(block)))
            self._judge_block(row, state, block, stats)
        if not self._in_bake(row):
            self._retire_previous(state)
        row.detectors = state
        row.open_blocks = open_blocks
        report = self.report(row)
        self._set_status(row, report)
        row.checks = [c.model_dump(mode="json") for c in report.checks]
        row.updated_at = self.now
        return row, report

    # -- steps ------------------------------------------------------------------------------

    def _row(self) -> ChampionWatch:
        row = self.session.get(ChampionWatch, self.model.id, with_for_update=True)
        if row is not None and row.version_id == self.champion.id:
            return row
        previous = None
        if row is not None:
            previous = self.session.get(ModelVersion, row.version_id)
        else:
            self.session.flush()
            row = ChampionWatch(model_id=self.model.id)
            self.session.add(row)
        row.version_id = self.champion.id
        row.previous_version_id = previous.id if previous is not None else None
        row.status = "fresh"
        row.status_since = self.now
        row.reason = "watch started"
        row.detectors = fresh_state(self.champion, previous, self.policy, self.block_s)
        row.open_blocks = {}
        row.checks = []
        row.next_block = None
        row.started_at = self.now
        self.session.flush()
        return row

    def _consume(self, row: ChampionWatch) -> None:
        """Merge the champion's deltas into open blocks; drop other versions' (a former
        champion's last flushes)."""
        deltas = list(
            self.session.scalars(
                select(ArmStatsDelta).where(
                    ArmStatsDelta.model_id == self.model.id,
                    ArmStatsDelta.rollout_id.is_(None),
                    ArmStatsDelta.stratum_step == CHAMPION_STEP,
                )
            )
        )
        if not deltas:
            return
        blocks = dict(row.open_blocks)
        judged_before = row.next_block
        for delta in deltas:
            if delta.version_id != self.champion.id:
                continue
            block = delta.stratum_block
            if judged_before is not None and block < judged_before:
                block = judged_before  # late: joins the next block judged
            key = str(block)
            merged = ArmStats.from_json(delta.stats)
            if key in blocks:
                merged = ArmStats.from_json(blocks[key]).merge(merged)
            blocks[key] = merged.to_json()
        while len(blocks) > MAX_OPEN_BLOCKS:  # bounded: the oldest open blocks merge
            oldest, second = sorted(blocks, key=int)[:2]
            merged = ArmStats.from_json(blocks.pop(oldest)).merge(
                ArmStats.from_json(blocks[second])
            )
            blocks[second] = merged.to_json()
        row.open_blocks = blocks
        ids = [d.id for d in deltas]
        self.session.execute(delete(ArmStatsDelta).where(ArmStatsDelta.id.in_(ids)))

    def _judge_block(
        self, row: ChampionWatch, state: dict[str, Any], block: int, stats: ArmStats
    ) -> None:
        block_end = datetime.fromtimestamp((block + 1) * self.block_s, UTC)
        if not state["baseline_done"]:
            if block_end <= row.started_at + self.policy.baseline_period + timedelta(
                seconds=self.block_s
            ):
                baseline = ArmStats.from_json(state["baseline"]).merge(stats)
                state["baseline"] = baseline.to_json()
            else:
                self._finish_baseline(state)
        statistics: dict[str, float] = {}
        for target in [target_of(t) for t in state["targets"]]:
            observation = observe(target, stats)
            key = target.key
            detectors = _detectors(state, target)
            judged = step_check(
                target, state["log_r"][key], detectors.get(key), block, stats, observation
            )
            if judged is None:
                continue
            log_r, detector = judged
            if detector is not None:
                detectors[key] = detector
            if observation is not None:
                n, total = state["totals"].get(key, (0.0, 0.0))
                mean = observation.observed_mean or 0.0
                state["totals"][key] = (n + observation.n, total + mean * observation.n)
            statistic = mixture_statistic(log_r)
            statistics[key] = statistic
            if statistic >= self.threshold(state, key):
                alarm = state["alarms"].get(key) or {"since": _iso(block_end), "count": 0}
                alarm["count"] += 1
                alarm["block"] = block
                state["alarms"][key] = alarm
                self.new_alarms.append(key)
                log_r = [LOG_R_FLOOR] * len(log_r)  # re-armed
                detectors.pop(key, None)
            state["log_r"][key] = log_r
        row.next_block = block + 1
        self.session.add(
            ChampionObservation(
                model_id=self.model.id,
                version_id=self.champion.id,
                block=block,
                at=block_end,
                status=row.status,
                summary=summarise(stats, statistics),
            )
        )

    def _finish_baseline(self, state: dict[str, Any]) -> None:
        state["baseline_done"] = True
        added = baseline_targets(ArmStats.from_json(state["baseline"]), self.policy.tolerance_set())
        state["targets"] = state["targets"] + [target_json(t) for t in added]
        state["weights"] = {**state["weights"], **check_weights(added, state["shares"])}
        for target in added:
            state["log_r"][target.key] = [LOG_R_FLOOR] * target.width

    def _in_bake(self, row: ChampionWatch) -> bool:
        return self.now < row.started_at + self.policy.bake

    def _retire_previous(self, state: dict[str, Any]) -> None:
        kept = [t for t in state["targets"] if t["against"] != "previous"]
        if len(kept) != len(state["targets"]):
            state["targets"] = kept
            windows = state.get("label_windows", {})
            state["label_windows"] = {k: v for k, v in windows.items() if "@previous" not in k}

    def threshold(self, state: dict[str, Any], key: str) -> float:
        """``log A`` of one check, from its share of the policy's weekly budget."""
        weight = float(state["weights"].get(key, 0.0))
        return log_threshold(weight, self.block_s, self.policy.false_alarms_per_week)

    # -- reading the state ----------------------------------------------------------------

    def report(self, row: ChampionWatch) -> WatchReport:
        """The watch as it stands in ``row``."""
        state = _upgraded(row.detectors)
        checks = []
        for data in state["targets"]:
            target = target_of(data)
            key = target.key
            alarm = state["alarms"].get(key)
            statistic = mixture_statistic(state["log_r"].get(key, [LOG_R_FLOOR]))
            n, total = state["totals"].get(key, (0.0, 0.0))
            checks.append(
                WatchCheck(
                    check=target.check,
                    against=target.against,
                    effect="decay" if target.check in DECAY_CHECKS else "drift",
                    state="alarm" if alarm else "ok",
                    since=_at(alarm["since"]) if alarm else row.started_at,
                    statistic=statistic,
                    threshold=self.threshold(state, key),
                    e_value=math.exp(statistic) if statistic < 700 else None,
                    expected=target.mean,
                    tolerance=target.tolerance,
                    observed=total / n if n else None,
                    n=n,
                    alarms=int(alarm["count"]) if alarm else 0,
                    detail=_detail(target, alarm),
                )
            )
        status, reason = self._status(checks)
        stale_at = self._stale_at()
        bake_until = row.started_at + self.policy.bake
        baseline_until = (
            None if state["baseline_done"] else row.started_at + self.policy.baseline_period
        )
        return WatchReport(
            model=self.model.name,
            version=self.champion.version,
            status=status,
            since=row.status_since if status == row.status else self.now,
            reason=reason,
            checks=tuple(checks),
            started_at=row.started_at,
            baseline_until=baseline_until,
            bake_until=bake_until if self.now < bake_until else None,
            stale_at=stale_at,
            on_decay=self.policy.on_decay,
            block_s=self.block_s,
            false_alarms_per_week=self.policy.false_alarms_per_week,
            updated_at=self.now,
        )

    def _stale_at(self) -> datetime | None:
        age = self.policy.max_age
        end = self.champion.data_window_end
        return end + age if age is not None and end is not None else None

    def _status(self, checks: list[WatchCheck]) -> tuple[Status, str]:
        alarms = [c for c in checks if c.state == "alarm"]
        decayed = [c for c in alarms if c.effect == "decay"]
        if decayed:
            return "decayed", "; ".join(_why(c) for c in decayed)
        if alarms:
            return "drifting", "; ".join(_why(c) for c in alarms)
        stale_at = self._stale_at()
        if stale_at is not None and self.now >= stale_at:
            end = self.champion.data_window_end
            assert end is not None
            return "stale", (
                f"training data ended {end.date().isoformat()}, older than max_data_age "
                f"{self.policy.max_data_age}"
            )
        return "fresh", "no check alarms" + (
            "" if stale_at is None else f"; stale at {stale_at.date()}"
        )

    def _set_status(self, row: ChampionWatch, report: WatchReport) -> None:
        if report.status == row.status and not self.new_alarms:
            return
        changed = report.status != row.status
        row.status = report.status
        row.reason = report.reason
        if changed:
            row.status_since = self.now
        alarming = [c.model_dump(mode="json") for c in report.checks if c.state == "alarm"]
        payload = {
            "model": self.model.name,
            "version": self.champion.version,
            "status": report.status,
            "reason": report.reason,
            "evidence": alarming,
            "watch": f"/v1/models/{self.model.name}/watch",
        }
        if changed:
            event = f"champion.{report.status}"
            audit.record(self.session, event, ACTOR, self.model, **payload)
            if report.status in ANNOUNCED:
                announced = {"event": event, "actor": ACTOR, "at": _iso(self.now), **payload}
                outbox.queue(self.session, self.model.id, event, announced)

    @property
    def bake_decay(self) -> list[str]:
        """Checks against the previous champion's reference that alarmed at this look."""
        return [k for k in self.new_alarms if k.endswith("@previous")]


def _detectors(state: dict[str, Any], target: Target) -> dict[str, Detector]:
    """Where ``target``'s detector state is kept: the late-label windows of accuracy checks
    and the change times of contrast checks (both dicts by check key; others hold none)."""
    kept = "label_windows" if target.check == "accuracy" else "contrasts"
    return state.setdefault(kept, {})


def _upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """A state stored before the mixture Shiryaev-Roberts detectors (per-bet CUSUMs, one
    threshold for every check): the same targets, their budget split as a new watch's would be,
    detectors restarted. Returns states already current unchanged."""
    if "log_r" in state:
        return state
    targets = [target_of(t) for t in state["targets"]]
    upgraded = {k: v for k, v in state.items() if k != "cusum"}
    shares = group_shares(t.against for t in targets)
    upgraded["shares"] = shares
    upgraded["weights"] = check_weights(targets, shares)
    upgraded["log_r"] = {t.key: [LOG_R_FLOOR] * t.width for t in targets}
    return upgraded


def _why(check: WatchCheck) -> str:
    observed = "-" if check.observed is None else f"{check.observed:.4g}"
    return (
        f"{check.check} vs {check.against}: {observed} against {check.expected:.4g} "
        f"± {check.tolerance:.3g}"
    )


def _detail(target: Target, alarm: dict[str, Any] | None) -> str:
    if target.check.startswith("input:") and target.kind == "gaussian":
        what = f"mean of {target.check[6:]} (sd {target.scale:.3g}, tolerance in sd)"
    else:
        what = target.check
    if alarm:
        return f"{what}: alarm since {alarm['since']} ({alarm['count']} alarm(s))"
    if target.check.startswith("input:"):
        return f"{what}: blocks with at least {MIN_INPUT_SAMPLES} sampled requests"
    return what


def summarise(stats: ArmStats, statistics: dict[str, float]) -> dict[str, Any]:
    """A judged block as the champion page and ``shelf watch`` show it over time."""
    answered = sum(stats.predicted.values())
    scored = sum(stats.confidence_counts)
    return {
        "requests": stats.requests,
        "error_rate": stats.error_rate,
        "labels": stats.labels,
        "accuracy": stats.correct / stats.labels if stats.labels else None,
        "classes": {k: v / answered for k, v in stats.predicted.items()} if answered else {},
        "mean_confidence": (
            sum(
                (i + 0.5) / len(stats.confidence_counts) * c
                for i, c in enumerate(stats.confidence_counts)
            )
            / scored
            if scored
            else None
        ),
        "latency_p50_s": stats.latency_quantile(0.5),
        "inputs": {k: v[1] / v[0] for k, v in stats.inputs.items() if v[0]},
        "statistics": statistics,
    }


def acknowledge(session: Session, model: Model, actor: str, now: datetime | None = None) -> None:
    """Clears every alarm of the model's champion watch and re-arms its detectors; the next
    look sets the status from the checks (``fresh``, or ``stale`` past the shelf life)."""
    row = session.get(ChampionWatch, model.id, with_for_update=True)
    if row is None:
        return
    state = copy.deepcopy(row.detectors)
    cleared = sorted(state.get("alarms", {}))
    state["alarms"] = {}
    state["totals"] = {}
    state = _upgraded(state)
    state["log_r"] = {key: [LOG_R_FLOOR] * len(r) for key, r in state["log_r"].items()}
    state["contrasts"] = {}
    state["label_windows"] = {}
    row.detectors = state
    row.reason = f"acknowledged by {actor}"
    row.updated_at = now or utcnow()
    # The status follows at the next look (fresh, or stale past the shelf life), audited then.
    audit.record(session, "champion.acknowledged", actor, model, cleared=cleared)
