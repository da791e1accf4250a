"""Shelf registry: immutable, content-addressed model versions with aliases, lineage and audit."""

__version__ = "0.1.0"
