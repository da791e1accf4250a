"""Pure pieces of the gateway: split hashing, request ids, prediction parsing, flush retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from controller.config import ControllerSettings
from controller.gateway.prediction import PredictionParser, parse_oip
from controller.gateway.recorder import Recorder
from controller.gateway.request_id import InvalidRequestId, RequestIdSigner
from controller.gateway.secret import gateway_secret
from controller.gateway.split import BUCKETS, bucket, goes_to_challenger
from controller.stats.sufficient import ArmStats
from controller.tables import ArmStatsDelta
from registry.db.session import Database
from tests.controller.gateway.harness import register, start_rollout

keys = st.binary(min_size=1, max_size=64)
weights = st.integers(min_value=0, max_value=BUCKETS)


@given(keys, weights, weights)
def test_raising_the_weight_only_moves_keys_to_the_challenger(key: bytes, a: int, b: int) -> None:
    low, high = sorted((a, b))
    if goes_to_challenger(b"fraud", key, low):
        assert goes_to_challenger(b"fraud", key, high)
    assert goes_to_challenger(b"fraud", key, high) == goes_to_challenger(b"fraud", key, high)


@given(keys)
def test_bucket_is_stable_and_in_range(key: bytes) -> None:
    assert 0 <= bucket(b"m", key) == bucket(b"m", key) < BUCKETS
    assert goes_to_challenger(b"m", key, BUCKETS) and not goes_to_challenger(b"m", key, 0)


def test_buckets_are_uniform_enough() -> None:
    inside = sum(bucket(b"m", f"user-{i}".encode()) < 2500 for i in range(20_000))
    assert abs(inside - 5000) < 4 * (20_000 * 0.25 * 0.75) ** 0.5


@given(
    st.one_of(st.none(), st.integers(1, 2**31)),
    st.integers(1, 2**31),
    st.sampled_from([0, 1]),
    st.one_of(st.none(), st.text(max_size=80)),
)
def test_request_ids_round_trip(
    rollout: int | None, version: int, arm: int, predicted: str | None
) -> None:
    signer = RequestIdSigner(b"k" * 32)
    token = signer.issue(rollout, version, arm, predicted, 1_700_000_000)
    assert len(token) <= 128
    decoded = signer.verify(token)
    assert (decoded.rollout_id, decoded.version_id, decoded.arm) == (
        rollout,
        version,
        ("champion", "challenger")[arm],
    )
    assert decoded.issued_at == 1_700_000_000
    if predicted is not None:
        assert decoded.label_matches(predicted) is True
        assert decoded.label_matches(predicted + "x") is False
    else:
        assert decoded.label_matches("1") is None


def test_request_ids_reject_other_keys_and_garbage() -> None:
    token = RequestIdSigner(b"a" * 32).issue(1, 2, 0, "cat", 1)
    with pytest.raises(InvalidRequestId):
        RequestIdSigner(b"b" * 32).verify(token)
    for junk in ("", "!!!", "abc", token[:-2], "A" * 200):
        with pytest.raises(InvalidRequestId):
            RequestIdSigner(b"a" * 32).verify(junk)


def test_secret_key_file_is_created_once_with_0600(tmp_path: Path) -> None:
    settings = ControllerSettings(home=tmp_path / "home")
    first = gateway_secret(settings)
    assert gateway_secret(settings) == first
    assert (tmp_path / "home" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert gateway_secret(ControllerSettings(home=tmp_path, secret_key="shared")) == b"shared"


def oip(*outputs: dict[str, object]) -> dict[str, object]:
    return {"outputs": list(outputs)}


def test_oip_label_and_probabilities() -> None:
    label = {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["cat"]}
    probs = {"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.1, 0.7, 0.2]}
    assert parse_oip(oip(label, probs)) == ("cat", 0.7)
    assert parse_oip(oip(probs)) == ("1", 0.7)
    batch = {"name": "p", "datatype": "FP32", "shape": [2, 2], "data": [0.9, 0.1, 0.2, 0.8]}
    assert parse_oip(oip(batch)) == ("0", 0.9)
    assert parse_oip(oip({"name": "y", "datatype": "INT64", "shape": [1], "data": [2]})) == (
        "2",
        None,
    )
    score = {"name": "score", "datatype": "FP32", "shape": [1], "data": [0.6]}
    assert parse_oip(oip(label, score)) == ("cat", 0.6)
    assert parse_oip({"nothing": 1}) == (None, None)
    assert parse_oip(oip({"data": []}, "junk")) == (None, None)  # type: ignore[arg-type]


def test_dotted_paths_and_non_json() -> None:
    parser = PredictionParser("predictions.0.label", "predictions.0.score")
    body = b'{"predictions": [{"label": 3, "score": 0.8}]}'
    assert parser.parse(body, b"application/json") == ("3", 0.8)
    assert parser.parse(body, b"text/plain") == (None, None)
    assert parser.parse(b"{not json", b"application/json") == (None, None)
    assert parser.parse(b'{"predictions": []}', b"application/json") == (None, None)


def test_a_failed_flush_keeps_its_rows_and_the_retry_counts_them_once(tmp_path: Path) -> None:
    from shelf import migrate

    url = f"sqlite:///{tmp_path / 'shelf.db'}"
    migrate.upgrade(url)
    database = Database(url)
    champion, challenger = register(database, "m", "http://127.0.0.1:1", "http://127.0.0.1:2")
    rollout_id = start_rollout(database, "m", champion, challenger, 100)
    failures: list[int] = []
    recorder = Recorder(database, "r1", seq_start=10, on_flush_failure=lambda: failures.append(1))
    key = (rollout_id, 1, champion, "champion")
    real_write = recorder._write

    def broken(rows: object) -> int:
        raise OSError("database is down")

    def committed_but_answer_lost(rows: list[dict[str, object]]) -> int:
        real_write(rows)
        raise OSError("connection reset after commit")

    async def scenario() -> None:
        recorder.arm(key).record_response("2xx", 0.01, "1", 0.9)
        recorder._write = broken  # type: ignore[method-assign]
        assert await recorder.flush() is False  # nothing written, kept
        recorder.arm(key).record_response("5xx", None)
        recorder._write = committed_but_answer_lost  # type: ignore[method-assign]
        assert await recorder.flush() is False  # written, but we cannot know
        recorder.arm(key).record_label(True)
        recorder._write = real_write  # type: ignore[method-assign]
        assert await recorder.flush() is True
        assert await recorder.flush() is True  # nothing left: no empty rows

    asyncio.run(scenario())
    with database.session() as session:
        rows = list(session.scalars(select(ArmStatsDelta).order_by(ArmStatsDelta.seq)))
    assert failures == [1, 1]
    # the first row once, under its own seq; what was recorded while it was being retried
    # waited in memory and went out as one more row
    assert [r.seq for r in rows] == [10, 11]
    total = ArmStats.merge_all([ArmStats.from_json(r.stats) for r in rows])
    assert (total.requests, total.errors, total.labels) == (2, 1, 1)
    database.dispose()
