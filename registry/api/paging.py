"""Paging shared by the list endpoints: a page size bound and opaque page tokens."""

from __future__ import annotations

from registry.names import parse_position

PAGE_MAX = 500


def page_token_value(token: str | None) -> int | None:
    """The position a ``page_token`` stands for; tokens are decimal ids."""
    if token is None:
        return None
    return parse_position(token, "page token")
