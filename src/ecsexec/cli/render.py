"""How ``ecsexec run`` and ``ecsexec job run`` show a run: live output, records, one summary.

Output bytes reach stdout exactly as the command printed them: with one node, the bytes
themselves; with several, each line prefixed with its node name. Progress, step headers
and the summary go to stderr.
"""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from ecsexec.app.events import (
    DataCaptured,
    Event,
    JobNotice,
    NodeFinished,
    NodeNotice,
    NodeOutput,
    NodeThrottled,
    StepFinished,
    StepStarted,
)
from ecsexec.cli.common import escape, stderr, stderr_console
from ecsexec.cli.tables import new_table, print_table
from ecsexec.errors import Status
from ecsexec.exec.results import CommandResult, RunResult

if TYPE_CHECKING:
    from rich.progress import Progress

COLOURS = {
    Status.SUCCEEDED: "green",
    Status.RECOVERED: "green",
    Status.FAILED: "red",
    Status.ERROR: "red",
    Status.TIMEOUT: "yellow",
    Status.CANCELLED: "yellow",
    Status.NOT_STARTED: "yellow",
}


def output_fields(data: bytes) -> dict[str, str]:
    """Lossless output for JSON: the text when the bytes are UTF-8, else their base64."""
    try:
        return {"output": data.decode("utf-8"), "output_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"output": base64.b64encode(data).decode("ascii"), "output_encoding": "base64"}


def shown(data: bytes) -> bytes:
    """Bytes fit to show on a line of several nodes' output: UTF-8 as is, any other byte
    escaped as ``\\xNN``, never replaced."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "backslashreplace").encode("utf-8")
    return data


def result_record(result: CommandResult) -> dict[str, Any]:
    """The per-node object of ``--format json`` and ``jsonl``."""
    return {
        "node": result.node,
        "status": str(result.status),
        "exit_code": result.exit_code,
        **output_fields(result.output),
        "error": result.reason or None,
        "started_at": result.started_at.isoformat(),
        "duration_s": round(result.duration, 3),
        "session_id": result.session_id,
    }


class LiveText:
    """Text output: live lines prefixed with the node name (several nodes), a progress bar,
    and for a job its step headers, captured data and step failures on stderr."""

    def __init__(
        self,
        out: BinaryIO,
        *,
        prefix: bool,
        group: bool = False,
        total: int = 0,
        job: bool = False,
        line_buffered: bool = False,
    ) -> None:
        self.out = out
        self.prefix = prefix
        # One node: a line is shown when its line break arrives, even while that break is
        # held back as the possible start of the end marker; if it was the marker's, the
        # output gains a final line break (what a line-based log such as Rundeck's wants).
        self.line_buffered = line_buffered
        self.group = group
        self.job = job
        self._partial: dict[str, bytes] = {}
        self._owed: dict[str, bool] = {}
        self.progress: Progress | None = None
        if stderr.is_terminal and total > 1:
            # Imported only for a terminal: ~5 ms of start-up that piped output never uses.
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr_console(),
                transient=True,
            )
            self._task = self.progress.add_task("running", total=total)
        # Output shares the terminal with the bar only when stdout is that terminal.
        self._through_bar = self.progress is not None and out.isatty()

    def __enter__(self) -> LiveText:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _write(self, data: bytes) -> None:
        if self._through_bar and self.progress is not None:
            # Keeps the bar below the output; a terminal shows text, so decoding is fine.
            self.progress.console.out(
                data.decode("utf-8", "backslashreplace"), end="", highlight=False
            )
        else:
            self.out.write(data)
            self.out.flush()

    def _lines(self, node: str, data: bytes, *, final: bool, break_held: bool = False) -> None:
        if self._owed.pop(node, False) and data.startswith(b"\n"):
            data = data[1:]  # this line break was shown already
        data = self._partial.pop(node, b"") + data
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail and (final or break_held):
            # The line is complete for display even though its line break is held back.
            lines.append(tail)
            self._owed[node] = break_held
        elif tail:
            self._partial[node] = tail
        if lines:
            label = node.encode() + b": "
            self._write(b"".join(label + shown(line) + b"\n" for line in lines))

    def _one_node(self, event: NodeOutput) -> bytes:
        """One node: exactly what the command printed (see ``line_buffered``)."""
        data = event.data
        if self._owed.pop(event.node, False) and data.startswith(b"\n"):
            data = data[1:]  # this line break was shown already
        if self.line_buffered and event.line_break_held:
            data += b"\n"
            self._owed[event.node] = True
        return data

    def _note(self, markup: str) -> None:
        stderr.print(markup, highlight=False)

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeOutput):
            if self.group:
                return
            if self.prefix:
                self._lines(event.node, event.data, final=False, break_held=event.line_break_held)
            else:
                self._write(self._one_node(event))
        elif isinstance(event, NodeNotice):
            self._note(f"[dim]{event.node}: {event.text.decode('utf-8', 'replace')}[/]")
        elif isinstance(event, NodeThrottled):
            self._note(
                f"[yellow]{event.node}: ExecuteCommand throttled; retrying in "
                f"{event.delay:.1f} s (rate now {event.rate:.1f}/s)[/]"
            )
        elif isinstance(event, NodeFinished):
            if self.prefix and not self.group:
                self._lines(event.node, b"", final=True)
            if self.progress is not None:
                self.progress.advance(self._task)
        elif isinstance(event, StepStarted):
            where = f" on {event.node}" if event.node and self.prefix else ""
            self._note(f"[dim]── step {event.step}: {event.label}{where}[/]")
        elif isinstance(event, StepFinished):
            step = event.result
            who = f"{step.node}: " if step.node else ""
            if step.status is Status.RECOVERED:
                self._note(f"[yellow]{who}step {step.step} {step.detail}[/]")
            elif not step.ok:
                self._note(f"[red]{who}step {step.step} {step.status}: {step.detail}[/]")
        elif isinstance(event, DataCaptured):
            self._note(f"[dim]{event.node}: data.{event.key} = {event.value}[/]")
        elif isinstance(event, JobNotice):
            who = f"{event.node}: " if event.node else ""
            self._note(f"[yellow]{who}{event.text}[/]")


class JsonLines:
    """``--format jsonl``: one object per node, as each finishes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: Event) -> None:
        if isinstance(event, NodeFinished):
            self.out.write(json.dumps(result_record(event.outcome)) + "\n")
            self.out.flush()


def print_groups(result: RunResult, out: BinaryIO) -> None:
    """``--group``: nodes with identical output shown once, like clush -b."""
    groups: dict[bytes, list[str]] = {}
    for node in result:
        groups.setdefault(node.output, []).append(node.node)
    for output, names in groups.items():
        header = f"{','.join(names)} ({len(names)})"
        rule = "-" * min(78, max(15, len(header)))
        out.write(f"{rule}\n{header}\n{rule}\n".encode())
        block = shown(output)
        out.write(block if not block or block.endswith(b"\n") else block + b"\n")
    out.flush()


def summary_table(result: RunResult, file: IO[str]) -> None:
    """One row per node: name (never wrapped or cut, so it can be copied), exit code,
    status, duration and what went wrong. A problem several nodes share is printed once,
    below the table, and their rows point to it."""
    counts = Counter(node.reason for node in result if node.reason)
    shared = {reason: n for n, reason in enumerate(r for r, c in counts.items() if c > 1)}
    table = new_table("NODE", "EXIT", "STATUS", "DURATION", "DETAIL")
    for node in result:
        colour = COLOURS.get(node.status, "yellow")
        duration = "-" if node.status is Status.NOT_STARTED else f"{node.duration:.1f}s"
        number = shared.get(node.reason)
        detail = f"see [{number + 1}] below" if number is not None else node.reason
        table.add_row(
            escape(node.node),
            "-" if node.exit_code is None else str(node.exit_code),
            f"[{colour}]{node.status}[/]",
            duration,
            escape(detail.replace("\n", " ")),
        )
    print_table(table, file)
    for reason, number in shared.items():
        print(f"[{number + 1}] {counts[reason]} nodes: {reason}", file=file)
    file.flush()


def summary_line(result: RunResult) -> str:
    counts: dict[str, int] = {}
    for node in result:
        counts[node.status] = counts.get(node.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(result)} node(s): {parts or 'none run'}"


def render_result(result: RunResult, fmt: str, *, group: bool = False) -> None:
    """What follows the live output: the JSON list, groups, the summary, warnings."""
    if fmt == "json":
        records = [result_record(node) for node in result]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
        sys.stdout.flush()
    elif fmt == "text":
        if group:
            print_groups(result, sys.stdout.buffer)
        summary_table(result, sys.stderr)
    colour = "green" if result.ok else "red"
    stderr.print(f"[{colour}]{summary_line(result)}[/]", highlight=False)
    if result.interrupted:
        stderr.print("[red]interrupted: every open session was terminated[/]")
    if result.run_id is not None and fmt == "text":
        stderr.print(f"[dim]recorded as #{result.run_id}: ecsexec history show {result.run_id}[/]")
