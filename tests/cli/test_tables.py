"""Tables keep node names whole at any width, on a terminal and in a pipe."""

from __future__ import annotations

import io
import os
import pty
import re

import pytest

from ecsexec.cli.tables import new_table, print_table

NAMES = [f"orders-{n}a4c6e8f0-1b3d-4f5a-8c7e-9d0b2a4c6e8{n}" for n in range(3)]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _table() -> object:
    table = new_table("NODE", "STATUS", "DETAIL")
    for name in NAMES:
        table.add_row(name, "failed", "a long explanation " * 8)
    return table


def test_in_a_pipe_each_row_is_one_line() -> None:
    out = io.StringIO()
    print_table(_table(), out)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + len(NAMES)
    for name, line in zip(NAMES, lines[1:], strict=True):
        assert line.startswith(name + " ")


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_on_a_narrow_terminal_names_are_never_wrapped_or_cut(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    primary, secondary = pty.openpty()
    with os.fdopen(secondary, "w", closefd=True) as terminal:
        print_table(_table(), terminal)  # type: ignore[arg-type]
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    text = ANSI.sub("", b"".join(chunks).decode())
    for name in NAMES:
        assert name in text  # whole, on one line of the output
