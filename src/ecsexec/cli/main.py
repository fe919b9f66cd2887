"""The ``ecsexec`` command: one click group that wires the command modules together."""

from __future__ import annotations

import sys

import click

from ecsexec import __version__
from ecsexec.errors import EcsexecError


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
    """Console entry point: map ecsexec errors to a message and exit status 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EcsexecError as exc:
        click.echo(f"ecsexec: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
