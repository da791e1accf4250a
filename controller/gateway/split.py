"""Which arm answers a request.

A request goes to the challenger iff ``bucket(model, key) < weight_bp``, where the bucket is a
stable hash of the model name and the ``X-Shelf-Routing-Key`` header, mod 10000. The same key
therefore always lands on the same arm at a given weight, and raising the weight only moves
keys from the champion to the challenger (the set ``{key : bucket < w}`` grows with ``w``), so
a user who saw the challenger keeps seeing it as the canary advances. Hashing the model name in
too keeps one user's exposure independent across models. Without a key the choice is random.
Blue-green is weight 10000: one atomic switch of the routing table.
"""

from __future__ import annotations

import random
from hashlib import blake2b

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
