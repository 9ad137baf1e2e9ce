"""Tables for people and for pipes.

On a terminal a table is aligned by rich and fits the window. Anywhere else (``kyros runs list
| awk …``), or with ``--plain``, it is one line per row, cells separated by a tab, never
wrapped: 80-column wrapping cut a goal into rows of its own that a script read as runs. Every
cell passes the one sanitiser (:func:`kyros.sanitize.one_line`), in both forms: a goal, a name
or a command may hold terminal escapes, and a tab or a newline in a cell would break the row.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer

from kyros.sanitize import one_line

__all__ = ["PlainOpt", "print_table"]

PlainOpt = Annotated[
    bool,
    typer.Option(
        "--plain",
        help="One line per row, tab-separated, never wrapped (the default when stdout is not "
        "a terminal).",
    ),
]


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, plain: bool = False
) -> None:
    """Print ``rows`` under ``columns``: aligned on a terminal, tab-separated otherwise."""
    cells = [[one_line(cell) for cell in row] for row in rows]
    if plain or not sys.stdout.isatty():
        out = ["\t".join(columns), *("\t".join(row) for row in cells)]
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    from kyros.cli.state import stdout_console

    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # Text: "[bold]" in a goal stays text
    stdout_console().print(table)
