"""Step commands: what runs and what is delivered, checked with a real local /bin/sh."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ecsexec.jobs.expand import Context
from ecsexec.jobs.model import Step
from ecsexec.jobs.steps import step_command
from ecsexec.nodes.node import Node

NODE = Node("web-1", {"ECS:Container-Image": "nginx:1.27"})


def run_locally(step: Step, ctx: Context, tmp_path: Path, secrets: tuple[str, ...] = ()) -> str:
    """Run a step's command the way the input wrapper does: the input in a file, given as
    stdin and named by $ECSEXEC_INPUT."""
    built = step_command(step, ctx, secrets)
    path = tmp_path / "input"
    path.write_bytes(built.stdin or b"")
    with path.open("rb") as stdin:
        done = subprocess.run(
            ["/bin/sh", "-c", built.command],
            stdin=stdin,
            capture_output=True,
            env={**os.environ, "ECSEXEC_INPUT": str(path)},
            check=False,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def test_exec_runs_its_expanded_line_in_argv() -> None:
    step = Step("exec", command="echo ${option.msg} ${node.ECS:Container-Image}")
    built = step_command(step, Context({"msg": "a b"}, node=NODE), ())
    assert (built.command, built.stdin) == ("echo 'a b' nginx:1.27", None)


def test_exec_with_a_secret_goes_through_the_channel(tmp_path: Path) -> None:
    step = Step("exec", command="printf '%s\\n' ${option.pw} | wc -c")
    ctx = Context({"pw": "hunter2 x"})
    built = step_command(step, ctx, ("hunter2 x",))
    assert "hunter2" not in built.command and "hunter2" not in built.display
    assert built.stdin is not None and b"hunter2" in built.stdin
    assert run_locally(step, ctx, tmp_path, ("hunter2 x",)).strip() == "10"


def test_script_is_extracted_byte_exact_with_args_and_tokens(tmp_path: Path) -> None:
    # Tokens are replaced by plain text (Rundeck): the script's own quoting applies.
    body = '#!/bin/sh\nprintf "<%s>" "$@"\necho\necho "@option.plain@ on @node.name@"\ncat "$0"'
    step = Step("script", script=body, args="${option.msg} 'two words' ${node.name}")
    ctx = Context({"msg": "it's; $(id)", "plain": "hello"}, node=NODE)
    out = run_locally(step, ctx, tmp_path)
    expected_body = body.replace("@option.plain@", "hello").replace("@node.name@", "web-1")
    assert out == "<it's; $(id)><two words><web-1>\n" + "hello on web-1\n" + expected_body


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"script": "import sys\nprint(sys.argv[1:])", "interpreter": "python3 -u"},
            "['a', 'b c']",
        ),
        ({"script": "#!/usr/bin/env python3\nimport sys\nprint(sys.argv[1:])"}, "['a', 'b c']"),
        ({"script": "echo no shebang: $1"}, "no shebang: a"),
        (
            {"script": "#!/bin/sh\necho quoted: $1 $2", "interpreter": "sh -c"},
            "quoted: a b c",
        ),
    ],
)
def test_interpreters(fields: dict[str, str], expected: str, tmp_path: Path) -> None:
    quoted = fields.get("interpreter") == "sh -c"
    step = Step("script", args="a 'b c'", interpreter_args_quoted=quoted, **fields)  # type: ignore[arg-type]
    assert run_locally(step, Context(), tmp_path).strip() == expected


def test_script_reads_no_stdin(tmp_path: Path) -> None:
    step = Step("script", script="cat; echo done")
    assert run_locally(step, Context(), tmp_path) == "done\n"
