"""Printing for humans (rich tables) or machines (`--json`)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# Messages never wrap (a log line or a CI step's output stays greppable); tables still fit.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    view = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*["" if v is None else str(v) for v in row])
    console.print(view)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def short_time(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")
