"""``shelf profile build``: a reference profile from held-out predictions and labels.

Runs locally (no server): it reads a JSONL or CSV file and writes the profile JSON that
``shelf register --profile`` accepts (format in docs/champion-watch.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from registry.cli import output
from registry.profiles import build_profile, read_rows


@click.group()
def profile() -> None:
    """Reference profiles for the champion watch."""


@profile.command("build")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the profile (default: standard output)",
)
def build(source: Path, target: Path | None) -> None:
    """Build a profile from SOURCE: JSON Lines, or CSV when it ends in .csv.

    Each row: predicted (class), and optionally confidence, label, latency_ms, error, and
    numeric inputs (an 'inputs' object in JSONL, 'input.NAME' columns in CSV)."""
    document = build_profile(read_rows(source))
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if target is None:
        click.echo(text, nl=False)
        return
    target.write_text(text)
    output.console.print(
        f"wrote {target}: {document['samples']} rows, "
        f"{len(document.get('class_frequencies', {}))} classes, "
        f"{document.get('labels', 0)} labels, {len(document.get('inputs', {}))} numeric inputs"
    )
