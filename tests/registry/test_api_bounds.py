"""Numbers and tokens out of range answer 422 with the error body, never 500 (finding 8: a
version, rollout id or page token too big for the database's integer columns overflowed
inside the driver; '²' passed ``isdigit()`` and then failed ``int()``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from registry.config import Settings
from shelf.app import create_app
from tests.registry.api_helpers import register

HUGE = "9" * 30


@pytest.fixture
def api(backend_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(backend_settings), raise_server_exceptions=False) as client:
        register(client, "fraud", {"model.bin": b"weights"})
        yield client


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", f"/v1/models/fraud/versions/{HUGE}", None),
        ("GET", "/v1/models/fraud/versions/2147483648", None),
        ("GET", "/v1/models/fraud/versions/²", None),
        ("GET", f"/v1/models/fraud/versions/{HUGE}/files/model.bin", None),
        ("PATCH", f"/v1/models/fraud/versions/{HUGE}", {"description": "x"}),
        ("PATCH", "/v1/models/fraud/versions/2147483648", {"description": "x"}),
        ("GET", f"/v1/rollouts/{HUGE}", None),
        ("GET", "/v1/rollouts/2147483648", None),
        ("GET", f"/v1/rollouts/{HUGE}/observations", None),
        ("DELETE", f"/v1/webhooks/{HUGE}", None),
        ("GET", f"/v1/models/fraud/versions?page_token={HUGE}", None),
        ("GET", "/v1/models/fraud/versions?page_token=²", None),
        ("GET", "/v1/models/fraud/events?page_token=²", None),
        ("GET", f"/v1/events?page_token={HUGE}", None),
        ("GET", "/v1/events?page_token=-1", None),
        ("PUT", "/v1/models/fraud/aliases/champion", {"version": int(HUGE)}),
        ("POST", "/v1/models/fraud/rollouts", {"challenger": int(HUGE)}),
        ("POST", "/v1/models/fraud/rollback", {"to": int(HUGE)}),
    ],
)
def test_out_of_range_numbers_are_422(api: TestClient, method: str, url: str, body: object) -> None:
    response = api.request(method, url, json=body)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "message", "detail"}


def test_largest_number_is_a_plain_not_found(api: TestClient) -> None:
    assert api.get("/v1/models/fraud/versions/2147483647").status_code == 404
    assert api.get("/v1/rollouts/2147483647").status_code == 404
    pages = [  # a 10-digit position past every row reads as the largest one
        api.get(f"/v1/models/fraud/versions?page_token={token}")
        for token in ("2147483647", "9999999999")
    ]
    assert [p.status_code for p in pages] == [200, 200]
    assert pages[0].json() == pages[1].json()
