"""`shelf quickstart` and `shelf rollout report`: see the product work, and keep the record."""

from __future__ import annotations

import time
from pathlib import Path

import click

from registry.cli import exit_codes, output
from registry.config import Settings


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo keeps its data [default: $SHELF_HOME/quickstart-<time>]",
)
@click.option("--timeout", "timeout_s", default=50.0, show_default=True, help="Per rollout, s")
def quickstart(home: Path | None, timeout_s: float) -> int:
    """Run the whole story locally: two canaries, one rolled back, one promoted, plus a report."""
    from controller.demo.quickstart import run

    started = time.monotonic()
    home = home or Settings().home / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"

    def say(line: str) -> None:
        output.console.print(line, highlight=False, markup=False)

    finished = run(home.expanduser().resolve(), say, timeout_s=timeout_s)
    say(f"done in {time.monotonic() - started:.0f}s")
    for rollout in finished:
        say(
            f"rollout {rollout['id']} ({rollout['model']} v{rollout['champion_version']} -> "
            f"v{rollout['challenger_version']}): {rollout['state']}"
        )
    states = [r["state"] for r in finished]
    return exit_codes.OK if states == ["rolled_back", "promoted"] else exit_codes.ERROR


COMMANDS = [quickstart]
