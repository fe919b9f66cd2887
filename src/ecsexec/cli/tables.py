"""Tables that never wrap or cut node names: other columns shrink first.

On a terminal the table gets the terminal's width, or more when the node names need it
(the terminal then wraps the line, but every name stays whole for copying). Elsewhere
(a pipe, a file, CI logs) each row is one line, however long.
"""

from __future__ import annotations

import shutil
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:  # rich loads when a table is made: not before a run's first call
    from rich.table import Table

NOT_A_TERMINAL_WIDTH: Final = 100_000  # one row per line for pipes and files
SHRUNK_COLUMN: Final = 8  # what a shrinkable column may be narrowed to, at most


def new_table(*columns: str, whole: tuple[str, ...] = ("NODE", "NAME")) -> Table:
    """A plain table; columns named in ``whole`` are never wrapped or cut."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        if column in whole:
            table.add_column(column, no_wrap=True, overflow="ignore")
        else:
            table.add_column(column, overflow="fold")
    return table


def _needed_width(table: Table) -> int:
    """The narrowest width that keeps every no-wrap column whole."""
    from rich.text import Text

    width = 0
    for column in table.columns:
        texts = [str(column.header), *(c for c in column._cells if isinstance(c, str))]
        longest = max(len(Text.from_markup(text)) for text in texts)
        width += longest if column.no_wrap else min(longest, SHRUNK_COLUMN)
        width += 1  # padding between columns
    return width


def print_table(table: Table, file: IO[str]) -> None:
    from rich.console import Console

    is_terminal = file.isatty()
    if is_terminal:
        width = max(shutil.get_terminal_size().columns, _needed_width(table))
        console = Console(file=file, width=width, highlight=False)
    else:
        console = Console(file=file, width=NOT_A_TERMINAL_WIDTH, highlight=False)
    console.print(table)
