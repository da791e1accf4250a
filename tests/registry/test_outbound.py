"""The outbound policy: which hosts webhook and serving URLs may target (issue 10, finding 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.config import Settings
from registry.errors import InvalidInput
from registry.outbound import OutboundDenied, OutboundPolicy
from shelf import migrate
from shelf.app import create_app
from tests.registry.api_helpers import register


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.1.1",
        "[fe80::1]",
        "fe80::abcd%eth0",
        "::ffff:169.254.169.254",
        "[fd00:ec2::254]",
        "metadata.google.internal",
        "Metadata.Google.Internal.",
        "metadata.goog",
    ],
)
def test_link_local_and_metadata_hosts_are_denied_by_default(host: str) -> None:
    assert not OutboundPolicy().allowed_host(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "models.internal", "example.com"]
)
def test_loopback_and_private_hosts_are_allowed_by_default(host: str) -> None:
    assert OutboundPolicy().allowed_host(host)


def test_deny_wins_over_allow_and_an_allow_list_admits_only_what_it_names() -> None:
    policy = OutboundPolicy(
        allow=["10.0.0.0/8", "hooks.example.com", ".svc.cluster.local"],
        deny=["10.9.0.0/16", "169.254.0.0/16"],
    )
    assert policy.allowed_host("10.1.2.3")
    assert not policy.allowed_host("10.9.0.1")
    assert policy.allowed_host("hooks.example.com")
    assert policy.allowed_host("model-a.prod.svc.cluster.local")
    assert not policy.allowed_host("svc.cluster.local.evil.com")
    assert not policy.allowed_host("example.com")
    assert not policy.allowed_host("192.168.1.1")
    # names are checked by name; what they resolve to is checked against the deny list
    assert policy.allowed_address("192.168.1.1")
    assert not policy.allowed_address("169.254.169.254")
    assert not OutboundPolicy(allow=["10.0.0.0/8"]).allowed_address("192.168.1.1")


def test_urls_are_checked_for_shape_and_host() -> None:
    policy = OutboundPolicy()
    assert policy.check_url("http://127.0.0.1:9000/v2", "serving URL")
    with pytest.raises(OutboundDenied, match="outbound policy"):
        policy.check_url("http://169.254.169.254/latest", "serving URL")
    for bad in ("ftp://h/x", "http://h/\r\nx", "http://h:70000/", "http://", "h/x"):
        with pytest.raises(InvalidInput):
            policy.check_url(bad, "serving URL")


def test_settings_carry_the_policy() -> None:
    policy = Settings(outbound_deny=["127.0.0.0/8"], outbound_allow=[]).outbound_policy()
    assert not policy.allowed_host("127.0.0.1")
    assert not Settings().outbound_policy().allowed_host("169.254.169.254")


def test_serving_urls_are_refused_at_registration_and_at_rollout_start(tmp_path: Path) -> None:
    open_settings = Settings(home=tmp_path)
    migrate.upgrade(open_settings.resolved_database_url)
    with TestClient(create_app(open_settings)) as api:
        refused = api.post(
            "/v1/models/fraud/versions",
            json={
                "files": [{"path": "m", "size": 1, "digest": "0" * 64}],
                "serving_url": "http://169.254.169.254/latest/meta-data/",
            },
        )
        assert refused.status_code == 422, refused.text
        assert "outbound policy" in refused.json()["message"]
        for i in (1, 2):
            register(api, "fraud", {"m": b"w%d" % i}, serving_url=f"http://127.0.0.1:{9000 + i}")
        assert api.put("/v1/models/fraud/aliases/champion", json={"version": 1}).status_code == 200
    strict = Settings(home=tmp_path, outbound_deny=["127.0.0.0/8", "169.254.0.0/16"])
    with TestClient(create_app(strict)) as api:
        started = api.post("/v1/models/fraud/rollouts", json={"challenger": 2})
        assert started.status_code == 422, started.text
        assert "serving URL" in started.json()["message"]
        assert api.get("/v1/models/fraud/rollouts").json() == []
    with TestClient(create_app(open_settings)) as api:
        assert api.post("/v1/models/fraud/rollouts", json={"challenger": 2}).status_code == 201
