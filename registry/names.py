"""The syntax of names, references and manifest paths, checked at every edge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from registry.errors import InvalidInput

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
# A model name that is not all digits (a version number); "latest" is refused separately.
# No look-ahead: the same pattern is checked by pydantic's regex engine and stated in OpenAPI.
ALIAS_PATTERN = r"^(?:[0-9]+[a-z._-]|[a-z])[a-z0-9._-]*$"
# What may follow "@": a version number, an alias or "latest" (digits are ASCII only).
REFERENCE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)
ALIAS_RE = re.compile(ALIAS_PATTERN)
TAG_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$"
TAG_KEY_RE = re.compile(TAG_KEY_PATTERN)
MAX_PATH_LENGTH = 1024
# Versions, rollouts and events are numbered in 32-bit integer columns.
MAX_NUMBER = 2**31 - 1
# The manifest path rules as one pattern (for the OpenAPI document): '/'-separated segments,
# none empty, '.' or '..', without backslash, ':' or control characters.
_CHAR = r"[^/\\:\x00-\x1f\x7f]"
_NOT_DOT = r"[^/\\:\x00-\x1f\x7f.]"
_SEGMENT = rf"(?:{_NOT_DOT}{_CHAR}*|\.{_NOT_DOT}{_CHAR}*|\.\.{_CHAR}+)"
FILE_PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
# Windows drive letters ("D:"), alternate data streams ("a:b") and device paths all need ':'.
_UNSAFE_PATH_CHARS = re.compile(r"[\\\x00-\x1f\x7f:]")


def parse_number(text: str, what: str) -> int:
    """A decimal number of ASCII digits within ``MAX_NUMBER`` (``str.isdigit`` also accepts
    '²' and other digits ``int`` rejects)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_NUMBER:
        raise InvalidInput(f"invalid {what} {text!r}: expected a number from 0 to {MAX_NUMBER}")
    return int(text)


def parse_position(text: str, what: str) -> int:
    """Like ``parse_number``, but a 10-digit number beyond ``MAX_NUMBER`` stands for "past
    every row" and is clamped to it (a page token is a position, not a row's number)."""
    if text.isascii() and text.isdigit() and len(text) <= 10:
        return min(int(text), MAX_NUMBER)
    return parse_number(text, what)


def check_model_name(name: str) -> str:
    if not MODEL_NAME_RE.match(name):
        raise InvalidInput(
            f"invalid model name {name!r}: use 1-128 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(name: str) -> str:
    if not (MODEL_NAME_RE.match(name) and ALIAS_RE.match(name)) or name == "latest":
        raise InvalidInput(
            f"invalid alias {name!r}: use a-z, 0-9, '.', '_', '-' (not a number, not 'latest')"
        )
    return name


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not TAG_KEY_RE.match(key):
            raise InvalidInput(f"invalid tag key {key!r}")
        if len(value) > 1024:
            raise InvalidInput(f"tag {key!r} is longer than 1024 characters")
    return tags


def check_manifest_path(path: str) -> str:
    """A path inside a version: relative, normalised, no '..', nothing that escapes, and
    nothing another platform reads differently: no backslash, no ':' (a Windows drive such as
    ``D:/x`` or a stream), no control characters (a newline would also forge log lines)."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"invalid file path {path!r}: must be 1-{MAX_PATH_LENGTH} characters")
    if _UNSAFE_PATH_CHARS.search(path):
        raise InvalidInput(
            f"invalid file path {path!r}: backslashes, ':' and control characters are not allowed"
        )
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("/"):
        raise InvalidInput(f"invalid file path {path!r}: must be relative")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidInput(f"invalid file path {path!r}: no '..', '.' or empty segments")
    return path


@dataclass(frozen=True)
class Reference:
    """``NAME`` (latest), ``NAME@3`` or ``NAME@alias``."""

    model: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        name, sep, selector = text.partition("@")
        check_model_name(name)
        if not sep or selector == "latest":
            return cls(name)
        if selector.isascii() and selector.isdigit():
            return cls(name, version=parse_number(selector, "version"))
        if not selector:
            raise InvalidInput(f"invalid reference {text!r}: nothing after '@'")
        return cls(name, alias=check_alias(selector))

    @property
    def selector(self) -> str:
        if self.version is not None:
            return str(self.version)
        return self.alias or "latest"

    def __str__(self) -> str:
        return f"{self.model}@{self.selector}"
