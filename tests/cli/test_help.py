"""Every command and option of the CLI explains itself in --help (pure: no subprocess)."""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys

import click
import pytest

from ecsexec.cli.main import COMMANDS, cli, main


def _commands(group: click.Command, path: str = "ecsexec") -> list[tuple[str, click.Command]]:
    found = [(path, group)]
    if isinstance(group, click.Group):
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None
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


def test_the_group_lists_each_command_with_its_own_summary() -> None:
    """`ecsexec --help` lists commands from a table, to stay cheap: it must not drift."""
    for name, (module, attribute, summary) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert command.get_short_help_str(limit=300) == summary, name
        assert command.name == name


@pytest.mark.e2e
def test_help_and_version_import_no_command_module() -> None:
    code = (
        "import sys\nfrom ecsexec.cli.main import cli\n"
        "for args in (['--help'], ['--version']):\n"
        "    try:\n        cli.main(args, standalone_mode=False)\n"
        "    except SystemExit:\n        pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'aiohttp', 'websockets', 'rich') or m.startswith('ecsexec.app'))\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "HEAVY []" in done.stdout, done.stdout[-500:]
    assert "run " in done.stdout and "Run COMMAND on every container" in done.stdout


@pytest.mark.e2e
def test_the_run_command_imports_no_job_crypto_aiohttp_yaml_copy_or_rich_module() -> None:
    # What `ecsexec run` needs before its first ExecuteCommand: job modules, cryptography
    # (encrypted sessions, the key store), aiohttp (larger runs, --server), PyYAML and the
    # other resource formats (node files), file copy with tar and the input framing
    # (commands given input), the Java regex port (selectors that are regexes), and rich
    # (what prints: the results come after the calls) are imported by what uses them.
    code = (
        "import sys\nimport ecsexec.cli.main, ecsexec.cli.run\n"
        "late = sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('aiohttp', 'cryptography', 'yaml', 'tarfile', 'rich')"
        " or m in ('ecsexec.nodes.formats', 'ecsexec.exec.copy',"
        " 'ecsexec.exec.transfer', 'ecsexec.nodes.javaregex')"
        " or (m.startswith('ecsexec.jobs.') and m != 'ecsexec.jobs.events'))\n"
        "print('LATE', late)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "LATE []" in done.stdout, done.stdout[-500:]


def test_server_listen_help_names_the_config_key_it_defaults_to() -> None:
    # `--listen` falls back on [server].listen before 127.0.0.1:8440, as --state-dir and
    # --jobs say of theirs; a help text naming only the built-in default misleads.
    from click.testing import CliRunner

    shown = CliRunner().invoke(cli, ["server", "--help"], terminal_width=200).output
    listen_line = next(line for line in shown.splitlines() if "--listen" in line)
    assert "[server].listen" in listen_line


def test_cp_and_run_say_alike_when_they_ask_before_going_on() -> None:
    # Both ask only over CONFIRM_OVER nodes on a terminal (confirm_many); cp's help said
    # "before copying to many nodes", leaving "many" to guess.
    def yes_help(name: str) -> str | None:
        command = cli.get_command(click.Context(cli), name)
        assert command is not None
        return next(p.help for p in command.params if p.name == "yes")

    assert yes_help("cp") == yes_help("run")


@pytest.mark.parametrize("path", [["server"], ["server", "users", "add"]])
def test_state_dir_help_gives_every_fallback(path: list[str]) -> None:
    # store/team.py falls back on $XDG_STATE_HOME/ecsexec before ~/.local/state/ecsexec;
    # a user with XDG_STATE_HOME set looked for the database in the wrong place.
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None
        command = found
    [state_dir] = [p for p in command.params if p.name == "state_dir"]
    assert "$XDG_STATE_HOME/ecsexec" in (state_dir.help or "")


def test_loading_a_command_freezes_start_up_and_lets_the_collector_run() -> None:
    # main() holds the collector off while modules load (collecting then cost ~50 ms of
    # start-up for nothing); loading the command freezes what is alive and turns it on.
    gc.disable()
    try:
        cli.get_command(click.Context(cli), "nodes")
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()


def test_main_leaves_the_collector_on_even_without_a_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["ecsexec", "--version"])
    with pytest.raises(SystemExit):
        main()
    assert gc.isenabled()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("environment", "shown"),
    [
        ({}, "False False"),
        ({"FORCE_COLOR": "1"}, "True True"),
        ({"TTY_COMPATIBLE": "1"}, "True True"),
    ],
)
def test_stderr_knows_it_is_no_terminal_without_loading_rich(
    environment: dict[str, str], shown: str
) -> None:
    # Not a tty and no variable that tells rich otherwise: no spinner, and rich stays
    # unloaded until something is printed; with one, rich itself decides.
    code = (
        "import sys\nfrom ecsexec.cli.common import stderr\n"
        "print(stderr.is_terminal, 'rich' in sys.modules)\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FORCE_TERMINAL", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**env, **environment},
    )
    assert done.stdout.strip() == shown
