"""Input delivered through the exec channel: encoding, the wrapper on a real local PTY, and the
runner end to end on the sandbox (real websockets, real boto3)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import errno
import hashlib
import os
import pty
import random
import re
import select
import shlex
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.errors import Status
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import dispatch
from ecsexec.exec.results import CommandResult
from ecsexec.exec.runner import INTERRUPT, ContainerTarget, run_on_container
from ecsexec.exec.transfer import CHUNK_BYTES, LINE_CHARS, encode_input, posix_cksum
from ecsexec.exec.wrap import OutputCleaner, ReadyScanner, WrappedCommand, wrap
from ecsexec.sandbox import Sandbox
from tests.exec.sandbox_nodes import targets, with_pool

# Every byte value, including what a canonical-mode PTY would act on (^C ^D ^Z ^\ DEL).
ALL_BYTES = bytes(range(256))
# util-linux's, found before a test puts busybox's tools first on PATH.
SETSID = shutil.which("setsid") or "/usr/bin/setsid"


def run_in_pty(
    wrapped: WrappedCommand, *, shell: str = "/bin/sh", stall: float = 30
) -> tuple[bytes, int | None, int]:
    """Run the wrapper locally on a real PTY; send the input once the ready marker shows."""
    master, slave = pty.openpty()
    argv = shlex.split(wrapped.ecs_command)
    argv[0] = shell
    # As the agent does: a session of its own whose controlling terminal is the PTY, so
    # ^C becomes SIGINT. (Not a group leader yet, so setsid(1) execs without forking.)
    proc = subprocess.Popen(
        [SETSID, "--ctty", *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    os.set_blocking(master, False)
    scanner = ReadyScanner(wrapped)
    raw = bytearray()
    pending = b""
    try:
        while True:
            writers = [master] if pending else []
            readable, writable, _ = select.select([master], writers, [], stall)
            if not readable and not writable:
                raise TimeoutError("the wrapper stalled")
            if writable:
                pending = pending[os.write(master, pending[:4096]) :]
            if readable:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    break  # every slave holder is gone
                if not data:
                    break
                raw += data
                if scanner.feed(data):
                    pending = wrapped.input_payload
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # stalled: do not leave it running
        proc.wait(timeout=30)
    cleaner = OutputCleaner(wrapped)
    out = cleaner.feed(bytes(raw))
    rest, result = cleaner.finish()
    return out + rest, result.exit_code, proc.returncode


def test_any_bytes_arrive_intact_through_a_canonical_mode_pty() -> None:
    data = ALL_BYTES * 1000 + b"no final newline"
    command = 'sha256sum; wc -c < "$ECSEXEC_INPUT"; printf "%s\\n" "$ECSEXEC_INPUT"'
    out, code, rc = run_in_pty(wrap(command, stdin=data))
    digest, size, path = out.decode().split("\n")[:3]
    assert (code, rc) == (0, 0)
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()
    assert int(size) == len(data)
    assert not os.path.exists(path)  # the private directory is removed afterwards


@pytest.mark.e2e
def test_the_input_has_no_name_on_disk_while_the_command_runs() -> None:
    # Nothing a SIGKILL could leave behind: no regular file where the wrapper writes, only
    # $ECSEXEC_INPUT's symlink to the open descriptor. The data still reads back whole,
    # by name as often as wanted and on stdin.
    data = b"secure value\n" * 1000
    command = (
        'find "${ECSEXEC_INPUT%/*}" -type f; readlink "$ECSEXEC_INPUT";'
        ' cmp - "$ECSEXEC_INPUT" && cmp "$ECSEXEC_INPUT" "$ECSEXEC_INPUT" && echo same'
    )
    out, code, _ = run_in_pty(wrap(command, stdin=data))
    assert (out, code) == (b"/dev/fd/9\nsame\n", 0)


@pytest.mark.e2e
def test_a_ctrl_c_in_the_middle_of_the_input_ends_the_wrapper_cleanly(tmp_path: Path) -> None:
    """What the runner types when a run is interrupted while its input is going in: the
    wrapper stops at once, removes its private directory and says why, between markers."""
    wrapped = wrap("echo never", stdin=ALL_BYTES * 20_000)
    cut = dataclasses.replace(wrapped, input_payload=wrapped.input_payload[:50_000] + INTERRUPT)
    os.environ["TMPDIR"] = str(tmp_path)
    try:
        out, code, _ = run_in_pty(cut)
    finally:
        del os.environ["TMPDIR"]
    assert (out, code) == (b"ecsexec: input delivery failed: interrupted\n", 125)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (Alpine's tools)")
def test_input_arrives_in_a_container_with_busybox_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alpine images have busybox's shell, sed, head and base64. busybox sed reads a line
    # ahead of the one it works on, so a wrapper that stops reading at an end line waits
    # forever at the PTY for a line after it that never comes.
    subprocess.run(["busybox", "--install", "-s", str(tmp_path)], check=True, timeout=30)
    monkeypatch.setenv("PATH", str(tmp_path))
    data = ALL_BYTES * 100
    wrapped = wrap('sha256sum; wc -c < "$ECSEXEC_INPUT"', stdin=data)
    out, code, _ = run_in_pty(wrapped, shell=str(tmp_path / "sh"), stall=10)
    digest, size = out.split()[0], out.split()[-1]
    assert code == 0, out
    assert (digest.decode(), int(size)) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_corrupted_input_is_refused_before_the_command_runs() -> None:
    wrapped = wrap("echo ran", stdin=b"payload")
    bad = re.sub(rb"\n0 [0-9a-f]{64}", b"\n0 " + b"0" * 64, wrapped.input_payload)
    assert bad != wrapped.input_payload
    out, code, _ = run_in_pty(dataclasses.replace(wrapped, input_payload=bad))
    assert code == 125
    assert out == b"ecsexec: input delivery failed: SHA-256 differs (7 bytes expected)\n"


def test_without_a_terminal_nothing_is_sent_and_the_reason_is_given() -> None:
    wrapped = wrap("echo ran", stdin=b"x")
    done = subprocess.run(
        shlex.split(wrapped.ecs_command), input=b"", capture_output=True, check=False, timeout=30
    )
    assert done.returncode == 125
    assert wrapped.ready_marker not in done.stdout  # the client would never send
    cleaner = OutputCleaner(wrapped)
    out = cleaner.feed(done.stdout)
    rest, result = cleaner.finish()
    reason = b"cannot turn terminal echo off (no stty?)"
    assert out + rest == b"ecsexec: input delivery failed: " + reason + b"\n"
    assert result.exit_code == 125


def test_encoding_uses_only_inert_characters_in_short_lines() -> None:
    data = ALL_BYTES * 4000  # more than one chunk
    payload = encode_input(data)
    assert re.fullmatch(rb"[A-Za-z0-9+/= \n]+", payload)
    assert max(len(line) for line in payload.split(b"\n")) <= LINE_CHARS < 4095
    lines = payload.removesuffix(b"\n").split(b"\n")
    decoded, at = b"", 0
    while lines[at].isdigit() and lines[at] != b"0":  # a count, then that many lines
        count = int(lines[at])
        decoded += base64.b64decode(b"".join(lines[at + 1 : at + 1 + count]))
        at += 1 + count
    assert decoded == data and len(data) > CHUNK_BYTES
    assert lines[at:] == [
        b"0 %s %d %d" % (hashlib.sha256(data).hexdigest().encode(), posix_cksum(data), len(data))
    ]
    assert "__ECSEXEC_I_" not in wrap("true", stdin=b"").ecs_command  # printf builds it


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=3000))
def test_posix_cksum_matches_the_real_tool(data: bytes) -> None:
    real = subprocess.run(["cksum"], input=data, capture_output=True, check=True, timeout=10)
    crc, size = real.stdout.split()[:2]
    assert (posix_cksum(data), len(data)) == (int(crc), int(size))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.lists(st.integers(0, 200), max_size=6))
def test_the_ready_marker_is_found_across_any_chunking(noise: bytes, cuts: list[int]) -> None:
    wrapped = wrap("true", stdin=b"", nonce="0123456789abcdef")
    if wrapped.ready_marker in noise:
        return
    data = noise + b"\r\n" + wrapped.ready_marker + b"\r\n"
    points = sorted({c % (len(data) + 1) for c in cuts})
    scanner = ReadyScanner(wrapped)
    spans = zip([0, *points], [*points, len(data)], strict=True)
    hits = [scanner.feed(data[a:b]) for a, b in spans]
    assert hits.count(True) == 1


@pytest.mark.parametrize("node_filter", ["ECS:Service-Name: legacy", "ECS:Cluster-Name: secure"])
def test_large_binary_input_reaches_a_sandbox_container(sandbox: Sandbox, node_filter: str) -> None:
    data = random.Random(7).randbytes(200_000) + ALL_BYTES
    target = targets(sandbox, node_filter)[0]
    wrapped = wrap('sha256sum; echo "$1"', stdin=data)
    result = with_pool(sandbox, lambda p: run_on_container(p(target), target, wrapped, timeout=60))
    assert result.ok, result.reason
    assert result.output.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_dispatch_builds_each_targets_command(sandbox: Sandbox) -> None:
    chosen = targets(sandbox, "ECS:Service-Name: web ECS:Cluster-Name: demo")

    def command_for(target: ContainerTarget) -> WrappedCommand:
        return wrap("cat", stdin=target.node.encode())

    result = with_pool(sandbox, lambda p: dispatch(p, chosen, command_for, command="per node"))
    assert result.command == "per node"
    assert {name: r.output for name, r in result.results.items()} == {
        t.node: t.node.encode() for t in chosen
    }


@pytest.mark.parametrize("ending", ["timeout", "cancel"])
def test_no_file_keeps_the_input_after_the_session_is_killed(sandbox: Sandbox, ending: str) -> None:
    """Secure option values travel as input; a timeout or Ctrl-C kills the wrapper with
    SIGKILL (no trap runs), and still no file in the container may hold them."""
    half, other_half = "ecsexec-test-secret-", uuid.uuid4().hex
    secret = (half + other_half).encode()
    target = targets(sandbox, "ECS:Service-Name: legacy")[0]
    # The command runs only once the input arrived and was checked; it then keeps it open.
    wrapped = wrap("read line; echo started; exec sleep 60", stdin=secret + b"\n")
    # Asked in the container itself, whatever it shares with the host: every file under
    # where the wrapper writes (${TMPDIR:-/tmp}), /dev/shm and HOME that holds the secret.
    # The secret is put together by the shell, so no argument and no input file holds it.
    search = wrap(
        f'grep -rlF "$(printf %s {half} {other_half})" "${{TMPDIR:-/tmp}}" /dev/shm'
        ' "$HOME" 2>/dev/null; echo searched'
    )
    started = asyncio.Event()

    def on_output(_node: str, data: bytes, _held: bool) -> None:
        if b"started" in data:
            started.set()

    async def scenario(connectors: ConnectorPool) -> tuple[CommandResult | None, CommandResult]:
        run = run_on_container(
            connectors(target),
            target,
            wrapped,
            timeout=5 if ending == "timeout" else 60,
            on_output=on_output,
        )
        result: CommandResult | None = None
        if ending == "timeout":
            result = await run
        else:
            task = asyncio.create_task(run)
            await asyncio.wait_for(started.wait(), 30)
            task.cancel()  # what Ctrl-C does to a run
            with pytest.raises(asyncio.CancelledError):
                await task
        found = await run_on_container(connectors(target), target, search, timeout=30)
        return result, found

    result, found = with_pool(sandbox, scenario)
    if result is not None:
        assert result.status is Status.TIMEOUT and result.output == b"started\n"
    assert started.is_set()  # the input had arrived before the session was killed
    assert (found.exit_code, found.output) == (0, b"searched\n")
