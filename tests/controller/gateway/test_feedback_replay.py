"""Issue 10, finding 1: one request, one label, whatever spelling of its id is submitted."""

from __future__ import annotations

import base64
import string
import time

import httpx
import pytest

from controller.config import ControllerSettings
from controller.gateway.request_id import InvalidRequestId, RequestIdSigner
from registry.db.session import Database
from tests.controller.gateway.harness import (
    consume,
    gateway_settings,
    infer_body,
    model_server,
    register,
    running_gateway,
    start_rollout,
    wait_for_totals,
)

ALPHABET = string.ascii_letters + string.digits + "-_"


def lenient_decode(token: str) -> bytes | None:
    """How the gateway used to read ids (stray characters skipped, padding optional); None
    where even that failed."""
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None


def respellings(token: str) -> list[str]:
    """Other spellings of ``token`` that the old decoder read as the same bytes: the families
    the issue lists (appended ``....`` or ``==``, an inserted ``.``, a changed last
    character), each at least once."""
    raw = lenient_decode(token)
    families = {
        "appended": [token + "....", token + "==", token + "...."[: 4 - len(token) % 4]],
        "inserted": [token[:i] + "." + token[i:] + ".." for i in (1, 10, 30)]
        + [token[:i] + "." + token[i:] + "=" for i in (5, 20)]
        + ["." + token + "==="[: 3 - len(token) % 4]],
        "last character": [token[:-1] + c for c in ALPHABET if c != token[-1]],
    }
    variants = []
    for family, candidates in families.items():
        accepted = [c for c in candidates if c != token and lenient_decode(c) == raw]
        assert accepted, f"no {family} variant of {token} was accepted by the old decoder"
        variants += accepted
    return variants


def test_every_respelling_of_an_id_is_rejected_and_the_canonical_one_accepted() -> None:
    signer = RequestIdSigner(b"k" * 32)
    token = signer.issue(7, 3, 1, "1", 1_700_000_000)
    variants = respellings(token)
    assert len(variants) >= 10  # the last character alone has several spellings here
    for variant in variants:
        with pytest.raises(InvalidRequestId, match="canonical"):
            signer.verify(variant)
    assert signer.verify(token).receipt_key == token


@pytest.mark.e2e
def test_one_request_gets_one_label_however_its_id_is_spelled(
    backend_settings: ControllerSettings, database: Database
) -> None:
    with model_server(version_name="v1") as one, model_server(version_name="v2") as two:
        champion, challenger = register(database, "replay", one.url, two.url)
        rollout_id = start_rollout(database, "replay", champion, challenger, weight_bp=5000)
        settings = gateway_settings(backend_settings)
        with running_gateway(settings, database) as gateway:
            gateway.wait_for(lambda r: r.get("replay", {}).get("rollout_id") == rollout_id)
            with httpx.Client(base_url=gateway.url) as client:
                response = client.post("/v2/models/replay/infer", json=infer_body(0.3))
                token = response.headers["x-shelf-request-id"]
                statuses = []
                for variant in [*respellings(token), token, token]:
                    answer = client.post("/v1/feedback", json={"request_id": variant, "label": "1"})
                    statuses.append(answer.status_code)
                    assert answer.headers["content-type"] == "application/json"
            assert statuses.count(200) == 1, statuses
            assert set(statuses) == {200, 409, 422}
            wait_for_totals(
                database, rollout_id, lambda t: t.champion.labels + t.challenger.labels >= 1
            )
            time.sleep(3 * settings.gateway_flush_interval_s)  # room for any late flush
            totals, _ = consume(database, rollout_id)
        assert totals.champion.labels + totals.challenger.labels == 1
