"""What every ``shelf`` command receives from the root command: a lazily opened connection to
the API and whether to draw progress bars. The root (``shelf.cli``) builds it once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click

from registry.client.http import Connection


@dataclass(frozen=True)
class CLIContext:
    connect: Callable[[], Connection]
    progress: bool


def connection_of(ctx: click.Context) -> Connection:
    state = ctx.find_object(CLIContext)
    if state is None:
        raise click.UsageError("this command runs under the 'shelf' command")
    return state.connect()


def progress_of(ctx: click.Context) -> bool:
    state = ctx.find_object(CLIContext)
    return state is not None and state.progress
