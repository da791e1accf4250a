"""``python -m shelf`` runs the ``shelf`` command."""

from shelf.cli import run

run()
