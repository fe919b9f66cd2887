"""A drop-in ``session-manager-plugin``: the AWS CLI's plugin contract on ecsexec's own client.

docs/ssm-protocol.md §14 is the contract: argv layout, the installation check, the banner lines
other tools match, terminal handling, and exit status. It differs from AWS's Go plugin
where §15 says to: stdin EOF never ends the session, truncation is never a silent exit 0,
and KMS uses the caller's own credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO, Final
from urllib.parse import urlsplit

import click

from ecsexec.app.interactive import InteractiveSession
from ecsexec.aws.clients import make_session, ssl_context
from ecsexec.aws.ssm import KmsDataKeyProvider, SsmSessionControl
from ecsexec.cli.terminal import attach_terminal
from ecsexec.errors import ConfigurationError, EcsexecError, run_main
from ecsexec.ssm.payloads import CLIENT_VERSION
from ecsexec.ssm.session import Session, SessionOptions, describe_truncation

ENV_RESPONSE: Final = "AWS_SSM_START_SESSION_RESPONSE"
EXIT_LOCAL_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_TRUNCATED: Final = 3
INSTALLED_NOTE: Final = (
    "\nThe Session Manager plugin was installed successfully (ecsexec drop-in). "
    "Use the AWS CLI to start a session.\n\n"
)


@dataclass(frozen=True)
class PluginRequest:
    """The parsed argv of one plugin invocation."""

    session_id: str
    stream_url: str
    token_value: str
    region: str
    profile: str
    target: str
    endpoint: str

    def __repr__(self) -> str:  # the token must never reach a log or traceback
        return f"PluginRequest(session_id={self.session_id!r}, target={self.target!r})"


def parse_argv(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> PluginRequest:
    """Parse ``plugin SESSION REGION StartSession [PROFILE PARAMETERS ENDPOINT]`` (§14)."""
    if len(argv) not in (4, 7):
        raise ConfigurationError(
            f"expected 3 or 6 arguments (SESSION REGION StartSession [PROFILE PARAMETERS "
            f"ENDPOINT]), got {len(argv) - 1}"
        )
    if argv[3] != "StartSession":
        raise ConfigurationError(f"unsupported operation {argv[3]!r}: only StartSession")
    raw = argv[1]
    if raw.startswith(ENV_RESPONSE):
        raw = environ.get(raw, "")
        with contextlib.suppress(KeyError):
            del environ[argv[1]]  # §14: unset it so the token does not leak to children
    try:
        session = json.loads(raw)
    except ValueError:
        raise ConfigurationError("argument 1 is not the session JSON") from None
    if not isinstance(session, dict):
        raise ConfigurationError("argument 1 is not a JSON object")
    keys = {str(k).lower(): v for k, v in session.items()}  # §14: keys case-insensitively
    missing = [k for k in ("sessionid", "streamurl", "tokenvalue") if not keys.get(k)]
    if missing:
        raise ConfigurationError(f"session JSON lacks {', '.join(missing)}")
    target = ""
    profile = endpoint = ""
    if len(argv) == 7:
        profile, endpoint = argv[4], argv[6]
        try:
            params = json.loads(argv[5]) if argv[5] else {}
        except ValueError:
            raise ConfigurationError("argument 5 is not the parameters JSON") from None
        if isinstance(params, dict):
            target = str(params.get("Target") or "")
    return PluginRequest(
        session_id=str(keys["sessionid"]),
        stream_url=str(keys["streamurl"]),
        token_value=str(keys["tokenvalue"]),
        region=argv[2],
        profile=profile,
        target=target,
        endpoint=endpoint,
    )


def ssm_endpoint(endpoint: str) -> str | None:
    """§14/§15.9: argv[6] is the ECS endpoint under ECS Exec; use it only if it is SSM's."""
    host = urlsplit(endpoint).hostname or ""
    return endpoint if host.startswith("ssm.") else None


async def run_plugin(
    request: PluginRequest,
    *,
    stdin_fd: int,
    stdout: BinaryIO,
    stderr: BinaryIO,
    options: SessionOptions | None = None,
) -> int:
    """Run one session like the Go plugin does, with ecsexec's fixes. Returns the exit status."""
    boto_session = make_session(profile=request.profile or None, region=request.region)
    control = SsmSessionControl(boto_session, endpoint_url=ssm_endpoint(request.endpoint))
    kms = KmsDataKeyProvider(boto_session)
    base = options or SessionOptions()
    opts = SessionOptions(**{**base.__dict__, "ssl_context": ssl_context(boto_session)})
    stdout.write(f"\nStarting session with SessionId: {request.session_id}\n".encode())
    stdout.flush()
    session = Session(
        request.session_id,
        request.stream_url,
        request.token_value,
        target=request.target,
        control=control,
        data_key_provider=kms,
        options=opts,
    )
    closed = await attach_terminal(
        InteractiveSession(None, "", session), stdin_fd=stdin_fd, stdout=stdout, stderr=stderr
    )
    if closed.output:
        stdout.write(f"\n\nSessionId: {request.session_id} : {closed.output}\n\n".encode())
    else:
        stdout.write(f"\n\nExiting session with sessionId: {request.session_id}.\n\n".encode())
    stdout.flush()
    if closed.truncated:
        stderr.write(f"ecsexec: {describe_truncation(closed)}\n".encode())
        stderr.flush()
        return EXIT_TRUNCATED
    return 0


def plugin_main(argv: list[str]) -> int:
    """Entry point body shared by ``session-manager-plugin`` and ``ecsexec ssm-plugin``."""
    if len(argv) == 1:
        sys.stdout.write(INSTALLED_NOTE)
        return 0
    if len(argv) == 2 and argv[1] in ("--version", "version"):
        sys.stdout.write(CLIENT_VERSION + "\n")
        return 0
    if len(argv) < 4:  # --help and the like: AWS's plugin answers so, and exits 0
        sys.stdout.write(
            f"\nUnknown operation {argv[1]}. \n"
            "Use session-manager-plugin --version to check the version.\n\n"
        )
        return 0
    try:
        request = parse_argv(argv, os.environ)
    except ConfigurationError as exc:
        sys.stderr.write(f"session-manager-plugin: {exc}\n")
        return EXIT_USAGE
    try:
        return asyncio.run(
            run_plugin(
                request,
                stdin_fd=sys.stdin.fileno(),
                stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer,
            )
        )
    except EcsexecError as exc:
        sys.stderr.write(f"session-manager-plugin: {exc}\n")
        return EXIT_LOCAL_FAILURE
    except KeyboardInterrupt:
        return 130


def main() -> None:
    """``session-manager-plugin`` console script."""
    run_main(lambda: plugin_main(sys.argv), prog="session-manager-plugin")


@click.command(
    "ssm-plugin",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ssm_plugin(args: tuple[str, ...]) -> None:
    """Act as AWS's session-manager-plugin (same arguments as the AWS CLI passes)."""
    sys.exit(plugin_main(["session-manager-plugin", *args]))
