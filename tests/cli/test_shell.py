"""`ecsexec shell NODE`: piped input, and a real terminal driven through a PTY."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

from ecsexec.sandbox import Sandbox
from tests.cli.test_run_cli import ECSEXEC, env_for

NODE_FILTER = "ECS:Service-Name: legacy"


def test_piped_input_runs_and_the_session_ends_when_the_shell_exits(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*ECSEXEC, "shell", NODE_FILTER, "-c", "sh"],
        input=b"echo $((6*7))\nexit 5\n",
        capture_output=True,
        env=env_for(sandbox, tmp_path),
        timeout=60,
        check=False,
    )
    assert result.returncode == 5, result.stderr  # the remote shell's own exit status
    assert b"42\r\n" in result.stdout
    assert b"Starting session" not in result.stdout  # banners belong to the drop-in only
    assert b"__ECSEXEC" not in result.stdout  # the status line is never shown


def test_a_command_exits_with_its_own_status_and_a_task_id_names_its_node(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = env_for(sandbox, tmp_path)
    listed = subprocess.run(
        [*ECSEXEC, "nodes", "-F", NODE_FILTER, "--format", "json"],
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    (attributes,) = json.loads(listed.stdout).values()
    result = subprocess.run(
        [*ECSEXEC, "shell", attributes["ECS:Task-ID"], "-c", "sh -c 'echo out; exit 4'"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 4, result.stderr
    assert result.stdout.replace(b"\r\n", b"\n") == b"out\n"


def test_ambiguous_node_is_a_usage_error(sandbox: Sandbox, tmp_path: Path) -> None:
    result = subprocess.run(
        [*ECSEXEC, "shell", "ECS:Service-Name: web"],
        capture_output=True,
        env=env_for(sandbox, tmp_path),
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert b"matches" in result.stderr and b"pick one" in result.stderr


def read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {needle!r}; got {seen[-300:]!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_interactive_terminal_in_raw_mode(sandbox: Sandbox, tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen(
        [*ECSEXEC, "shell", NODE_FILTER, "-c", "sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env_for(sandbox, tmp_path),
        start_new_session=True,
    )
    os.close(slave)
    try:
        os.write(master, b"stty size; echo $((6*7))\r")
        out = read_until(master, b"42\r\n")
        assert b"33 101\r\n" in out  # the local window size reached the remote PTY
        os.write(master, b"sh -c 'echo sleep''ing; exec sleep 30'\r")
        read_until(master, b"sleeping")
        os.write(master, b"\x03")  # Ctrl-C in raw mode reaches the remote process as 0x03
        os.write(master, b"echo after-$((1+1))\r")
        read_until(master, b"after-2")
        os.write(master, b"exit\r")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
