"""``ecsexec server users``: passwords shown once or read from stdin, never on argv; audited."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ecsexec.cli.server_users import users_group
from ecsexec.errors import ConfigurationError, NoSuchUserError, UserExistsError
from ecsexec.store.team import database_path, open_team_store
from ecsexec.web.passwords import verify_password


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ecsexec.toml found upward from here
    monkeypatch.delenv("ECSEXEC_CONFIG", raising=False)
    return tmp_path / "state"


def users(state: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(users_group, [*args, "--state-dir", str(state)], input=stdin)


def stored_hash(state: Path, name: str) -> str | None:
    store = open_team_store(database_path(state))
    try:
        return store.password_hash(name)
    finally:
        store.close()


def test_add_prints_a_generated_password_once_and_stores_only_its_hash(state: Path) -> None:
    result = users(state, "add", "ana", "--role", "admin")
    assert result.exit_code == 0, result.output
    password = result.stdout.strip()
    assert len(password) == 24 and "\n" not in password
    assert "added ana (admin)" in result.stderr and "shown once" in result.stderr
    hashed = stored_hash(state, "ana")
    assert hashed is not None and password not in hashed
    assert verify_password(hashed, password)
    assert password not in database_path(state).read_bytes().decode("latin-1")
    store = open_team_store(database_path(state))
    (entry,) = store.list_audit()
    store.close()
    assert (entry.action, entry.target, entry.source, entry.detail) == (
        "user-add",
        "ana",
        "cli",
        {"role": "admin"},
    )


def test_a_password_from_stdin_is_not_echoed(state: Path) -> None:
    result = users(
        state, "add", "bo", "--role", "viewer", "--password-stdin", stdin="long enough pw\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "long enough pw" not in result.output
    assert verify_password(stored_hash(state, "bo"), "long enough pw")


def test_a_short_password_is_refused_and_nothing_is_created(state: Path) -> None:
    result = users(state, "add", "bo", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert isinstance(result.exception, ConfigurationError)
    assert "at least 12 characters" in str(result.exception)
    assert "short" not in str(result.exception)
    assert stored_hash(state, "bo") is None


def test_there_is_no_password_option(state: Path) -> None:
    result = users(state, "add", "bo", "--role", "viewer", "--password", "on-the-command-line")
    assert result.exit_code == 2 and "No such option" in result.output


def test_roles_must_exist_in_the_policy(state: Path, tmp_path: Path) -> None:
    result = users(state, "add", "cy", "--role", "superuser")
    assert isinstance(result.exception, ConfigurationError)
    assert "no role 'superuser'; choose one of admin, operator, viewer" in str(result.exception)
    (tmp_path / "ecsexec.toml").write_text(
        '[server.roles.oncall]\nactions = ["view_nodes", "run_job"]\n'
    )
    assert users(state, "add", "cy", "--role", "oncall").exit_code == 0


def test_the_state_dir_comes_from_the_config_file(state: Path, tmp_path: Path) -> None:
    (tmp_path / "ecsexec.toml").write_text('[server]\nstate_dir = "from-config"\n')
    result = CliRunner().invoke(users_group, ["add", "ana", "--role", "admin"])
    assert result.exit_code == 0, result.output
    assert stored_hash(tmp_path / "from-config", "ana") is not None


def test_a_duplicate_or_missing_user_is_named(state: Path) -> None:
    assert users(state, "add", "ana", "--role", "admin").exit_code == 0
    again = users(state, "add", "ana", "--role", "viewer")
    assert isinstance(again.exception, UserExistsError)
    for command in (
        ["disable", "ghost"],
        ["enable", "ghost"],
        ["reset", "ghost"],
        ["role", "ghost", "viewer"],
    ):
        result = users(state, *command)
        assert isinstance(result.exception, NoSuchUserError), command
        assert "no user 'ghost'" in str(result.exception)


def test_list_disable_enable_reset_and_role(state: Path) -> None:
    first = users(state, "add", "ana", "--role", "operator").stdout.strip()
    users(state, "add", "bo", "--role", "viewer")
    store = open_team_store(database_path(state))
    store.create_session("ana", "sid", "csrf", "2999-01-01T00:00:00+00:00", "")
    store.close()

    assert users(state, "disable", "ana").exit_code == 0
    listed = users(state, "list").stdout
    lines = [line.split() for line in listed.splitlines()]
    assert lines[0][:3] == ["NAME", "ROLE", "STATUS"]
    assert [row[:3] for row in lines[1:]] == [
        ["ana", "operator", "disabled"],
        ["bo", "viewer", "active"],
    ]
    assert "argon2" not in listed

    assert users(state, "enable", "ana").exit_code == 0
    store = open_team_store(database_path(state))
    assert store.get_session("sid") is None  # disabling ended it
    store.close()

    reset = users(state, "reset", "ana")
    assert reset.exit_code == 0, reset.output
    second = reset.stdout.strip()
    hashed = stored_hash(state, "ana")
    assert second != first and verify_password(hashed, second)
    assert not verify_password(hashed, first)

    assert users(state, "role", "ana", "admin").exit_code == 0
    assert "ana  admin" in users(state, "list").stdout.replace("   ", "  ")
    store = open_team_store(database_path(state))
    actions = [e.action for e in store.list_audit()]
    store.close()
    assert actions == [
        "user-role",
        "user-reset",
        "user-enable",
        "user-disable",
        "user-add",
        "user-add",
    ]


@pytest.mark.e2e
def test_through_the_real_cli_an_error_exits_2_with_its_message(state: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecsexec",
            "server",
            "users",
            "add",
            "x y",
            "--role",
            "admin",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "user name 'x y' is not valid" in done.stderr
    assert "Traceback" not in done.stderr
