"""Delayed ground truth: ``POST /v1/feedback`` attributes a label or a reward to the arm that
answered (a rollout's arm, or the champion outside rollouts, for the champion watch), by the
signed request id alone.

An id marked uncounted (a forced arm, or a request a sampled shadow did not mirror) is
accepted with ``attributed: false`` and counted nowhere: those answers are outside the
rollout's statistics, and so is their ground truth.

``{"request_id": …, "label": <class>}`` records whether the label equals the class the arm
predicted; ``{"request_id": …, "value": <float>}`` records a numeric reward. One
``FeedbackReceipt`` row per request id makes a second submission a 409 (its primary key is the
id's canonical spelling, ``RequestId.receipt_key``, never the string as submitted, and two
replicas racing on the same id cannot both win). The statistics themselves
go into the arm's in-memory accumulator and are flushed with everything else. A champion's
label outside rollouts also carries the time block its request was served in (from the id's
issue time), for the champion watch.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from controller.gateway.recorder import Recorder
from controller.gateway.request_id import InvalidRequestId, RequestId, RequestIdSigner
from controller.tables import FeedbackReceipt, Rollout
from registry.db.session import Database, database_unavailable
from registry.db.tables import ModelVersion


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    status: int
    payload: dict[str, Any]


def _error(status: int, code: str, message: str) -> FeedbackResult:
    return FeedbackResult(status, {"error": code, "message": message})


def _accepted(reason: str) -> FeedbackResult:
    return FeedbackResult(202, {"status": "accepted", "attributed": False, "reason": reason})


class FeedbackIntake:
    def __init__(
        self,
        signer: RequestIdSigner,
        database: Database,
        recorder: Recorder,
        ttl_hours: float,
        champion_block_s: float,
    ) -> None:
        self._signer = signer
        self._database = database
        self._recorder = recorder
        self._ttl_s = ttl_hours * 3600.0
        self._champion_block_s = champion_block_s

    async def submit(self, body: bytes) -> FeedbackResult:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(422, "invalid_input", "body must be a JSON object")
        if not isinstance(document, dict) or not isinstance(document.get("request_id"), str):
            return _error(422, "invalid_input", "body must be a JSON object with a 'request_id'")
        has_label, has_value = "label" in document, "value" in document
        if has_label == has_value:
            return _error(422, "invalid_input", "give exactly one of 'label' or 'value'")
        label = document.get("label")
        value = document.get("value")
        if has_label and (isinstance(label, bool) or not isinstance(label, str | int)):
            return _error(422, "invalid_input", "'label' must be a string or an integer")
        if has_value and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(float(value))
        ):
            return _error(422, "invalid_input", "'value' must be a finite number")
        try:
            request = self._signer.verify(document["request_id"])
        except InvalidRequestId as exc:
            return _error(422, "invalid_request_id", str(exc))
        if time.time() - request.issued_at > self._ttl_s:
            return _error(410, "gone", "request id is older than the feedback window")
        if not request.counted:
            return _accepted(
                "the request was outside the rollout's statistics (a forced arm, or not "
                "mirrored by a sampled shadow)"
            )
        correct: bool | None = None
        if has_label:
            correct = request.label_matches(str(label))
            if correct is None:
                return _accepted("the response carried no predicted class to compare with")
        try:
            model_id = await asyncio.to_thread(self._receive, request)
        except DBIntegrityError:
            return _error(409, "conflict", "feedback for this request id was already received")
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            return _error(503, "database_unavailable", "feedback cannot be recorded now; retry")
        if model_id is None:
            gone = "rollout" if request.rollout_id is not None else "version"
            return _accepted(f"the {gone} no longer exists")
        stats = self._recorder.arm((request.rollout_id, model_id, request.version_id, request.arm))
        if correct is not None:
            served = None  # the champion watch judges a label with its request's time block
            if request.rollout_id is None:
                served = int(request.issued_at // self._champion_block_s)
            stats.record_label(correct, served)
        else:
            assert isinstance(value, int | float)
            stats.record_reward(float(value))
        payload: dict[str, Any] = {
            "status": "recorded",
            "rollout_id": request.rollout_id,
            "arm": request.arm,
        }
        if correct is not None:
            payload["correct"] = correct
        return FeedbackResult(200, payload)

    def _receive(self, request: RequestId) -> int | None:
        """The model id after recording the receipt; None if the rollout (or, for a champion
        outside rollouts, the version) is gone."""
        with self._database.session() as session:
            if request.rollout_id is None:
                version = session.get(ModelVersion, request.version_id)
                model_id = None if version is None else version.model_id
            else:
                rollout = session.get(Rollout, request.rollout_id)
                model_id = None if rollout is None else rollout.model_id
            if model_id is None:
                return None
            session.add(
                FeedbackReceipt(request_id=request.receipt_key, rollout_id=request.rollout_id)
            )
            session.flush()
            return model_id
