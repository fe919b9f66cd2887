"""`ecsexec cp` as a user (or Rundeck's file copier) runs it: subprocesses against the sandbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click
import pytest

from ecsexec.cli.cp import CopySpec, parse_sides
from ecsexec.sandbox import Sandbox
from tests.cli.test_run_cli import ECSEXEC, WEB, ecsexec, env_for

LEGACY = "ECS:Service-Name: legacy"
ALL_BYTES = bytes(range(256))


def test_sides_are_told_apart_as_scp_does() -> None:
    assert parse_sides("a.txt", "web-1:/tmp/", with_filter=False) == CopySpec(
        False, "a.txt", "/tmp/", "web-1"
    )
    assert parse_sides("web-1:/etc/x", ".", with_filter=False) == CopySpec(
        True, ".", "/etc/x", "web-1"
    )
    assert parse_sides("./a:b", "n:/x", with_filter=False).local == "./a:b"
    assert parse_sides("-", ":/tmp/x", with_filter=True) == CopySpec(False, "-", "/tmp/x", "")
    with pytest.raises(click.UsageError, match="both SRC and DST are remote"):
        parse_sides("a:/x", "b:/y", with_filter=False)
    with pytest.raises(click.UsageError, match="neither SRC nor DST is remote"):
        parse_sides("a", "b", with_filter=True)
    with pytest.raises(click.UsageError, match="name the node"):
        parse_sides("f", ":/x", with_filter=False)


@pytest.mark.e2e
def test_rundeck_style_upload_prints_the_path_and_nothing_else(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "script.sh"
    source.write_bytes(b"#!/bin/sh\necho from the copied script\n")
    done = ecsexec(
        sandbox,
        tmp_path,
        "cp",
        "-F",
        LEGACY,
        "--region",
        "us-east-1",
        "--cluster",
        "demo",
        "--yes",
        "--print-path",
        str(source),
        ":/tmp/",
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "/tmp/script.sh\n"
    ran = ecsexec(
        sandbox, tmp_path, "run", "-F", LEGACY, "--", "sh /tmp/script.sh; rm /tmp/script.sh"
    )
    assert ran.stdout == "from the copied script\n"


@pytest.mark.e2e
def test_one_container_named_directly_is_copied_to_without_listing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """--task/--container, as the Rundeck file copier calls it: one DescribeTasks."""
    listed = ecsexec(sandbox, tmp_path, "nodes", "--format", "json", "--cluster", "demo")
    node = next(n for n in json.loads(listed.stdout).values() if n["ECS:Service-Name"] == "web")
    direct = ("--cluster", "demo", "--task", node["ECS:Task-ARN"], "--container", "app")
    source = tmp_path / "blob"
    source.write_bytes(ALL_BYTES * 3)
    sandbox.reset_stats()
    done = ecsexec(sandbox, tmp_path, "cp", *direct, "--print-path", str(source), ":/tmp/")
    assert (done.returncode, done.stdout, done.stderr) == (0, "/tmp/blob\n", "")
    ecs_calls = {k: v["calls"] for k, v in sandbox.stats()["api"]["ecs"].items()}
    assert ecs_calls == {"DescribeTasks": 1, "ExecuteCommand": 1}
    back = tmp_path / "back"
    fetched = ecsexec(sandbox, tmp_path, "cp", *direct, ":/tmp/blob", str(back))
    assert fetched.returncode == 0, fetched.stderr
    assert back.read_bytes() == ALL_BYTES * 3
    both = ecsexec(sandbox, tmp_path, "cp", "-F", "web", *direct, str(source), ":/tmp/")
    assert both.returncode == 2 and "either a node filter (-F) or --task" in both.stderr
    named = ecsexec(sandbox, tmp_path, "cp", *direct, str(source), "web-1:/tmp/")
    assert named.returncode == 2 and "write the container side :PATH" in named.stderr


@pytest.mark.e2e
def test_node_path_upload_from_stdin_and_download_to_stdout(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    nodes = ecsexec(sandbox, tmp_path, "nodes", "-F", LEGACY, "--format", "json")
    (name,) = json.loads(nodes.stdout)  # resourcejson: a map by node name
    data = ALL_BYTES * 1000 + b"last line without newline"
    env = env_for(sandbox, tmp_path)
    up = subprocess.run(
        [*ECSEXEC, "cp", "-", f"{name[:12]}:/tmp/piped"],
        input=data,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (up.returncode, up.stderr) == (0, b"")
    down = subprocess.run(
        [*ECSEXEC, "cp", f"{name}:/tmp/piped", "-"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert (down.returncode, down.stderr) == (0, b"")
    assert down.stdout == data
    ecsexec(sandbox, tmp_path, "run", "-F", LEGACY, "--", "rm -f /tmp/piped")


@pytest.mark.e2e
def test_failures_name_node_and_path_and_exit_like_run(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    failed = ecsexec(sandbox, tmp_path, "cp", "-F", WEB, "--yes", str(source), ":/proc/nope/f")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) >= 3
    assert all(
        line.endswith(
            ": ecsexec: cannot copy to /proc/nope/f: cannot write in /proc/nope:"
            " Directory nonexistent"
        )
        for line in lines
    ), failed.stderr
    several = ecsexec(sandbox, tmp_path, "cp", "-F", WEB, ":/etc/hostname", str(tmp_path / "h"))
    assert several.returncode == 2
    assert "a download needs a filter that selects exactly one node" in several.stderr
    nobody = ecsexec(sandbox, tmp_path, "cp", str(source), "no-such-node:/tmp/f")
    assert nobody.returncode == 2 and "no node is named 'no-such-node'" in nobody.stderr
