"""Request ids are signed with keyed BLAKE2b (format 2); ids of format 1 (HMAC-SHA256), issued
before an upgrade, still verify, and neither format verifies under another key."""

from __future__ import annotations

import base64
import hmac
import struct

import pytest

from controller.gateway.request_id import FORMAT_VERSION, InvalidRequestId, RequestIdSigner

KEY = b"test-secret-key-0123456789"


def _format1_id(key: bytes) -> str:
    """An id as the gateway issued it before format 2: HMAC-SHA256, truncated to 128 bits."""
    body = struct.pack(">BIIIBQB", 1, 7, 42, 1_700_000_000, 1, 99, 1) + b"cat"
    mac = hmac.digest(key, body, "sha256")[:16]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()


def test_new_ids_are_format_2_and_verify() -> None:
    signer = RequestIdSigner(KEY)
    token = signer.issue(7, 42, 1, "cat", 1_700_000_000)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw[0] == FORMAT_VERSION == 2
    verified = signer.verify(token)
    assert (verified.rollout_id, verified.version_id, verified.arm) == (7, 42, "challenger")
    assert verified.predicted_class == "cat"
    with pytest.raises(InvalidRequestId, match="signature"):
        RequestIdSigner(b"another-key").verify(token)


def test_format_1_ids_from_before_an_upgrade_still_verify() -> None:
    verified = RequestIdSigner(KEY).verify(_format1_id(KEY))
    assert (verified.rollout_id, verified.version_id, verified.issued_at) == (7, 42, 1_700_000_000)
    assert verified.predicted_class == "cat"
    with pytest.raises(InvalidRequestId, match="signature"):
        RequestIdSigner(KEY).verify(_format1_id(b"another-key"))


def test_keys_longer_than_blake2b_takes_are_used_whole() -> None:
    long_key = b"k" * 64
    token = RequestIdSigner(long_key + b"1").issue(None, 1, 0, None, 1)
    assert RequestIdSigner(long_key + b"1").verify(token).version_id == 1
    with pytest.raises(InvalidRequestId, match="signature"):
        RequestIdSigner(long_key + b"2").verify(token)
