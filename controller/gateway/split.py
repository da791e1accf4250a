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

With several challengers (A/B/n) each owns a disjoint range of buckets: challenger ``i`` of
``k`` takes ``[i * 10000 // k, i * 10000 // k + weight_i)``, a range that only grows from its
fixed start as its weight grows (a weight is at most ``10000 // (k + 1)``, below the slot
width, so ranges never overlap). A key therefore stays on its arm as weights change, moves only
from the champion to a challenger when that challenger's weight grows, and when a challenger
is dropped its range (and only its range) returns to the champion. One challenger is the
special case ``k = 1``: the range ``[0, weight)`` of the rule above.

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


def _digest(model: bytes, key: bytes) -> int:
    return int.from_bytes(blake2b(model + b"\x00" + key, digest_size=8).digest(), "big")


def bucket(model: bytes, key: bytes) -> int:
    """Stable bucket in [0, BUCKETS) of ``key`` for ``model`` (blake2b-64, mod 10000)."""
    return _digest(model, key) % BUCKETS


def draw(model: bytes, key: bytes | None) -> tuple[int, int | None]:
    """A request's point in [0, BUCKETS) and its key's unit bucket, from one digest: the
    key's :func:`bucket` and :func:`unit_bucket`, or without a key a random point and None.
    The gateway draws once per request and compares the point with every range it needs
    (challengers' ranges, the mirrored share)."""
    if key is None:
        return int(_random() * BUCKETS), None
    value = _digest(model, key)
    return value % BUCKETS, (value >> 48) % UNIT_BUCKETS


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


def slot_start(position: int, challengers: int) -> int:
    """Where challenger ``position`` (0-based) of ``challengers``' bucket range starts."""
    return position * BUCKETS // max(challengers, 1)


def pick(model: bytes, key: bytes | None, ranges: tuple[tuple[int, int], ...]) -> int:
    """Which of the challengers' bucket ranges ``(start, weight)`` the request falls in, by
    position; -1 for the champion. Without a key the draw is random with the same shares."""
    if not ranges:
        return -1
    return pick_at(draw(model, key)[0], ranges)


def pick_at(point: int, ranges: tuple[tuple[int, int], ...]) -> int:
    """:func:`pick` for a point already drawn."""
    for position, (start, weight) in enumerate(ranges):
        if start <= point < start + weight:
            return position
    return -1


def unit_bucket(model: bytes, key: bytes) -> int:
    """The key's variance unit bucket in [0, UNIT_BUCKETS): the top bits of the same digest
    whose value mod 10000 routes it (64-bit digest; the top 16 bits are nearly independent of
    the value mod 10000)."""
    return (_digest(model, key) >> 48) % UNIT_BUCKETS
