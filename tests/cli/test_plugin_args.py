"""The session-manager-plugin argv contract (docs/ssm-protocol.md §14), without a session."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ecsexec.cli.plugin import ENV_RESPONSE, parse_argv, ssm_endpoint
from ecsexec.errors import ConfigurationError

SESSION = {
    "sessionId": "ecs-execute-command-abc",
    "streamUrl": "ws://127.0.0.1:1/x",
    "tokenValue": "SECRET-TOKEN",
}


def test_full_form_as_the_ecs_cli_passes_it() -> None:
    req = parse_argv(
        [
            "plugin",
            json.dumps(SESSION),
            "us-east-1",
            "StartSession",
            "",
            '{"Target": "ecs:c_t_r"}',
            "https://ecs.us-east-1.amazonaws.com",
        ],
        {},
    )
    assert (req.session_id, req.stream_url, req.region, req.profile, req.target) == (
        "ecs-execute-command-abc",
        "ws://127.0.0.1:1/x",
        "us-east-1",
        "",
        "ecs:c_t_r",
    )
    assert "SECRET" not in repr(req)


def test_pascal_case_keys_from_env_variable_are_read_and_unset() -> None:
    env = {ENV_RESPONSE: json.dumps({"SessionId": "s", "StreamUrl": "u", "TokenValue": "t"})}
    req = parse_argv(["plugin", ENV_RESPONSE, "eu-west-1", "StartSession"], env)
    assert (req.session_id, req.token_value) == ("s", "t")
    assert ENV_RESPONSE not in env


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plugin", "{}", "r"], "expected 3 or 6 arguments"),
        (["plugin", json.dumps(SESSION), "r", "Other"], "only StartSession"),
        (["plugin", "not-json", "r", "StartSession"], "not the session JSON"),
        (["plugin", '{"sessionId": "s"}', "r", "StartSession"], "streamurl, tokenvalue"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_argv(argv, {})


def test_ssm_calls_use_argv6_only_when_it_is_an_ssm_endpoint() -> None:
    assert ssm_endpoint("https://ecs.us-east-1.amazonaws.com") is None
    assert ssm_endpoint("https://ssm.us-east-1.amazonaws.com") == (
        "https://ssm.us-east-1.amazonaws.com"
    )


def run_plugin_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ecsexec.cli.plugin import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_no_arguments_prints_installed_note_and_exits_zero() -> None:
    result = run_plugin_cli()
    assert result.returncode == 0
    lines = result.stdout.split("\n")
    assert lines[0] == "" and "installed successfully" in lines[1] and lines[2] == ""


def test_version_prints_only_the_version() -> None:
    result = run_plugin_cli("--version")
    assert result.returncode == 0 and result.stdout == "1.2.677.0\n"


def test_usage_error_exits_2_without_leaking_the_token() -> None:
    result = run_plugin_cli(json.dumps(SESSION), "us-east-1", "Bogus")
    assert result.returncode == 2
    assert "SECRET-TOKEN" not in result.stderr + result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("args", [("--help",), ("-h",), ("help", "me")])
def test_one_or_two_arguments_answer_like_aws_plugin(args: tuple[str, ...]) -> None:
    """AWS's plugin answers fewer than 3 arguments (other than --version) with an
    'Unknown operation' note on stdout and exit status 0."""
    result = run_plugin_cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"\nUnknown operation {args[0]}. \n"
        "Use session-manager-plugin --version to check the version.\n\n"
    )
