"""Outside rollouts the gateway keeps measuring the champion: per time block, in the same
mergeable form, with labels attributed by request id and a bounded sample of input summaries."""

from __future__ import annotations

import time
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import delete, select

from controller.config import ControllerSettings
from controller.gateway.inputs import MAX_VALUES, InputSampler, input_summaries
from controller.gateway.recorder import Recorder
from controller.stats.sufficient import ArmStats
from controller.tables import ArmStatsDelta
from controller.vocabulary import CHAMPION_STEP
from registry.db.session import Database
from shelf.demo.model_server import true_label
from tests.controller.gateway.harness import (
    gateway_settings,
    infer_body,
    model_server,
    register,
    running_gateway,
)


def test_champion_statistics_outside_rollouts_are_blocked_from_the_epoch() -> None:
    recorder = Recorder(cast(Any, None), "r", seq_start=1, champion_block_s=60.0)
    now = [6_000.0]
    recorder._time = lambda: now[0]
    key = (None, 1, 2, "champion")
    recorder.arm(key).record_response("2xx", 0.01, "a", 0.9)
    now[0] = 6_061.0
    recorder.arm(key).record_response("2xx", 0.01, "b", 0.8)
    rows = sorted(recorder.take_rows(), key=lambda r: r["stratum_block"])
    assert [(r["rollout_id"], r["stratum_step"], r["stratum_block"]) for r in rows] == [
        (None, CHAMPION_STEP, 100),
        (None, CHAMPION_STEP, 101),
    ]


def test_input_summaries_read_numeric_oip_inputs_only_and_are_bounded() -> None:
    body = (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [[1, 2, 3]]},'
        b' {"name": "s", "datatype": "BYTES", "data": ["a"]},'
        b' {"name": "big", "datatype": "FP32", "data": ' + str(list(range(1000))).encode() + b"}]}"
    )
    summaries = input_summaries(body)
    assert summaries["x"] == (3.0, 6.0, 14.0)
    assert "s" not in summaries
    assert summaries["big"][0] == MAX_VALUES
    assert input_summaries(b"not json") == {} and input_summaries(b"[1, 2]") == {}
    stats = ArmStats()
    stats.record_inputs(summaries)
    stats.record_inputs({"x": (1.0, 4.0, 16.0)})
    back = ArmStats.from_json(stats.merge(ArmStats()).to_json())
    assert back.inputs["x"] == [4.0, 10.0, 30.0]


def test_input_sampler_reads_every_request_under_its_budget_and_a_bounded_number_above() -> None:
    now = [0.0]
    sampler = InputSampler(10.0, clock=lambda: now[0])
    quiet = []
    for _ in range(50):  # 5 a second: all of them
        now[0] += 0.2
        quiet.append(sampler.take("quiet", 500))
    assert all(quiet)
    busy = 0
    for _ in range(1000):  # 100 a second for 10 s: the one-second burst, then 10 a second
        now[0] += 0.01
        busy += sampler.take("busy", 500)
    assert 100 <= busy <= 111
    big = 64 * 1024  # a body worth 4 samples
    assert sampler.take("big", big) and sampler.take("big", big)  # 10 -> 6 -> 2 tokens
    assert not sampler.take("big", big)
    now[0] += 0.25
    assert sampler.take("big", big)  # refilled to 4.5


@pytest.mark.e2e
def test_gateway_records_the_champion_without_a_rollout(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with model_server(version_name="v1", accuracy=1.0) as server:
        (version_id,) = register(database, "alone", server.url)
        settings = gateway_settings(backend_settings, gateway_input_samples_per_s=1000.0)
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: "alone" in r)
            with httpx.Client(base_url=gateway.url) as client:
                ids = []
                for i in range(20):
                    response = client.post("/v2/models/alone/infer", json=infer_body(float(i)))
                    assert response.status_code == 200
                    ids.append((response.headers["x-shelf-request-id"], true_label(float(i))))
                for request_id, label in ids[:10]:
                    answer = client.post(
                        "/v1/feedback", json={"request_id": request_id, "label": label}
                    )
                    assert answer.json()["status"] == "recorded", answer.text
            deadline = time.monotonic() + 5
            while True:
                with database.session() as session:
                    rows = list(
                        session.scalars(
                            select(ArmStatsDelta).where(ArmStatsDelta.model_id.is_not(None))
                        )
                    )
                total = ArmStats.merge_all([ArmStats.from_json(r.stats) for r in rows])
                if (total.requests == 20 and total.labels == 10) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    assert (total.requests, total.labels, total.correct) == (20, 10, 10)
    # each label also counted with the block its request was served in (the watch's attribution)
    served = {int(block) for block in total.label_blocks}
    assert served <= {int(time.time() // 60) - 1, int(time.time() // 60)}
    assert [sum(c[i] for c in total.label_blocks.values()) for i in (0, 1)] == [10, 10]
    assert {(r.rollout_id, r.version_id, r.arm, r.stratum_step) for r in rows} == {
        (None, version_id, "champion", CHAMPION_STEP)
    }
    assert total.inputs["x"][0] == 40.0  # under the budget every request is read: two values each
    with database.session() as session:
        session.execute(delete(ArmStatsDelta))
