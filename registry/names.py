"""The syntax of names, references and manifest paths, checked at every edge."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from registry.errors import InvalidInput

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
ALIAS_RE = MODEL_NAME_RE
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
MAX_PATH_LENGTH = 1024


def check_model_name(name: str) -> str:
    if not MODEL_NAME_RE.match(name):
        raise InvalidInput(
            f"invalid model name {name!r}: use 1-128 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def check_alias(name: str) -> str:
    if not ALIAS_RE.match(name) or name == "latest" or name.isdigit():
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
    """A path inside a version: relative, normalised, no '..', nothing that escapes."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"invalid file path {path!r}: must be 1-{MAX_PATH_LENGTH} characters")
    if "\\" in path or "\x00" in path:
        raise InvalidInput(f"invalid file path {path!r}: backslashes and NUL are not allowed")
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
        if selector.isdigit():
            return cls(name, version=int(selector))
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
