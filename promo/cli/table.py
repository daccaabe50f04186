"""Aligned plain-text tables: full values (digests are never truncated), easy to read and to grep."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [headers, *rows]]
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print(format_table(headers, rows))
