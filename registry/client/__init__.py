"""The registry's Python client: a :class:`Connection` to the API and the registry operations
on it. :class:`shelf.Client` combines it with the controller's rollout operations."""

from registry.client.http import Connection, Unreachable
from registry.client.registry import RegistryClient

__all__ = ["Connection", "RegistryClient", "Unreachable"]
