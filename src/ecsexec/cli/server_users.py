"""``ecsexec server users``: add, list, disable, enable, reset and re-role the console's users.

Passwords never travel on the command line: ``add`` and ``reset`` print a generated
password once (on stdout, alone on its line, for scripts), or read one with
``--password-stdin`` (a no-echo prompt on a terminal). Every change is written to the
audit log with the local user's name and source ``cli``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import click
from rich.console import Console
from rich.table import Table

from ecsexec.cli.common import config_option, context_config_path
from ecsexec.config import Config, load_config
from ecsexec.errors import ConfigurationError, NoSuchUserError
from ecsexec.store.history import local_user
from ecsexec.store.team import TeamStore, User, database_path, default_state_dir, open_team_store
from ecsexec.web.acl import Policy
from ecsexec.web.passwords import MAX_PASSWORD_BYTES, hash_password, new_secret

MIN_PASSWORD_LENGTH: Final = 12
GENERATED_BYTES: Final = 18  # 24 URL-safe characters, 144 random bits
AUDIT_SOURCE: Final = "cli"


def _state_dir_option(func: Any) -> Any:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="The server's state directory (default [server].state_dir, else "
        "$ECSEXEC_STATE_DIR, else $XDG_STATE_HOME/ecsexec, else ~/.local/state/ecsexec).",
    )(func)


def _config() -> Config:
    return load_config(context_config_path())


def _open(state_dir: Path | None, config: Config) -> TeamStore:
    chosen = state_dir or config.server.state_dir or default_state_dir()
    return open_team_store(database_path(chosen))


def _check_role(role: str, config: Config) -> None:
    roles = sorted(Policy.from_config(config).roles)
    if role not in roles:
        raise ConfigurationError(f"--role: no role {role!r}; choose one of {', '.join(roles)}")


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated): one read from stdin or a prompt, or a new random one."""
    if not from_stdin:
        return new_secret(GENERATED_BYTES), True
    if sys.stdin.isatty():
        text = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        # `printf %s "$PW" | ...` and `echo "$PW" | ...` both work: one line break is dropped.
        text = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if len(text) < MIN_PASSWORD_LENGTH:
        raise ConfigurationError(
            f"--password-stdin: the password must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(text.encode()) > MAX_PASSWORD_BYTES:
        raise ConfigurationError(
            f"--password-stdin: the password must be at most {MAX_PASSWORD_BYTES} bytes"
        )
    return text, False


def _show_once(name: str, password: str) -> None:
    click.echo(f"password for {name} (shown once; keep it somewhere safe):", err=True)
    click.echo(password)


def _audit(store: TeamStore, action: str, name: str, detail: dict[str, str] | None = None) -> None:
    store.audit(local_user(), action, name, "ok", AUDIT_SOURCE, detail)


password_stdin = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (a no-echo prompt on a terminal) instead of generating one.",
)


@click.group("users")
def users_group() -> None:
    """The web console's users: each has a name, a role and an argon2id password hash.

    Roles are admin, operator and viewer, plus any [server.roles.NAME] in ecsexec.toml.
    """


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, help="The user's role (admin, operator, viewer, ...).")
@password_stdin
@_state_dir_option
@config_option
def add(name: str, role: str, password_stdin: bool, state_dir: Path | None) -> None:
    """Add user NAME with a generated password (printed once) or one from stdin."""
    config = _config()
    _check_role(role, config)
    password, generated = _password(password_stdin)
    store = _open(state_dir, config)
    try:
        store.add_user(name, role, hash_password(password))
        _audit(store, "user-add", name, {"role": role})
    finally:
        store.close()
    click.echo(f"added {name} ({role})", err=True)
    if generated:
        _show_once(name, password)


@users_group.command("list")
@_state_dir_option
@config_option
def list_users(state_dir: Path | None) -> None:
    """List users, their roles and whether they are disabled (never a password)."""
    store = _open(state_dir, _config())
    try:
        users = store.list_users()
    finally:
        store.close()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "ROLE", "STATUS", "CREATED", "PASSWORD CHANGED"):
        table.add_column(column, overflow="fold")
    for user in users:
        table.add_row(
            user.name,
            user.role,
            "disabled" if user.disabled else "active",
            _day(user.created_at),
            _day(user.password_changed_at),
        )
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200).print(table)


def _day(stamp: str) -> str:
    return stamp[:19].replace("T", " ")


def _change(
    name: str, state_dir: Path | None, action: str, change: Any, detail: dict[str, str] | None
) -> User:
    store = _open(state_dir, _config())
    try:
        change(store)
        _audit(store, action, name, detail)
        user = store.get_user(name)
    finally:
        store.close()
    if user is None:  # removed meanwhile
        raise NoSuchUserError(name)
    return user


@users_group.command("disable")
@click.argument("name")
@_state_dir_option
@config_option
def disable(name: str, state_dir: Path | None) -> None:
    """Disable NAME: sign-in refused, sessions ended, API tokens stop working."""
    _change(name, state_dir, "user-disable", lambda s: s.set_disabled(name, True), None)
    click.echo(f"disabled {name}", err=True)


@users_group.command("enable")
@click.argument("name")
@_state_dir_option
@config_option
def enable(name: str, state_dir: Path | None) -> None:
    """Enable NAME again (its password and tokens are as they were)."""
    _change(name, state_dir, "user-enable", lambda s: s.set_disabled(name, False), None)
    click.echo(f"enabled {name}", err=True)


@users_group.command("reset")
@click.argument("name")
@password_stdin
@_state_dir_option
@config_option
def reset(name: str, password_stdin: bool, state_dir: Path | None) -> None:
    """Give NAME a new password (printed once, or from stdin); its sessions end."""
    password, generated = _password(password_stdin)
    hashed = hash_password(password)
    _change(name, state_dir, "user-reset", lambda s: s.set_password(name, hashed), None)
    click.echo(f"reset the password of {name}; their sessions have ended", err=True)
    if generated:
        _show_once(name, password)


@users_group.command("role")
@click.argument("name")
@click.argument("role")
@_state_dir_option
@config_option
def set_role(name: str, role: str, state_dir: Path | None) -> None:
    """Give NAME the role ROLE."""
    _check_role(role, _config())
    _change(name, state_dir, "user-role", lambda s: s.set_role(name, role), {"role": role})
    click.echo(f"{name} is now {role}", err=True)
