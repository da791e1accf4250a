"""Self-describing, signed request ids (``X-Shelf-Request-Id``).

Feedback arrives hours later, perhaps at another replica, so the id itself carries what is
needed to attribute it: rollout, arm, version, predicted class, issue time and a nonce, signed
under the shared secret key with keyed BLAKE2b (RFC 7693, section 2.5: its keyed mode is a MAC
by design, and costs a third of HMAC-SHA256 on the gateway's hot path), 128 bits. Ids of
format 1 (HMAC-SHA256 truncated to 128 bits) are still accepted, so that feedback for requests
answered before an upgrade still counts. No per-request state is kept anywhere. Layout (before
base64url, big-endian):

    version byte | rollout id u32 (0 = none) | version id u32 | issued-at u32 (unix s)
    | arm byte (0 champion, 1.. the challengers in order) | nonce 8 bytes | class kind byte
    | class bytes | mac 16

The arm byte's top bit (``UNCOUNTED``) marks an answer that is not part of the rollout's
statistics: a request that forced its arm (``X-Shelf-Arm``), or one a sampled shadow did not
mirror. Feedback for such an id is accepted and counted nowhere, so a tester's labels cannot
reach the comparison through the back door.

The predicted class is stored verbatim when it is at most 40 bytes of UTF-8, else as an
8-byte blake2b digest (a label is then compared by digest). ``FeedbackReceipt.request_id`` is
128 characters, which this layout never exceeds.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import random
import re
import struct
from dataclasses import dataclass
from hashlib import blake2b

from controller.vocabulary import ARM_NAMES

FORMAT_VERSION = 2  # keyed BLAKE2b; 1 was HMAC-SHA256
_FORMAT_HMAC = 1
MAX_VERBATIM_CLASS = 40
_MAC_BYTES = 16
_HEAD = struct.Struct(">BIIIBQB")
_KIND_NONE, _KIND_VERBATIM, _KIND_DIGEST = 0, 1, 2
UNCOUNTED = 0x80  # flag in the arm byte: the answer is outside the rollout's statistics
# Nonces only need to be unique (the HMAC makes ids unforgeable): a counter from a random
# 64-bit start per process costs nothing, where a system-random draw per request is a syscall.
_nonces = itertools.count(random.SystemRandom().getrandbits(63))
_NONCE_MASK = (1 << 64) - 1
# Unpadded base64url only: the decoder would otherwise skip stray characters and padding, and
# so accept many spellings of one id (each a fresh receipt key: the replay of issue 10).
_CANONICAL_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


class InvalidRequestId(ValueError):
    """Malformed, or not signed with our key."""


@dataclass(frozen=True, slots=True)
class RequestId:
    """A verified id. ``receipt_key`` is its one canonical spelling (re-encoded from the decoded
    bytes), so every accepted spelling of one request maps to one feedback receipt."""

    receipt_key: str
    rollout_id: int | None
    version_id: int
    arm: str
    issued_at: int
    predicted_class: str | None
    predicted_digest: bytes | None
    counted: bool = True  # False: forced arm or unmirrored; feedback goes nowhere

    def label_matches(self, label: str) -> bool | None:
        """Whether ``label`` equals the predicted class; None if no class was predicted."""
        if self.predicted_class is not None:
            return label == self.predicted_class
        if self.predicted_digest is not None:
            return class_digest(label) == self.predicted_digest
        return None


def class_digest(label: str) -> bytes:
    return blake2b(label.encode(), digest_size=8).digest()


class RequestIdSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key
        # BLAKE2b takes keys of at most 64 bytes: a longer one is hashed down to 64. The keyed
        # state is built once and copied per id, which skips compressing the key block again.
        blake2b_key = key if len(key) <= 64 else blake2b(key).digest()
        self._keyed = blake2b(key=blake2b_key, digest_size=_MAC_BYTES)

    def _mac(self, body: bytes, fmt: int) -> bytes:
        if fmt == _FORMAT_HMAC:
            return hmac.digest(self._key, body, "sha256")[:_MAC_BYTES]
        keyed = self._keyed.copy()
        keyed.update(body)
        return keyed.digest()

    def issue(
        self,
        rollout_id: int | None,
        version_id: int,
        arm_index: int,
        predicted_class: str | None,
        issued_at: int,
        counted: bool = True,
    ) -> str:
        if predicted_class is None:
            kind, tail = _KIND_NONE, b""
        else:
            tail = predicted_class.encode()
            kind = _KIND_VERBATIM
            if len(tail) > MAX_VERBATIM_CLASS:
                kind, tail = _KIND_DIGEST, blake2b(tail, digest_size=8).digest()
        body = (
            _HEAD.pack(
                FORMAT_VERSION,
                rollout_id or 0,
                version_id,
                issued_at,
                arm_index if counted else arm_index | UNCOUNTED,
                next(_nonces) & _NONCE_MASK,
                kind,
            )
            + tail
        )
        return _encode(body + self._mac(body, FORMAT_VERSION))

    def verify(self, token: str) -> RequestId:
        """The id ``token`` spells, accepted only in the canonical encoding the gateway issues:
        unpadded base64url with no other characters, and no unused bits set in its last
        character (decoding then re-encoding must give ``token`` back)."""
        if not isinstance(token, str) or len(token) > 128:
            raise InvalidRequestId("request id is not a Shelf request id")
        if not _CANONICAL_ALPHABET.fullmatch(token) or len(token) % 4 == 1:
            raise InvalidRequestId("request id is not canonical unpadded base64url")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            raise InvalidRequestId("request id is not valid base64url") from None
        if _encode(raw) != token:
            raise InvalidRequestId("request id is not canonical unpadded base64url")
        if len(raw) < _HEAD.size + _MAC_BYTES:
            raise InvalidRequestId("request id is too short")
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        fmt = body[0]
        if fmt not in (FORMAT_VERSION, _FORMAT_HMAC):
            raise InvalidRequestId("request id has an unknown layout")
        if not hmac.compare_digest(mac, self._mac(body, fmt)):
            raise InvalidRequestId("request id signature does not match")
        _fmt, rollout_id, version_id, issued_at, arm_byte, _nonce, kind = _HEAD.unpack_from(body)
        tail = body[_HEAD.size :]
        arm_index = arm_byte & ~UNCOUNTED
        if arm_index >= len(ARM_NAMES) or kind > _KIND_DIGEST:
            raise InvalidRequestId("request id has an unknown layout")
        predicted: str | None = None
        digest: bytes | None = None
        if kind == _KIND_VERBATIM:
            try:
                predicted = tail.decode()
            except UnicodeDecodeError:
                raise InvalidRequestId("request id carries an undecodable class") from None
        elif kind == _KIND_DIGEST:
            digest = tail
        return RequestId(
            receipt_key=token,
            rollout_id=rollout_id or None,
            version_id=version_id,
            arm=ARM_NAMES[arm_index],
            issued_at=issued_at,
            predicted_class=predicted,
            predicted_digest=digest,
            counted=not arm_byte & UNCOUNTED,
        )


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _encode(raw: bytes) -> str:
    """Unpadded base64url (``base64.urlsafe_b64encode`` minus a Python call layer)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode()
