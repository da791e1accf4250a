"""Shelf: a model registry with a canary/shadow rollout controller.

This package is the composition root, above ``registry`` and ``controller``: it assembles the
HTTP apps (:mod:`shelf.app`), the process roles (:mod:`shelf.roles`) and the ``shelf`` command
(:mod:`shelf.cli`), and offers the Python client (:class:`Client`). Importing it loads only the
client."""

from controller.client import RolloutTimeout
from registry import __version__
from registry.client import Unreachable
from shelf.client import Client

__all__ = ["Client", "RolloutTimeout", "Unreachable", "__version__"]
