"""The ``ecsexec`` command: one click group whose commands load only when they run.

``ecsexec --help`` and ``--version`` import no command module (no boto3, aiohttp or
websockets): the group lists each command from :data:`COMMANDS`, and a test checks that
table against the commands themselves.
"""

from __future__ import annotations

import gc
import importlib
from typing import Final

import click

from ecsexec import __version__
from ecsexec.cli.entry import run_click

# name -> (module, attribute, the command's first help line as `--help` lists it)
COMMANDS: Final[dict[str, tuple[str, str, str]]] = {
    "config": ("ecsexec.cli.config_cmd", "config_group", "Project configuration (ecsexec.toml)."),
    "cp": (
        "ecsexec.cli.cp",
        "cp_command",
        "Copy SOURCE to DESTINATION; one of them is in a container.",
    ),
    "demo": (
        "ecsexec.cli.demo",
        "demo",
        "Start a private sandbox, list nodes, run commands on filtered sets, then stop it.",
    ),
    "history": (
        "ecsexec.cli.history",
        "history_group",
        "What ran, where, by whom, and how it ended (SQLite under the state directory).",
    ),
    "job": (
        "ecsexec.cli.job",
        "job_group",
        "Run Rundeck-style job files: options, steps, error handlers, captured data.",
    ),
    "keys": (
        "ecsexec.cli.keys",
        "keys_group",
        "Key storage: secrets kept encrypted (AES-GCM) under paths like keys/project/p/aws-secret.",
    ),
    "nodes": ("ecsexec.cli.nodes", "nodes_command", "List nodes (ECS containers)."),
    "rundeck": (
        "ecsexec.cli.rundeck",
        "rundeck_group",
        "Use ecsexec from Rundeck: a node executor, file copier and ECS node source.",
    ),
    "run": (
        "ecsexec.cli.run",
        "run_command",
        "Run COMMAND on every container the filter selects, with real exit codes.",
    ),
    "sandbox": (
        "ecsexec.cli.sandbox",
        "sandbox",
        "Run a local ECS region (ECS API, message gateway, container agents).",
    ),
    "server": (
        "ecsexec.cli.server",
        "server_group",
        "Serve the web console and REST API for a team.",
    ),
    "shell": (
        "ecsexec.cli.shell",
        "shell_command",
        "Open an interactive shell (or -c COMMAND) in one container.",
    ),
    "ssm-plugin": (
        "ecsexec.cli.plugin",
        "ssm_plugin",
        "Act as AWS's session-manager-plugin (same arguments as the AWS CLI passes).",
    ),
    "whoami": (
        "ecsexec.cli.whoami",
        "whoami_command",
        "Show who the configured credentials are (sts:GetCallerIdentity) and where they came from.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only to run it (or show its own help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attribute, _ = entry
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        started_up()
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ecsexec")
def cli() -> None:
    """Run commands in Amazon ECS containers through ECS Exec."""


def started_up() -> None:
    """The command's modules are loaded: put everything alive now out of the garbage
    collector's reach for good (:func:`gc.freeze`) and let it run again (:func:`main`
    holds it off during start-up). A no-op unless start-up held it off."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main() -> None:
    """Console entry point of ``ecsexec``.

    Start-up allocates hundreds of thousands of objects that live as long as the process
    (modules, classes, botocore's models) and frees few, so collecting while importing
    cost ~50 ms of CPU before the first ExecuteCommand; and once frozen, they are no
    longer scanned over and over by the collections of a long fan-out.
    """
    gc.disable()
    try:
        run_click(cli)
    finally:
        gc.enable()
