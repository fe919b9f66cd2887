"""File copies end to end: ``Client.copy`` (exec/copy.py under it) against the sandbox, with
real websockets and boto3, containers running real shells and tools."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ecsexec.app import Client, SourceOverrides
from ecsexec.aws.clients import session_from_env
from ecsexec.config import load_config
from ecsexec.errors import ConfigurationError, Status
from ecsexec.exec.copy import LocalDestination, LocalSource, download_command, upload_command
from ecsexec.exec.dispatcher import DispatchOptions, dispatch
from ecsexec.exec.results import RunResult
from ecsexec.exec.runner import INTERRUPT, ContainerTarget
from ecsexec.exec.transfer import CHUNK_BYTES
from ecsexec.sandbox import Sandbox
from tests.exec.sandbox_nodes import pool, targets
from tests.exec.test_input import run_in_pty

pytestmark = pytest.mark.e2e

T = TypeVar("T")
WEB = "ECS:Service-Name: web ECS:Cluster-Name: demo"
LEGACY = "ECS:Service-Name: legacy"
ALL_BYTES = bytes(range(256))


def client_for(sb: Sandbox) -> Client:
    return Client(
        load_config(search=False, environ={}),
        sources=SourceOverrides(regions=("us-east-1",)),
        history=False,
        session_factory=lambda region: session_from_env(sb.env, region),
    )


def engine(sb: Sandbox, body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with client_for(sb) as client:
            return await body(client)

    return asyncio.run(main())


async def one_node(client: Client, node_filter: str = LEGACY) -> str:
    return (await client.nodes(node_filter)).names[0]


async def remote(client: Client, node: str, command: str) -> bytes:
    result = await client.run([node], command, record=False)
    (outcome,) = result
    assert outcome.ok, (outcome.output, outcome.reason)
    return outcome.output


@pytest.mark.parametrize(
    "data",
    [
        random.Random(16).randbytes(300_000) + ALL_BYTES * 40,
        b"",
        b"no trailing newline",
        b"\r\n\x03\x04\x1a\x1c\x7f\x00" * 100,
    ],
    ids=["binary", "empty", "no-newline", "terminal-control-bytes"],
)
def test_a_file_goes_up_and_comes_back_byte_exact(
    sandbox: Sandbox, tmp_path: Path, data: bytes
) -> None:
    source = tmp_path / "a file with spaces.bin"
    source.write_bytes(data)
    back = tmp_path / "back" / "copy with spaces"
    back.parent.mkdir()
    copied: list[tuple[str, str]] = []

    async def scenario(client: Client) -> tuple[RunResult, RunResult, bytes]:
        node = await one_node(client)
        missing = await client.copy([node], source, "/tmp/dir with spaces/")
        assert [r.exit_code for r in missing] == [125]  # the directory does not exist yet
        await remote(client, node, "mkdir -p '/tmp/dir with spaces'")
        up = await client.copy(
            [node], source, "/tmp/dir with spaces/", on_copied=lambda n, p: copied.append((n, p))
        )
        size = await remote(client, node, "wc -c < '/tmp/dir with spaces/a file with spaces.bin'")
        down = await client.copy(
            [node], "/tmp/dir with spaces/a file with spaces.bin", back, download=True
        )
        await remote(client, node, "rm -rf '/tmp/dir with spaces'")
        return up, down, size

    up, down, size = engine(sandbox, scenario)
    assert up.ok and down.ok, [(r.output, r.reason) for r in (*up, *down)]
    assert int(size) == len(data)
    assert back.read_bytes() == data
    assert [path for _, path in copied] == ["/tmp/dir with spaces/a file with spaces.bin"]
    assert not [p for p in back.parent.iterdir() if p.name != back.name]  # no temporary left


def test_an_unwritable_destination_is_a_clear_failure_naming_the_path(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")

    async def scenario(client: Client) -> RunResult:
        return await client.copy([await one_node(client)], source, "/proc/no-such-dir/f")

    (outcome,) = engine(sandbox, scenario)
    assert outcome.status is Status.FAILED and outcome.exit_code == 125
    assert outcome.output == (
        b"ecsexec: cannot copy to /proc/no-such-dir/f: cannot write in /proc/no-such-dir:"
        b" Directory nonexistent\n"
    )


def test_a_missing_remote_file_is_a_clear_failure_and_nothing_is_written(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    async def scenario(client: Client) -> RunResult:
        node = await one_node(client)
        return await client.copy([node], "/tmp/nothing-here", tmp_path / "x", download=True)

    (outcome,) = engine(sandbox, scenario)
    assert outcome.exit_code == 125
    assert outcome.output == b"ecsexec: cannot copy /tmp/nothing-here: no such file or directory\n"
    assert list(tmp_path.iterdir()) == []


def test_modes_are_kept_with_preserve_only(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "tool"
    source.write_bytes(b"#!/bin/sh\necho hi\n")
    source.chmod(0o751)

    async def scenario(client: Client) -> tuple[bytes, bytes]:
        node = await one_node(client)
        assert (await client.copy([node], source, "/tmp/kept", preserve=True)).ok
        assert (await client.copy([node], source, "/tmp/plain")).ok
        modes = await remote(client, node, "stat -c %a /tmp/kept /tmp/plain; umask")
        assert (await client.copy([node], "/tmp/kept", tmp_path / "down", download=True)).ok
        kept = tmp_path / "down-kept"
        assert (await client.copy([node], "/tmp/kept", kept, download=True, preserve=True)).ok
        await remote(client, node, "rm -f /tmp/kept /tmp/plain")
        return modes, b""

    modes, _ = engine(sandbox, scenario)
    kept, plain, umask = modes.split()
    assert kept == b"751"
    assert int(plain, 8) == 0o666 & ~int(umask, 8)
    assert (tmp_path / "down-kept").stat().st_mode & 0o7777 == 0o751
    assert (tmp_path / "down").stat().st_mode & 0o111 == 0  # a new file's default mode


def test_a_directory_goes_up_and_comes_back_with_r(sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub dir").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "top.txt").write_bytes(b"top")
    (tree / "sub dir" / "data.bin").write_bytes(ALL_BYTES * 100)
    (tree / "run.sh").write_bytes(b"#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    back = tmp_path / "back"

    async def scenario(client: Client) -> tuple[RunResult, RunResult, RunResult]:
        node = await one_node(client)
        refused = await client.copy([node], tree, "/tmp/tree-copy")
        up = await client.copy([node], tree, "/tmp/tree-copy", recursive=True)
        down = await client.copy([node], "/tmp/tree-copy", back, download=True, recursive=True)
        await remote(client, node, "rm -rf /tmp/tree-copy")
        return refused, up, down

    with pytest.raises(ConfigurationError, match="is a directory"):
        engine(sandbox, scenario)

    async def scenario_r(client: Client) -> tuple[RunResult, RunResult]:
        node = await one_node(client)
        up = await client.copy([node], tree, "/tmp/tree-copy", recursive=True)
        down = await client.copy([node], "/tmp/tree-copy", back, download=True, recursive=True)
        await remote(client, node, "rm -rf /tmp/tree-copy")
        return up, down

    up, down = engine(sandbox, scenario_r)
    assert up.ok and down.ok, [(r.output, r.reason) for r in (*up, *down)]
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*")) == [
        "empty",
        "run.sh",
        "sub dir",
        "sub dir/data.bin",
        "top.txt",
    ]
    assert (back / "sub dir" / "data.bin").read_bytes() == ALL_BYTES * 100
    assert (back / "run.sh").stat().st_mode & 0o111


def test_streams_stand_for_stdin_and_stdout(sandbox: Sandbox) -> None:
    data = ALL_BYTES * 500 + b"end"
    out = io.BytesIO()

    async def scenario(client: Client) -> tuple[RunResult, RunResult]:
        node = await one_node(client)
        up = await client.copy([node], io.BytesIO(data), "/tmp/from-stdin")
        down = await client.copy([node], "/tmp/from-stdin", out, download=True)
        await remote(client, node, "rm -f /tmp/from-stdin")
        return up, down

    up, down = engine(sandbox, scenario)
    assert up.ok and down.ok
    assert out.getvalue() == data


def test_many_nodes_get_the_file_and_failures_give_run_exit_statuses(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "conf"
    source.write_bytes(b"setting=1\n")

    async def scenario(client: Client) -> tuple[RunResult, RunResult, RunResult]:
        good = await client.copy(WEB, source, "/tmp/conf")
        check = await client.run(WEB, "cat /tmp/conf; rm -f /tmp/conf", record=False)
        bad = await client.copy(WEB, source, "/proc/nope/conf")
        return good, check, bad

    good, check, bad = engine(sandbox, scenario)
    assert len(good) >= 3 and good.exit_status == 0
    assert {r.output for r in check} == {b"setting=1\n"}
    assert bad.exit_status == 1 and {r.exit_code for r in bad} == {125}


def test_a_download_needs_exactly_one_node(sandbox: Sandbox, tmp_path: Path) -> None:
    async def scenario(client: Client) -> RunResult:
        return await client.copy(WEB, "/etc/hostname", tmp_path / "h", download=True)

    with pytest.raises(ConfigurationError, match="needs exactly one node"):
        engine(sandbox, scenario)


def test_a_source_that_fails_mid_transfer_leaves_nothing_at_the_destination(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The source cannot be read once the copy has started: the far end is told to stop,
    removes its temporary file, and the destination keeps what it had."""
    source = tmp_path / "vanishing"
    source.write_bytes(ALL_BYTES * 10_000)
    local = LocalSource.from_path(source, recursive=False)
    source.unlink()  # read when the far end is ready: too late
    target = targets(sandbox, LEGACY)[0]

    async def scenario(client: Client) -> tuple[RunResult, bytes]:
        await remote(client, target.node, "mkdir -p /tmp/dest && echo old > /tmp/dest/file")
        async with pool(sandbox) as connectors:
            result = await dispatch(connectors, [target], upload_command(local, "/tmp/dest/file"))
        listing = await remote(client, target.node, "ls -A /tmp/dest; cat /tmp/dest/file")
        await remote(client, target.node, "rm -rf /tmp/dest")
        return result, listing

    result, listing = engine(sandbox, scenario)
    (outcome,) = result
    assert outcome.exit_code == 125
    assert b"cannot read" in outcome.output and b"the data stream ended early" in outcome.output
    assert listing == b"file\nold\n"  # no temporary file, the old content


def test_a_big_copy_that_keeps_moving_outlasts_its_timeout(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A copy's timeout is the time it may go without moving data, so a file that takes
    several times the limit to send still arrives (a 4 GB heap dump at the default)."""
    data = os.urandom(40_000_000)  # seconds of transfer on this machine
    source = tmp_path / "big"
    source.write_bytes(data)

    async def scenario(client: Client) -> tuple[RunResult, bytes]:
        node = await one_node(client)
        result = await client.copy([node], source, "/tmp/big-file", timeout=1.0)
        digest = await remote(client, node, "sha256sum < /tmp/big-file; rm -f /tmp/big-file")
        return result, digest

    result, digest = engine(sandbox, scenario)
    assert result.ok, [(r.output, r.reason) for r in result]
    assert digest.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_an_upload_interrupted_midway_leaves_the_destination_as_it_was_and_no_temporary(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Ctrl-C (the run is cancelled) in the middle of an upload: the far end is
    interrupted through the terminal first, so it removes its partial file, and only
    then is the session terminated."""
    source = tmp_path / "big"
    source.write_bytes(os.urandom(30_000_000))  # far more than one chunk of transfer

    async def scenario(client: Client) -> tuple[RunResult, bytes]:
        node = await one_node(client)
        await remote(client, node, "mkdir -p /tmp/cut && echo old > /tmp/cut/file")
        run = None

        def cut(_node: str, done: int, _total: int | None) -> None:
            if done >= 3 * CHUNK_BYTES and run is not None:
                run.cancel()

        run = client.copy([node], source, "/tmp/cut/file", on_progress=cut)
        result = await run
        listing = await remote(client, node, "ls -A /tmp/cut; cat /tmp/cut/file; rm -rf /tmp/cut")
        return result, listing

    result, listing = engine(sandbox, scenario)
    assert result.interrupted
    assert listing == b"file\nold\n"


def test_a_hung_upload_times_out_and_cleans_up_after_itself(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The far end hangs (here its temporary file is a FIFO nobody reads, planted where
    this copy's nonce puts it): nothing moves for the timeout, the copy fails as timed
    out, and the wrapper, interrupted, removes what it made."""
    source = tmp_path / "f"
    source.write_bytes(b"new")
    local = LocalSource.from_path(source, recursive=False)
    target = targets(sandbox, LEGACY)[0]
    nonce = "0123456789abcdef"
    plant = (
        f"mkdir -p /tmp/hang && echo old > /tmp/hang/file && mkfifo /tmp/hang/.ecsexec-{nonce}.part"
    )

    async def scenario(client: Client) -> tuple[RunResult, bytes]:
        await remote(client, target.node, plant)
        async with pool(sandbox) as connectors:
            command = upload_command(local, "/tmp/hang/file", nonce=nonce)
            options = DispatchOptions(timeout=0.5)
            result = await dispatch(connectors, [target], command, options=options)
        listing = await remote(
            client, target.node, "ls -A /tmp/hang; cat /tmp/hang/file; rm -rf /tmp/hang"
        )
        return result, listing

    result, listing = engine(sandbox, scenario)
    (outcome,) = result
    assert outcome.status is Status.TIMEOUT
    assert outcome.reason.startswith("no data moved for 0.5 s; ")
    assert listing == b"file\nold\n"


@pytest.fixture(scope="module")
def bare_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose one container has sh and coreutils but no base64 on its PATH."""
    home = tmp_path_factory.mktemp("bare")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "stty", "head", "cat", "mv", "rm", "chmod", "ls", "wc", "od", "mkdir"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "sha256sum").symlink_to(shutil.which("sha256sum") or "/usr/bin/sha256sum")
    topology = {
        "version": 1,
        "regions": {
            "us-east-1": {
                "clusters": [
                    {
                        "clusterName": "bare",
                        "services": [
                            {
                                "serviceName": "s",
                                "taskDefinition": "bare",
                                "desiredCount": 1,
                                "launchType": "FARGATE",
                                "enableExecuteCommand": True,
                            }
                        ],
                    }
                ]
            }
        },
        "taskDefinitions": [
            {
                "family": "bare",
                "networkMode": "awsvpc",
                "cpu": "256",
                "memory": "512",
                "requiresCompatibilities": ["FARGATE"],
                "containerDefinitions": [
                    {
                        "name": "app",
                        "image": "bare:1",
                        "workingDirectory": str(home),
                        "environment": [{"name": "PATH", "value": str(bin_dir)}],
                    }
                ],
            }
        ],
    }
    with Sandbox(topology=topology, initial_wait=0.05) as sb:
        yield sb


def test_without_base64_uploads_are_refused_clearly_and_downloads_use_od(
    bare_sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "f"
    source.write_bytes(ALL_BYTES * 30)

    async def scenario(client: Client) -> tuple[RunResult, RunResult]:
        node = await one_node(client, "ECS:Cluster-Name: bare")
        up = await client.copy([node], source, "/tmp/f")
        down = await client.copy([node], "/etc/hostname", tmp_path / "hostname", download=True)
        return up, down

    up, down = engine(bare_sandbox, scenario)
    (refused,) = up
    assert refused.exit_code == 125
    assert refused.output == (
        b"ecsexec: cannot copy to /tmp/f: base64 is not installed in the container\n"
    )
    assert down.ok, [(r.output, r.reason) for r in down]
    assert (tmp_path / "hostname").read_bytes() == Path("/etc/hostname").read_bytes()


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (Alpine's tools)")
def test_copies_work_with_busybox_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alpine images: busybox's sh, stty, head (stdio-buffered), base64 (no final newline)
    and od, on a real local PTY."""
    tools = tmp_path / "bin"
    tools.mkdir()
    subprocess.run(["busybox", "--install", "-s", str(tools)], check=True, timeout=30)
    monkeypatch.setenv("PATH", str(tools))
    data = random.Random(3).randbytes(CHUNK_BYTES + 1000) + ALL_BYTES
    source = tmp_path / "source"
    source.write_bytes(data)
    target = ContainerTarget("node-1", "c", "t", "app")
    copied: list[tuple[str, str]] = []
    up = upload_command(
        LocalSource.from_path(source, recursive=False),
        str(tmp_path) + "/",
        on_copied=lambda node, path: copied.append((node, path)),
    )(target)
    assert up.input_source is not None and up.output_filter is not None
    sent = dataclasses.replace(up, input_payload=b"".join(up.input_source()), input_source=None)
    out, code, _ = run_in_pty(sent, shell=str(tools / "sh"))
    sink = up.output_filter()
    assert (code, sink.feed(out), sink.finish(code)) == (0, b"", (b"", ""))
    assert copied == [("node-1", f"{tmp_path}/source")]
    assert (tmp_path / "source").read_bytes() == data
    back = tmp_path / "back"
    down = download_command(str(source), LocalDestination(back))(target)
    out, code, _ = run_in_pty(down, shell=str(tools / "sh"))
    assert down.output_filter is not None
    sink = down.output_filter()
    assert sink.feed(out) == b""
    assert sink.finish(code) == (b"", "")
    assert back.read_bytes() == data


# --- the far-end scripts on a real local PTY, with hostile paths ---------------------------

SHELLS = [pytest.param("/bin/sh", id="sh")] + [
    pytest.param(
        f"busybox:{tool}",
        id="busybox",
        marks=pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox"),
    )
    for tool in ("sh",)
]

# Names a shell would act on if they ever reached it unquoted, or printf as a format.
HOSTILE_NAMES = [
    "it's",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a\nb",
    "%s%n%d",
    "-rf",
    "*",
    "~",
    "ünï cødé ✓",
    "x'; } ; touch PWNED; y() { : '",
    "n" * 250,
]


def local_shell(spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shell to run far-end scripts with: the system's, or busybox's with only
    busybox's tools on PATH (Alpine)."""
    if not spec.startswith("busybox:"):
        return spec
    tools = tmp_path / "busybox-bin"
    if not tools.exists():
        tools.mkdir()
        subprocess.run(["busybox", "--install", "-s", str(tools)], check=True, timeout=30)
    monkeypatch.setenv("PATH", str(tools))
    return str(tools / "sh")


def upload_locally(
    shell: str, source: LocalSource, destination: str, *, preserve: bool = False
) -> tuple[bytes, int | None]:
    target = ContainerTarget("node-1", "c", "t", "app")
    up = upload_command(source, destination, preserve=preserve)(target)
    assert up.input_source is not None and up.output_filter is not None
    sent = dataclasses.replace(up, input_payload=b"".join(up.input_source()), input_source=None)
    out, code, _ = run_in_pty(sent, shell=shell)
    sink = up.output_filter()
    text = sink.feed(out)
    rest, problem = sink.finish(code)
    assert problem == ""
    return text + rest, code


def download_locally(
    shell: str, source: str, destination: LocalDestination
) -> tuple[bytes, int | None, str]:
    target = ContainerTarget("node-1", "c", "t", "app")
    down = download_command(source, destination)(target)
    out, code, _ = run_in_pty(down, shell=shell)
    assert down.output_filter is not None
    sink = down.output_filter()
    text = sink.feed(out)
    rest, problem = sink.finish(code)
    return text + rest, code, problem


@pytest.mark.parametrize("shell_spec", SHELLS)
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_remote_paths_are_only_ever_data(
    shell_spec: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a remote path holds, it names a file; no part of it runs, in the copy or in
    its error messages."""
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # relative names land here; so would a `touch PWNED`
    source = tmp_path / "source"
    source.write_bytes(ALL_BYTES)
    local = LocalSource.from_path(source, recursive=False)
    out, code = upload_locally(shell, local, name)
    assert (code, out) == (0, b"")
    assert sorted(p.name for p in work.iterdir()) == [name]
    assert (work / name).read_bytes() == ALL_BYTES
    back = tmp_path / "back"
    text, code, problem = download_locally(shell, name, LocalDestination(back))
    assert (text, code, problem) == (b"", 0, "")
    assert back.read_bytes() == ALL_BYTES
    # The failures print the path in their message: still data.
    missing = f"no-such-dir/{name}"
    out, code = upload_locally(shell, local, missing)
    assert code == 125
    assert out.startswith(f"ecsexec: cannot copy to {missing}: cannot write in ".encode())
    text, code, problem = download_locally(shell, missing, LocalDestination(tmp_path / "x"))
    assert code == 125
    assert text == f"ecsexec: cannot copy {missing}: no such file or directory\n".encode()
    assert sorted(p.name for p in work.iterdir()) == [name]
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("shell_spec", SHELLS)
def test_a_ctrl_c_in_the_middle_of_an_upload_removes_the_partial_file(
    shell_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    (work / "file").write_bytes(b"old")
    source = tmp_path / "source"
    source.write_bytes(random.Random(5).randbytes(3 * CHUNK_BYTES))
    target = ContainerTarget("node-1", "c", "t", "app")
    up = upload_command(LocalSource.from_path(source, recursive=False), str(work / "file"))(target)
    assert up.input_source is not None
    payload = b"".join(up.input_source())
    cut = dataclasses.replace(
        up, input_payload=payload[: len(payload) // 2] + INTERRUPT, input_source=None
    )
    out, code, _ = run_in_pty(cut, shell=shell)
    assert (out, code) == (f"ecsexec: cannot copy to {work}/file: interrupted\n".encode(), 125)
    assert sorted(p.name for p in work.iterdir()) == ["file"]
    assert (work / "file").read_bytes() == b"old"


def test_a_full_disk_in_the_container_is_named_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's base64 cannot write (here its output is /dev/full): the message
    says why, not that the data was damaged, and the destination keeps what it had."""
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    real = shutil.which("base64")
    assert real is not None
    (wrappers / "base64").write_text(
        f'#!/bin/sh\ncase "$1" in -d) exec {real} "$@" >/dev/full ;; esac\nexec {real} "$@"\n'
    )
    (wrappers / "base64").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    work = tmp_path / "work"
    work.mkdir()
    (work / "file").write_bytes(b"old")
    source = tmp_path / "source"
    source.write_bytes(ALL_BYTES * 100)
    local = LocalSource.from_path(source, recursive=False)
    out, code = upload_locally("/bin/sh", local, str(work / "file"))
    assert code == 125
    assert out.startswith(
        f"ecsexec: cannot copy to {work}/file: the data could not be decoded and written: ".encode()
    )
    assert out.endswith(b"base64: write error: No space left on device\n")
    assert out.count(b"\n") == 1
    assert sorted(p.name for p in work.iterdir()) == ["file"]
    assert (work / "file").read_bytes() == b"old"


def test_a_file_that_grows_while_it_is_read_comes_down_as_it_was_when_the_copy_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log being written to is the usual thing to download: the copy takes the bytes the
    file had when it was measured, consistently, however much is appended meanwhile.
    (The system shell: busybox's runs its own base64 whatever PATH says.)"""
    shell = "/bin/sh"
    log = tmp_path / "app.log"
    log.write_bytes(b"line one\n" * 1000)
    # base64 starts after the file was measured; it appends first, like a busy writer.
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    real = shutil.which("base64")
    assert real is not None
    (wrappers / "base64").write_text(f'#!/bin/sh\necho appended >> "{log}"\nexec {real} "$@"\n')
    (wrappers / "base64").chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    back = tmp_path / "back.log"
    text, code, problem = download_locally(shell, str(log), LocalDestination(back))
    assert (text, code, problem) == (b"", 0, "")
    assert back.read_bytes() == b"line one\n" * 1000
    assert log.read_bytes().endswith(b"appended\n")  # it did grow meanwhile


@pytest.mark.parametrize("shell_spec", SHELLS)
def test_devices_and_fifos_are_refused_at_once_not_read_forever(
    shell_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for special in ("/dev/zero", str(fifo)):
        text, code, _ = download_locally(shell, special, LocalDestination(tmp_path / "out"))
        assert code == 125
        assert (
            text
            == (
                f"ecsexec: cannot copy {special}: not a regular file"
                " (a device, FIFO or socket cannot be copied)\n"
            ).encode()
        )
    assert not (tmp_path / "out").exists()


def test_a_tree_with_links_out_of_it_comes_down_with_the_links_kept_as_links(
    tmp_path: Path,
) -> None:
    """Containers are full of absolute symlinks (/etc/localtime, /etc/mtab): `cp -r` keeps
    them as links, and so does a download."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a").write_bytes(b"a")
    (tree / "passwd").symlink_to("/etc/passwd")
    (tree / "up").symlink_to("../..")
    (tree / "rel").symlink_to("sub/a")
    back = tmp_path / "back"
    text, code, problem = download_locally("/bin/sh", str(tree), LocalDestination(back, None, True))
    assert (text, code, problem) == (b"", 0, "")
    assert os.readlink(back / "passwd") == "/etc/passwd"
    assert os.readlink(back / "up") == "../.."
    assert (back / "rel").read_bytes() == b"a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "tree"]  # no temporaries


def hostile_tar(path: Path, outside: Path) -> None:
    """An archive that plants a link to ``outside``, then writes a file through it."""
    with tarfile.open(path, "w") as tar:
        link = tarfile.TarInfo("./escape")
        link.type = tarfile.SYMTYPE
        link.linkname = str(outside)
        tar.addfile(link)
        inner = tarfile.TarInfo("./escape/planted")
        inner.size = 4
        tar.addfile(inner, io.BytesIO(b"evil"))


def test_a_hostile_archive_from_the_container_writes_nothing_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container is not trusted: its archive may try to write through a link. The
    download fails naming the member, and neither the destination nor anything outside
    it is written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    crafted = tmp_path / "crafted.tar"
    hostile_tar(crafted, outside)
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    # `tar -cf FILE -C DIR .`: the fake writes the crafted archive to FILE.
    (fake / "tar").write_text(f'#!/bin/sh\ncat "{crafted}" > "$2"\n')
    (fake / "tar").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    (tmp_path / "tree").mkdir()
    back = tmp_path / "back"
    text, code, problem = download_locally(
        "/bin/sh", str(tmp_path / "tree"), LocalDestination(back, None, True)
    )
    assert code == 0 and text == b""
    assert problem.startswith("cannot unpack ./escape/planted: ")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crafted.tar",
        "fake-bin",
        "outside",
        "tree",
    ]


def test_a_tree_with_a_fifo_is_refused_naming_it_and_nothing_is_written(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok").write_bytes(b"ok")
    os.mkfifo(tree / "pipe")
    back = tmp_path / "back"
    text, code, problem = download_locally("/bin/sh", str(tree), LocalDestination(back, None, True))
    assert code == 0 and text == b""
    assert problem == "cannot unpack ./pipe: a device or FIFO cannot be copied"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_a_read_only_directory_in_a_tree_still_comes_down_whole(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "ro").mkdir(parents=True)
    (tree / "ro" / "f").write_bytes(b"f")
    (tree / "ro").chmod(0o555)
    back = tmp_path / "back"
    try:
        text, code, problem = download_locally(
            "/bin/sh", str(tree), LocalDestination(back, None, True, preserve=True)
        )
        assert (text, code, problem) == (b"", 0, "")
        assert (back / "ro" / "f").read_bytes() == b"f"
        assert (back / "ro").stat().st_mode & 0o777 == 0o555
    finally:
        for ro in (tree / "ro", back / "ro"):
            if ro.exists():
                ro.chmod(0o755)


def test_a_link_to_a_directory_is_copied_as_the_directory_it_names(tmp_path: Path) -> None:
    """`ecsexec cp -r current node:/srv/app` where current -> releases/42, as scp -r does;
    links inside the tree stay links."""
    tree = tmp_path / "releases" / "42"
    tree.mkdir(parents=True)
    (tree / "app.py").write_bytes(b"print(42)\n")
    (tree / "latest").symlink_to("app.py")
    (tmp_path / "current").symlink_to(tree)
    local = LocalSource.from_path(tmp_path / "current", recursive=True)
    out, code = upload_locally("/bin/sh", local, str(tmp_path / "copy"))
    local.close()
    assert (code, out) == (0, b"")
    assert (tmp_path / "copy" / "app.py").read_bytes() == b"print(42)\n"
    assert os.readlink(tmp_path / "copy" / "latest") == "app.py"


class _BrokenStream(io.RawIOBase):
    def readinto(self, buffer: object) -> int:
        raise OSError(5, "Input/output error")


def test_a_stdin_that_fails_is_a_clear_error_and_leaves_no_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"^cannot read stdin: Input/output error$"):
        LocalSource.from_stream(_BrokenStream(), "stdin")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="unpacking as root is what restores owners")
@pytest.mark.parametrize("preserve", [False, True], ids=["plain", "preserve"])
def test_a_tree_lands_as_cp_r_would_write_it_unless_p(tmp_path: Path, preserve: bool) -> None:
    """The container's tar runs as root and restores what the archive says: without -p a
    laptop's uid and a set-user-ID bit must not come along (cp -r would not keep them)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    tool = tree / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    os.chown(tool, 4242, 4242)
    tool.chmod(0o4755)
    local = LocalSource.from_path(tree, recursive=True, preserve=preserve)
    out, code = upload_locally("/bin/sh", local, str(tmp_path / "copy"), preserve=preserve)
    local.close()
    assert (code, out) == (0, b"")
    landed = (tmp_path / "copy" / "tool").stat()
    if preserve:
        assert (landed.st_uid, landed.st_mode & 0o7777) == (4242, 0o4755)
    else:
        assert (landed.st_uid, landed.st_mode & 0o7777) == (0, 0o755)


def test_a_character_device_is_refused_as_scp_refuses_it(tmp_path: Path) -> None:
    """Reading /dev/zero to spool it for the nodes filled the local disk (29 GB in 15 s)."""
    for device in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(ConfigurationError, match=f"^{device} is not a regular file"):
            LocalSource.from_path(Path(device), recursive=False)


class _EndlessStream(io.RawIOBase):
    """`yes | ecsexec cp - ...`: data for ever; Ctrl-C comes after a few reads."""

    def __init__(self, interrupt: Callable[[], object]) -> None:
        self.interrupt = interrupt
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        if self.reads == 5:
            self.interrupt()
        buffer[:] = b"y" * len(buffer)
        return len(buffer)


def test_spooling_stdin_stops_when_interrupted_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stop = threading.Event()
    stream = _EndlessStream(stop.set)
    with pytest.raises(ConfigurationError, match=r"^cannot read stdin: interrupted$"):
        LocalSource.from_stream(stream, "stdin", stop=stop)  # type: ignore[arg-type]
    assert stream.reads == 5
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_stdin_is_spooled_ends_the_copy_with_nothing_started(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    async def scenario(client: Client) -> tuple[RunResult, int]:
        node = await one_node(client)
        loop = asyncio.get_running_loop()
        run = None

        def interrupt() -> None:
            assert run is not None
            loop.call_soon_threadsafe(run.cancel)

        stream = _EndlessStream(interrupt)
        run = client.copy([node], io.BufferedReader(stream), "/tmp/never")
        return await run, stream.reads

    result, reads = engine(sandbox, scenario)
    assert result.interrupted and result.exit_status == 130
    assert [r.status for r in result] == [Status.NOT_STARTED]
    assert reads < 1000  # it stopped reading
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", ["..", "/tmp/..", "/tmp/sub/.", "."])
def test_a_remote_path_with_no_name_cannot_land_outside_the_local_directory(
    source: str, tmp_path: Path
) -> None:
    """`cp -r node:/tmp/.. ./into` must not unpack into the parent of ./into, as joining
    the name `..` would."""
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(ConfigurationError, match="has no name of its own"):
        download_command(source, LocalDestination(into, None, True))
    download_command(source, LocalDestination(into / "named", None, True))  # a name: fine


def test_a_download_interrupted_midway_leaves_nothing_locally(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "big"
    source.write_bytes(os.urandom(30_000_000))
    into = tmp_path / "into"
    into.mkdir()
    (into / "big").write_bytes(b"old")

    async def scenario(client: Client) -> RunResult:
        node = await one_node(client)
        assert (await client.copy([node], source, "/tmp/big-down")).ok
        run = None

        def cut(_node: str, done: int, _total: int | None) -> None:
            if done >= 3 * CHUNK_BYTES and run is not None:
                run.cancel()

        run = client.copy([node], "/tmp/big-down", into, download=True, on_progress=cut)
        result = await run
        await remote(client, node, "rm -f /tmp/big-down")
        return result

    result = engine(sandbox, scenario)
    assert result.interrupted
    assert sorted(p.name for p in into.iterdir()) == ["big"]
    assert (into / "big").read_bytes() == b"old"


@pytest.mark.parametrize("shell_spec", SHELLS)
def test_replacing_a_file_keeps_its_mode_and_owner_as_cp_does(
    shell_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ecsexec cp deploy.sh node:/app/deploy.sh` must leave deploy.sh executable, and a
    config file the app's user owns must stay readable to it: cp writes into the file,
    keeping both; -p takes the source's mode instead."""
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    source = tmp_path / "source"
    source.write_bytes(b"new\n")
    source.chmod(0o600)
    local = LocalSource.from_path(source, recursive=False)
    for name, mode in (("tool", 0o751), ("conf", 0o640)):
        (work / name).write_bytes(b"old\n")
        (work / name).chmod(mode)
    if os.geteuid() == 0:
        os.chown(work / "conf", 4242, 4343)
    assert upload_locally(shell, local, str(work / "tool")) == (b"", 0)
    assert upload_locally(shell, local, str(work / "conf")) == (b"", 0)
    assert (work / "tool").read_bytes() == b"new\n"
    assert (work / "tool").stat().st_mode & 0o7777 == 0o751
    assert (work / "conf").stat().st_mode & 0o7777 == 0o640
    if os.geteuid() == 0:
        assert ((work / "conf").stat().st_uid, (work / "conf").stat().st_gid) == (4242, 4343)
    assert upload_locally(shell, local, str(work / "tool"), preserve=True) == (b"", 0)
    assert (work / "tool").stat().st_mode & 0o7777 == 0o600


@pytest.mark.parametrize("shell_spec", SHELLS)
def test_a_destination_that_is_a_link_is_written_through_as_cp_does(
    shell_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/etc/app/app.yml -> /config/app.yml: the file the link names gets the data, and
    the link stays a link (replacing it would detach the app from its real config)."""
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    real = tmp_path / "config"
    real.mkdir()
    (real / "app.yml").write_bytes(b"old\n")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "app.yml").symlink_to(real / "app.yml")
    source = tmp_path / "source"
    source.write_bytes(b"new\n")
    local = LocalSource.from_path(source, recursive=False)
    assert upload_locally(shell, local, str(etc / "app.yml")) == (b"", 0)
    assert os.readlink(etc / "app.yml") == str(real / "app.yml")
    assert (real / "app.yml").read_bytes() == b"new\n"
    assert sorted(p.name for p in real.iterdir()) == ["app.yml"]
    assert sorted(p.name for p in etc.iterdir()) == ["app.yml"]


@pytest.mark.parametrize("shell_spec", SHELLS)
def test_a_link_downloaded_with_p_gets_the_mode_of_the_file_it_names(
    shell_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link's own mode is 0777: taking it would make a private key world-writable."""
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    (tmp_path / "key").write_bytes(b"secret")
    (tmp_path / "key").chmod(0o600)
    (tmp_path / "link").symlink_to(tmp_path / "key")
    back = tmp_path / "back"
    result = download_locally(
        shell, str(tmp_path / "link"), LocalDestination(back, None, False, preserve=True)
    )
    assert result == (b"", 0, "")
    assert back.stat().st_mode & 0o7777 == 0o600


def test_a_local_destination_that_is_a_link_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "shared"
    real.mkdir()
    (real / "app.yml").write_bytes(b"old\n")
    (tmp_path / "app.yml").symlink_to(real / "app.yml")
    source = tmp_path / "remote.yml"
    source.write_bytes(b"new\n")
    result = download_locally("/bin/sh", str(source), LocalDestination(tmp_path / "app.yml"))
    assert result == (b"", 0, "")
    assert (tmp_path / "app.yml").is_symlink()
    assert (real / "app.yml").read_bytes() == b"new\n"


@pytest.mark.parametrize("shell_spec", SHELLS)
def test_a_proc_file_comes_down_as_one_consistent_reading(
    shell_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc and /sys files report size 0 and make up their content at each read
    (/proc/self/status differs for every reader; cgroup counters move): such a file is
    read once, into memory, and everything else is taken from that reading."""
    shell = local_shell(shell_spec, tmp_path, monkeypatch)
    back = tmp_path / "status"
    result = download_locally(shell, "/proc/self/status", LocalDestination(back))
    assert result == (b"", 0, "")
    assert back.read_bytes().startswith(b"Name:\t")


def test_what_is_spooled_or_packed_locally_has_no_name_to_leave_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forced exit (a third Ctrl-C, stdin that never ends) or a killed client runs no
    cleanup: the spooled stdin and the packed tree are unlinked files from the start."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"f")
    data = ALL_BYTES * 5000
    sources = [
        LocalSource.from_stream(io.BytesIO(data), "stdin"),
        LocalSource.from_path(tree, recursive=True),
    ]
    assert list(spool_dir.iterdir()) == []
    stdin, packed = sources
    assert b"".join(stdin.chunks()) == data and stdin.size == len(data)
    with tarfile.open(fileobj=io.BytesIO(b"".join(packed.chunks()))) as tar:
        assert sorted(tar.getnames()) == [".", "./f"]
    for source in sources:
        source.close()
