"""Console entry points: a click command run through :func:`ecsexec.errors.run_main`.

Kept light (no engine imports) because ``python -m ecsexec.cli.sandbox``, the detached
sandbox, starts through it too.
"""

from __future__ import annotations

import click

from ecsexec.errors import EXIT_INTERRUPTED, EcsexecError, FilterSyntaxError, run_main


def describe_error(exc: EcsexecError) -> str:
    """The message the CLI shows for an error: a filter error with its caret line."""
    if isinstance(exc, FilterSyntaxError):
        from ecsexec.nodes.filter import format_filter_error

        return format_filter_error(exc)
    return str(exc)


def run_click(command: click.Command, prog_name: str = "ecsexec") -> None:
    """Run a click command as a console entry point: click's usage errors exit 2, Ctrl-C at
    a prompt 130, ecsexec errors with their own exit code and message."""

    def body() -> int:
        try:
            command.main(prog_name=prog_name, standalone_mode=False)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            return EXIT_INTERRUPTED
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        return 0

    run_main(body, prog=prog_name, describe=describe_error)
