"""Exit codes of `shelf`, documented in README.md. Rollout outcomes (3-5) are for CI gates."""

from __future__ import annotations

from registry.errors import (
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    ShelfError,
    Unauthorized,
)

OK = 0
ERROR = 1
USAGE = 2
ROLLED_BACK = 3
ABORTED = 4
TIMED_OUT = 5
NOT_FOUND = 6
CONFLICT = 7
AUTH = 8
INTEGRITY = 9
UNREACHABLE = 10
INTERRUPTED = 130


def for_error(error: ShelfError) -> int:
    if isinstance(error, NotFound):
        return NOT_FOUND
    if isinstance(error, Conflict):
        return CONFLICT
    if isinstance(error, Unauthorized | Forbidden):
        return AUTH
    if isinstance(error, IntegrityError):
        return INTEGRITY
    return ERROR
