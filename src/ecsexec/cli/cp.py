"""``ecsexec cp``: copy files to and from containers through the engine; render the results."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import BinaryIO

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from ecsexec.app import Client, Run, Target
from ecsexec.app.events import Event, EventCallback, NodeFinished, NodeNotice
from ecsexec.cli.common import (
    CONFIRM_OVER,
    NodeQuery,
    confirm_many,
    container_options,
    dispatch_options,
    interruptible,
    node_options,
    run_engine,
    select_nodes,
    show_warnings,
    stderr,
    stderr_console,
)
from ecsexec.cli.render import JsonLines, result_record, summary_line, summary_table
from ecsexec.exec.results import RunResult


@dataclass(frozen=True)
class CopySpec:
    """SRC and DST of the command line, sorted into local and remote."""

    download: bool
    local: str  # "-" for standard input or output
    remote_path: str
    node: str  # "" with -F (the remote side is written :PATH)


def parse_sides(source: str, destination: str, *, with_filter: bool) -> CopySpec:
    """Which side is remote: ``NODE:PATH`` (``:PATH`` with -F); a local path containing a
    colon before any slash is written ``./a:b``, as with scp."""
    source_remote = _remote(source, with_filter)
    destination_remote = _remote(destination, with_filter)
    form = ":PATH" if with_filter else "NODE:PATH"
    if source_remote is not None and destination_remote is not None:
        raise click.UsageError(f"both SRC and DST are remote ({form}); one side must be local")
    if source_remote is None and destination_remote is None:
        raise click.UsageError(f"neither SRC nor DST is remote; write the container side {form}")
    if source_remote is not None:
        node, path = source_remote
        return CopySpec(True, destination, path, node)
    assert destination_remote is not None
    node, path = destination_remote
    return CopySpec(False, source, path, node)


def _remote(side: str, with_filter: bool) -> tuple[str, str] | None:
    if side == "-":
        return None
    if with_filter:
        return ("", side[1:]) if side.startswith(":") else None
    head, colon, path = side.partition(":")
    if not colon or "/" in head:
        return None
    if not head:
        raise click.UsageError(f"{side!r}: name the node (NODE:PATH), or select nodes with -F")
    return head, path


class CopyDisplay:
    """A transfer bar on a terminal (bytes, speed) and the far end's messages on stderr."""

    def __init__(self, jsonl: JsonLines | None) -> None:
        self.jsonl = jsonl
        self.progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if stderr.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=stderr_console(),
                transient=True,
            )

    def __enter__(self) -> CopyDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_progress(self, node: str, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        task = self._tasks.get(node)
        if task is None:
            task = self._tasks[node] = self.progress.add_task(node, total=total)
        self.progress.update(task, completed=done, total=total)

    def __call__(self, event: Event) -> None:
        if self.jsonl is not None:
            self.jsonl(event)
        if isinstance(event, NodeNotice) and self.progress is not None:
            stderr.print(
                f"[dim]{escape(event.node)}: {escape(event.text.decode('utf-8', 'replace'))}[/]"
            )
        elif isinstance(event, NodeFinished) and not event.outcome.ok:
            outcome = event.outcome
            text = outcome.output.decode("utf-8", "replace").strip() or outcome.reason
            stderr.print(f"[red]{escape(outcome.node)}: {escape(text)}[/]", highlight=False)


@click.command("cp")
@click.option(
    "-F",
    "--filter",
    "filter_text",
    default=None,
    help="Upload to every node it selects (remote side :PATH).",
)
@click.option("--include-precedence", is_flag=True, help="Include clauses win over excludes.")
@click.option(
    "-r", "--recursive", is_flag=True, help="Copy a directory (needs tar in the container)."
)
@click.option("-p", "--preserve", is_flag=True, help="Keep the file's permission bits.")
@click.option(
    "--print-path",
    is_flag=True,
    help="Print the remote path of each copied file on stdout, one line per node.",
)
@dispatch_options(
    at_once="Copies at once.",
    timeout="Seconds a copy may go without moving data; it is then cleaned up and its "
    "session terminated.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "jsonl"]),
    default="text",
    show_default=True,
    help="text: failures on stderr (and a summary on a terminal); json/jsonl: results on stdout.",
)
@click.option("--yes", "-y", is_flag=True, help=f"Do not ask (over {CONFIRM_OVER} nodes).")
@node_options
@container_options
@click.argument("source")
@click.argument("destination")
def cp_command(
    filter_text: str | None,
    include_precedence: bool,
    recursive: bool,
    preserve: bool,
    print_path: bool,
    threads: int | None,
    rate: float | None,
    burst: int | None,
    timeout: float | None,
    keepgoing: bool | None,
    fmt: str,
    yes: bool,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
    task: str | None,
    container: str | None,
    source: str,
    destination: str,
) -> None:
    """Copy SOURCE to DESTINATION; one of them is in a container.

    \b
      ecsexec cp ./app.conf web-1:/etc/app/        upload (NODE: name, unique prefix, task ID)
      ecsexec cp web-1:/var/log/app.log .          download
      ecsexec cp -F 'ECS:Service-Name: web' app.conf :/etc/app/   upload to many nodes
      ecsexec cp - web-1:/tmp/data                 standard input; `-` as DESTINATION: stdout

    A DESTINATION ending in / (or an existing directory) gets the source's name. Every copy
    is checked end to end (SHA-256) and put in place only then. Needs sh, stty, head and
    base64 (od suffices for downloads) in the container.

    --task ARN --container NAME --cluster C names the container directly (one
    DescribeTasks, no listing; the remote side is then :PATH), as the Rundeck plugin's
    file copier does.

    Exit status: 0 all copied, 1 a copy failed or was refused (exit code 125 on the node),
    2 usage or configuration error, 3 a node could not be reached, 130 interrupted.
    """
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile, task, container)
    query.check_direct()
    if task and filter_text is not None:
        raise click.UsageError("give either a node filter (-F) or --task, not both")
    spec = parse_sides(source, destination, with_filter=filter_text is not None or bool(task))
    if filter_text is not None and not filter_text.strip():
        raise click.UsageError("the node filter is empty")
    if spec.download and spec.local == "-" and (fmt != "text" or print_path):
        raise click.UsageError("copying to stdout (-) leaves no room for --format or --print-path")
    if spec.local == "-" and recursive:
        raise click.UsageError("a directory (-r) cannot come from stdin or go to stdout")
    paths: list[str] = []

    def on_copied(_node: str, path: str) -> None:
        paths.append(path)
        if print_path:
            click.echo(path)

    async def main(client: Client) -> RunResult:
        target: Target
        direct = await query.direct_node(client)
        if direct is not None:
            target = [direct]
        elif filter_text is not None:
            selection = await select_nodes(
                client, query, filter_text, include_precedence=include_precedence
            )
            if not selection:
                raise click.UsageError(f"no nodes match the filter {filter_text!r}")
            if spec.download and len(selection) != 1:
                shown = ", ".join(selection.names[:5]) + (", ..." if len(selection) > 5 else "")
                raise click.UsageError(
                    f"a download needs a filter that selects exactly one node; "
                    f"{filter_text!r} selects {len(selection)} ({shown})"
                )
            if not spec.download:
                confirm_many(f"cp to {spec.remote_path!r}", len(selection), yes)
            target = selection
        else:
            target = [await client.find_node(spec.node, refresh=refresh)]
        local: str | BinaryIO = spec.local
        if spec.local == "-":
            local = sys.stdout.buffer if spec.download else sys.stdin.buffer
        jsonl = JsonLines(sys.stdout) if fmt == "jsonl" else None
        with CopyDisplay(jsonl) as display:

            def start(on_event: EventCallback) -> Run:
                return client.copy(
                    target,
                    spec.remote_path if spec.download else local,
                    local if spec.download else spec.remote_path,
                    download=spec.download,
                    recursive=recursive,
                    preserve=preserve,
                    threads=threads,
                    rate=rate,
                    burst=burst,
                    timeout=timeout,
                    keepgoing=keepgoing,
                    on_event=on_event,
                    on_progress=display.on_progress,
                    on_copied=on_copied,
                )

            return await interruptible(client, start(display))

    result = run_engine(query, main)
    if fmt == "json":
        sys.stdout.write(json.dumps([result_record(node) for node in result], indent=2) + "\n")
        sys.stdout.flush()
    if stderr.is_terminal:
        if fmt == "text" and (len(result) > 1 or not result.ok):
            summary_table(result, sys.stderr)
        colour = "green" if result.ok else "red"
        stderr.print(f"[{colour}]{summary_line(result)}[/]", highlight=False)
    if result.interrupted:
        stderr.print("[red]interrupted: every open session was terminated[/]")
    show_warnings(result.warnings)
    sys.exit(result.exit_status)
