"""Turn one step on one node into the command to run and the input to deliver. Pure.

An ``exec`` step runs its expanded command line, unless a secure option's value would
appear in it: then the line is delivered through the exec channel and run from a file,
so the secret never reaches ExecuteCommand's argument (CloudTrail, ``ps``).

An inline ``script`` is always delivered through the channel, behind a small launcher:
``tail -c +N`` copies the script (byte for byte) out of the delivered file, and the
launcher runs it the way Rundeck does: ``INTERPRETER SCRIPT ARGS``, or
``INTERPRETER 'SCRIPT ARGS'`` with ``interpreterArgsQuoted``, or, without an
interpreter, through its ``#!`` line (read here, so a ``noexec`` /tmp does not matter)
or ``/bin/sh``. Arguments therefore never appear in ExecuteCommand either.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from ecsexec.exec.wrap import INPUT_FAILED, INPUT_VARIABLE
from ecsexec.jobs.expand import Context, expand_shell, expand_tokens, shell_quote
from ecsexec.jobs.model import Step

INPUT: Final = f'"${INPUT_VARIABLE}"'
SCRIPT: Final = '"$__ecsexec_script"'


@dataclass(frozen=True)
class StepCommand:
    """``command`` runs under ``/bin/sh -c``; ``stdin`` (if any) is delivered first."""

    command: str
    stdin: bytes | None
    display: str  # for output and history: never holds a secure value


def step_command(
    step: Step, ctx: Context, secrets: Collection[str], fetched: bytes | None = None
) -> StepCommand:
    """The command for an ``exec`` or ``script`` step on the node in ``ctx``.

    ``fetched`` is the text of a ``scriptfile`` or ``scripturl`` step, read by the caller;
    its tokens are expanded only when the step asks (``expandTokenInScriptFile``)."""
    if step.kind == "exec":
        text = expand_shell(step.command, ctx)
        if any(secret and secret in text for secret in secrets):
            return StepCommand(f"/bin/sh {INPUT} </dev/null", text.encode(), step.command)
        return StepCommand(text, None, step.command)
    if step.kind != "script":
        raise ValueError(f"a {step.kind} step has no command")
    if step.script_file or step.script_url:
        if fetched is None:
            raise ValueError("the script's text was not fetched")
        body = fetched
        if step.expand_file_tokens:
            body = expand_tokens(fetched.decode("utf-8", "surrogateescape"), ctx).encode(
                "utf-8", "surrogateescape"
            )
    else:
        body = expand_tokens(step.script, ctx).encode()
    args = expand_shell(step.args, ctx).strip()
    invocation = _invocation(step, ctx, body, args)
    launcher = _launcher(invocation, step.file_extension or "script")
    display = f"script: {step.label()}" + (f" {step.args}" if step.args else "")
    return StepCommand(f"/bin/sh {INPUT} </dev/null", launcher + body, display)


def _invocation(step: Step, ctx: Context, body: bytes, args: str) -> str:
    interpreter = expand_shell(step.interpreter, ctx).strip()
    if interpreter and step.interpreter_args_quoted:
        # Rundeck: interpreter 'script args' -- the path and the arguments as one word.
        rest = shell_quote(" " + args) if args else ""
        return f"{interpreter} {SCRIPT}{rest}"
    if not interpreter:
        interpreter = _shebang(body)
    return " ".join(part for part in (interpreter, SCRIPT, args) if part)


def _shebang(body: bytes) -> str:
    """The ``#!`` line as a command (Linux: the path, then at most one argument)."""
    if not body.startswith(b"#!"):
        return "/bin/sh"
    line = body[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line:
        return "/bin/sh"
    path, _, argument = line.partition(" ")
    argument = argument.strip()
    return shell_quote(path) + (f" {shell_quote(argument)}" if argument else "")


def _launcher(invocation: str, extension: str) -> bytes:
    """A shell prelude that extracts the script appended after it, then runs it.

    The script may hold secure option values (``@option.x@``), and the session may be
    killed at any moment (SIGKILL: no trap runs), so the script never has a name on disk:
    its file is opened on fds 3 (read) and 4 (write) and unlinked before a byte is
    written, and its path becomes a symlink to ``/dev/fd/3``, which the interpreter (or
    the kernel, for a ``#!`` script) opens through the inherited descriptor.
    """

    def text(offset: int) -> bytes:
        return (
            f'__ecsexec_script="${INPUT_VARIABLE}".{shell_quote(extension)}\n'
            f'exec 4>"$__ecsexec_script" 3<"$__ecsexec_script" || exit {INPUT_FAILED}\n'
            'rm -f "$__ecsexec_script"\n'
            f'ln -s /dev/fd/3 "$__ecsexec_script" || exit {INPUT_FAILED}\n'
            f"tail -c +{offset} {INPUT} >&4 || exit {INPUT_FAILED}\n"
            "exec 4>&-\n"
            # Executable for interpreters that exec the path (``sh -c 'SCRIPT ARGS'``).
            'chmod 700 "$__ecsexec_script"\n'
            f"{invocation} </dev/null\n"
            "exit $?\n"
        ).encode()

    offset = 1
    while len(text(offset)) + 1 != offset:  # the script starts right after the prelude
        offset = len(text(offset)) + 1
    return text(offset)
