"""The ``ecsexec`` command: one click group that wires the command modules together."""

from __future__ import annotations

import click

from ecsexec import __version__
from ecsexec.cli.entry import run_click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ecsexec")
def cli() -> None:
    """Run commands in Amazon ECS containers through ECS Exec."""


def _register() -> None:
    from ecsexec.cli import demo, nodes, plugin, run, sandbox, shell

    cli.add_command(demo.demo)
    cli.add_command(nodes.nodes_command)
    cli.add_command(run.run_command)
    cli.add_command(shell.shell_command)
    cli.add_command(sandbox.sandbox)
    cli.add_command(plugin.ssm_plugin)

    from ecsexec.cli import config_cmd, keys, whoami

    cli.add_command(config_cmd.config_group)
    cli.add_command(keys.keys_group)
    cli.add_command(whoami.whoami_command)

    from ecsexec.cli import history, job

    cli.add_command(job.job_group)
    cli.add_command(history.history_group)


_register()


def main() -> None:
    """Console entry point of ``ecsexec``."""
    run_click(cli)
