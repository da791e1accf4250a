"""Rollout operations over HTTP: start a rollout, follow it to its outcome, control it, roll
back, send delayed ground truth to a gateway, manage webhooks.

Rollouts come back as :class:`~controller.api.schemas.RolloutOut`, with the evidence as the
statistics engine's own :class:`~controller.stats.Report`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from controller.api.schemas import ObservationOut, RolloutOut, WatchOut, WatchStatusOut
from controller.metric_sources.queries import PrometheusQueries
from controller.routers.base import RouterSpec
from controller.vocabulary import Strategy
from registry.client.http import Connection
from registry.errors import InvalidInput
from registry.names import check_model_name


class RolloutTimeout(Exception):
    """``wait`` gave up before the rollout ended; ``rollout`` is how it was last seen."""

    def __init__(self, rollout: RolloutOut, timeout_s: float) -> None:
        super().__init__(
            f"rollout {rollout.id} is still {rollout.state} after {timeout_s:g}s of waiting"
        )
        self.rollout = rollout


class RolloutClient:
    """The rollout half of :class:`shelf.Client`; usable on its own over a
    :class:`~registry.client.Connection`."""

    def __init__(self, connection: Connection, gateway_url: str | None = None) -> None:
        self.connection = connection
        self.gateway_url = gateway_url

    def start_rollout(
        self,
        name: str,
        challenger: int | Sequence[int],
        *,
        strategy: Strategy | str = Strategy.canary,
        steps: Sequence[float] | None = None,
        min_samples: int = 2000,
        min_step_duration_s: float = 300.0,
        shadow_duration_s: float | None = None,
        mirror_percent: float = 100.0,
        max_duration_s: float = 6 * 3600.0,
        on_timeout: str = "rollback",
        alpha: float = 0.05,
        guardrails: Sequence[str] = (),
        guardrail_options: dict[str, dict[str, Any]] | None = None,
        time_block_s: float | None = None,
        warmup_s: float | None = None,
        router: RouterSpec | None = None,
        metrics: PrometheusQueries | None = None,
        on_harm: str = "rollback",
        review_timeout_s: float | None = None,
        primary_metric: str | None = None,
    ) -> RolloutOut:
        """Starts rolling out version ``challenger`` of ``name`` against its champion, or
        several versions at once (A/B/n) when ``challenger`` is a sequence. The defaults are
        the API's (``POST /v1/models/{name}/rollouts``); ``router`` sends the weights to
        another data plane instead of the built-in gateway."""
        check_model_name(name)
        named: dict[str, Any] = (
            {"challenger": challenger}
            if isinstance(challenger, int)
            else {"challengers": list(challenger)}
        )
        body: dict[str, Any] = {
            **named,
            "on_harm": on_harm,
            "strategy": str(strategy),
            "min_samples": min_samples,
            "min_step_duration_s": min_step_duration_s,
            "mirror_percent": mirror_percent,
            "max_duration_s": max_duration_s,
            "on_timeout": on_timeout,
            "alpha": alpha,
            "guardrails": list(guardrails),
            "guardrail_options": guardrail_options or {},
        }
        if steps is not None:
            body["steps"] = list(steps)
        if shadow_duration_s is not None:
            body["shadow_duration_s"] = shadow_duration_s
        if time_block_s is not None:
            body["time_block_s"] = time_block_s
        if warmup_s is not None:
            body["warmup_s"] = warmup_s
        if router is not None:
            body["router"] = router.model_dump(exclude_none=True)
        if metrics is not None:
            body["metrics"] = metrics.model_dump(exclude_none=True)
        if review_timeout_s is not None:
            body["review_timeout_s"] = review_timeout_s
        if primary_metric is not None:
            body["primary_metric"] = primary_metric
        return RolloutOut.model_validate(self.connection.post(f"/v1/models/{name}/rollouts", body))

    def rollout(self, name: str) -> RolloutOut:
        """The model's active rollout, or its most recent one."""
        check_model_name(name)
        return RolloutOut.model_validate(self.connection.get(f"/v1/models/{name}/rollout"))

    def rollout_by_id(self, rollout_id: int) -> RolloutOut:
        return RolloutOut.model_validate(self.connection.get(f"/v1/rollouts/{rollout_id}"))

    def rollouts(self, name: str, limit: int = 20) -> list[RolloutOut]:
        """Past and current rollouts of ``name``, newest first."""
        check_model_name(name)
        rows = self.connection.get(f"/v1/models/{name}/rollouts", params={"limit": limit})
        return [RolloutOut.model_validate(row) for row in rows]

    def observations(self, rollout_id: int) -> list[ObservationOut]:
        """Every look the reconciler took at a rollout: weights and evidence over time."""
        rows = self.connection.get(f"/v1/rollouts/{rollout_id}/observations")
        return [ObservationOut.model_validate(row) for row in rows]

    def wait(
        self,
        rollout_id: int,
        timeout_s: float = float("inf"),
        *,
        poll_s: float = 1.0,
        on_progress: Callable[[RolloutOut], None] | None = None,
    ) -> RolloutOut:
        """Polls until the rollout is promoted, rolled back or aborted and returns it;
        ``on_progress`` sees every poll. Raises :class:`RolloutTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            rollout = self.rollout_by_id(rollout_id)
            if on_progress is not None:
                on_progress(rollout)
            if rollout.ended:
                return rollout
            if time.monotonic() >= deadline:
                raise RolloutTimeout(rollout, timeout_s)
            time.sleep(poll_s)

    def _control(self, name: str, action: str) -> RolloutOut:
        check_model_name(name)
        return RolloutOut.model_validate(
            self.connection.post(f"/v1/models/{name}/rollout/{action}")
        )

    def pause(self, name: str) -> RolloutOut:
        return self._control(name, "pause")

    def resume(self, name: str) -> RolloutOut:
        return self._control(name, "resume")

    def promote(self, name: str, version: int | None = None) -> RolloutOut:
        """Promotes the active rollout's challenger ``version`` (A/B/n), or its first in play."""
        if version is None:
            return self._control(name, "promote")
        check_model_name(name)
        return RolloutOut.model_validate(
            self.connection.post(f"/v1/models/{name}/rollout/promote", params={"version": version})
        )

    def abort(self, name: str) -> RolloutOut:
        return self._control(name, "abort")

    def rollback(self, name: str, to: int | None = None, reason: str = "") -> dict[str, Any]:
        """The incident button: ends any active rollout and sends all traffic to the previous
        champion (or version ``to``) now. Returns the old and new champion versions."""
        check_model_name(name)
        body: dict[str, Any] = {"reason": reason}
        if to is not None:
            body["to"] = to
        result: dict[str, Any] = self.connection.post(f"/v1/models/{name}/rollback", body)
        return result

    def feedback(
        self, request_id: str, *, label: str | int | None = None, value: float | None = None
    ) -> dict[str, Any]:
        """Delayed ground truth for one answered request (its ``X-Shelf-Request-Id``): the true
        ``label``, or a numeric reward ``value``. Sent to the gateway, not the API."""
        if self.gateway_url is None:
            raise InvalidInput("feedback goes to the gateway: give the client a gateway_url")
        if (label is None) == (value is None):
            raise InvalidInput("give exactly one of label or value")
        body: dict[str, Any] = {"request_id": request_id}
        body.update({"label": label} if label is not None else {"value": value})
        url = f"{self.gateway_url.rstrip('/')}/v1/feedback"
        result: dict[str, Any] = self.connection.post(url, body)
        return result

    def add_webhook(
        self, url: str, model: str | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """Announces transitions to ``url`` (one model's, or every model's); the response is
        the only time the signing secret is shown."""
        body = {"url": url, "model": model, "secret": secret}
        result: dict[str, Any] = self.connection.post("/v1/webhooks", body)
        return result

    def webhooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.connection.get("/v1/webhooks")
        return result

    def delete_webhook(self, webhook_id: int) -> None:
        self.connection.delete(f"/v1/webhooks/{webhook_id}")

    # -- champion watch ------------------------------------------------------------------

    def watch(self, name: str, history: int = 0) -> WatchOut:
        """The champion's status, each check's evidence, and its latest ``history`` blocks."""
        check_model_name(name)
        data = self.connection.get(f"/v1/models/{name}/watch", params={"history": history})
        return WatchOut.model_validate(data)

    def acknowledge(self, name: str) -> WatchOut:
        """Clears the champion's alarms and re-arms its detectors."""
        check_model_name(name)
        return WatchOut.model_validate(self.connection.post(f"/v1/models/{name}/watch/ack"))

    def watch_statuses(self) -> list[WatchStatusOut]:
        return [WatchStatusOut.model_validate(item) for item in self.connection.get("/v1/watch")]

    def watch_policy(self, name: str) -> dict[str, Any]:
        check_model_name(name)
        result: dict[str, Any] = self.connection.get(f"/v1/models/{name}/watch/policy")
        return result

    def set_watch_policy(self, name: str, **changes: Any) -> dict[str, Any]:
        """Changes the model's watch policy (``max_data_age="90d"``, ``on_decay="rollback"``
        …; ``None`` restores a default)."""
        check_model_name(name)
        result: dict[str, Any] = self.connection.put(f"/v1/models/{name}/watch/policy", changes)
        return result
