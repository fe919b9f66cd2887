"""Every command and option of the CLI explains itself in --help (pure: no subprocess)."""

from __future__ import annotations

import click

from ecsexec.cli.main import cli


def _commands(group: click.Command, path: str = "ecsexec") -> list[tuple[str, click.Command]]:
    found = [(path, group)]
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            found += _commands(command, f"{path} {name}")
    return found


def test_every_option_has_help_text() -> None:
    missing = [
        f"{path} {param.opts[0]}"
        for path, command in _commands(cli)
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert missing == []


def test_every_command_has_a_summary() -> None:
    missing = [path for path, command in _commands(cli) if not (command.help or "").strip()]
    assert missing == []
