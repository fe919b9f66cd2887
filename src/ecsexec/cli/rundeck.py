"""``ecsexec rundeck``: what Rundeck needs from ecsexec (the plugin archive)."""

from __future__ import annotations

from pathlib import Path

import click

from ecsexec.rundeck.plugin import NODE_EXECUTOR, RESOURCE_SOURCE, write_plugin


@click.group("rundeck")
def rundeck_group() -> None:
    """Use ecsexec from Rundeck: a node executor, file copier and ECS node source."""


@click.command("plugin")
@click.option(
    "-o",
    "--output",
    "directory",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write ecsexec-rundeck-plugin.zip into (e.g. /var/lib/rundeck/libext).",
)
def plugin_command(directory: Path) -> None:
    """Write ecsexec-rundeck-plugin.zip, Rundeck's script plugin for ecsexec.

    Copy it into $RDECK_BASE/libext (no restart needed); the Rundeck server needs
    ecsexec installed (on PATH, or set the ecsexec_path property).
    """
    if not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a directory", param_hint="-o")
    try:
        written = write_plugin(directory)
    except OSError as exc:
        raise click.FileError(str(directory), hint=exc.strerror or str(exc)) from None
    click.echo(str(written))
    click.echo(
        f"providers: {NODE_EXECUTOR}, ecsexec-file-copier, {RESOURCE_SOURCE} "
        "(README: Use it from Rundeck)",
        err=True,
    )


rundeck_group.add_command(plugin_command)
