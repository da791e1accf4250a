"""A plain-text table for the benchmarks' human-readable output (``--json`` prints rows)."""

from __future__ import annotations

from collections.abc import Sequence


def print_text_table(table: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns; the first row is the header, underlined."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
