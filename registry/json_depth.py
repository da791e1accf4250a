"""How deeply a JSON document nests, measured on its raw bytes before any parser recurses into
it: a body such as ``[[[[…]]]]`` 300 levels deep is parsed fine but then breaks every
serializer that walks it (pydantic's stops at a fixed depth), so it is refused at the edge."""

from __future__ import annotations

import re
from typing import Any

# A JSON string (escapes included) or one bracket; strings are skipped so that brackets inside
# them do not count. The string pattern is "unrolled" (Friedl) so it never backtracks.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPEN = frozenset(b"[{")


def exceeds_depth(raw: bytes, limit: int) -> bool:
    """Whether any value in ``raw`` sits more than ``limit`` arrays/objects deep."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKEN.finditer(raw):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif first != 0x22:  # a closing bracket, not a string
            depth -= 1
    return False


def value_depth(value: Any, limit: int) -> int:
    """The nesting depth of a parsed value, counted without recursion up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth) for child in children)
    return deepest
