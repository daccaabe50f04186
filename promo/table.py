"""Plain tables for the terminal: rich when attached to one, tab-free aligned text otherwise (pipes, CI logs)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, console: Console | None = None) -> None:
    table = Table(*headers, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(*row)
    (console or Console(soft_wrap=True)).print(table)
