"""The raw path's split into (model, upstream path), and the cache the gateway reads it from."""

from __future__ import annotations

import pytest

from controller.gateway.paths import TargetCache, UnsafePath, split_target

TARGETS = [
    b"/gw/x",
    b"/%67w/x",
    b"/gw",
    b"/gw/a%20b/c",
    b"/v2/models/gw/infer",
    b"/v2/models/%67w/infer",
    b"/a.b/v1/x",
]


@pytest.mark.parametrize("raw", TARGETS)
def test_the_cache_answers_as_split_target_does(raw: bytes) -> None:
    cache = TargetCache()
    assert cache.split(raw) == split_target(raw)
    assert cache.split(raw) == split_target(raw)  # from the cache this time


@pytest.mark.parametrize("raw", [b"/gw/../x", b"/gw/%2e%2e/x", b"/gw/a%2fb", b"gw/x"])
def test_a_refused_path_is_refused_every_time(raw: bytes) -> None:
    cache = TargetCache()
    for _ in range(3):
        with pytest.raises(UnsafePath):
            cache.split(raw)


def test_the_cache_stays_within_its_size_and_keeps_answering() -> None:
    cache = TargetCache(size=8)
    for i in range(100):
        raw = b"/m%d/x" % i
        assert cache.split(raw) == (f"m{i}", "/x")
        assert len(cache) <= 8
    assert cache.split(b"/m3/x") == ("m3", "/x")


def test_long_paths_are_answered_but_not_kept() -> None:
    cache = TargetCache(longest=32)
    long_path = b"/gw/" + b"x" * 100
    assert cache.split(long_path) == ("gw", "/" + "x" * 100)
    assert len(cache) == 0
    cache.split(b"/gw/short")
    assert len(cache) == 1
