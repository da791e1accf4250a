"""Which arm answers a request.

A request goes to the challenger iff ``bucket(model, key) < weight_bp``, where the bucket is a
stable hash of the model name and the ``X-Shelf-Routing-Key`` header, mod 10000. The same key
therefore always lands on the same arm at a given weight, and raising the weight only moves
keys from the champion to the challenger (the set ``{key : bucket < w}`` grows with ``w``), so
a user who saw the challenger keeps seeing it as the canary advances. Hashing the model name in
too keeps one user's exposure independent across models. Without a key the choice is random.
Blue-green is weight 10000: one atomic switch of the routing table.

A sampled shadow mirrors a request iff ``bucket(model, key) < mirror_bp`` (:func:`mirrored`):
the same rule, so a user's requests are mirrored consistently, and the users mirrored at
``P`` % are the ones a canary step of ``P`` % would send to the challenger first.

For the statistics, a keyed request also carries its key's *unit bucket* (one of
``UNIT_BUCKETS``), from other bits of the same kind of hash than the routing bucket's, so the
unit bucket is independent of the arm: the variance can then follow the key, the unit that was
randomised, without per-user state.
"""

from __future__ import annotations

import random
from hashlib import blake2b

from controller.stats.sufficient import UNIT_BUCKETS

BUCKETS = 10_000

_random = random.random


def bucket(model: bytes, key: bytes) -> int:
    """Stable bucket in [0, BUCKETS) of ``key`` for ``model`` (blake2b-64, mod 10000)."""
    digest = blake2b(model + b"\x00" + key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def goes_to_challenger(model: bytes, key: bytes | None, weight_bp: int) -> bool:
    if weight_bp <= 0:
        return False
    if weight_bp >= BUCKETS:
        return True
    if key is None:
        return _random() * BUCKETS < weight_bp
    return bucket(model, key) < weight_bp


def mirrored(model: bytes, key: bytes | None, mirror_bp: int) -> bool:
    """Whether a shadow copies this request: sticky by key, random without one."""
    return goes_to_challenger(model, key, mirror_bp)


def unit_bucket(model: bytes, key: bytes) -> int:
    """The key's variance unit bucket in [0, UNIT_BUCKETS): the top bits of the same digest
    whose value mod 10000 routes it (64-bit digest; the top 16 bits are nearly independent of
    the value mod 10000)."""
    digest = blake2b(model + b"\x00" + key, digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 48) % UNIT_BUCKETS
