"""Reaching a running sandbox from outside its loop: the ``/_sandbox`` client and detached start.

docs/sandbox.md §1 and §12.

Used by the ``ecsexec sandbox`` commands and by ``Sandbox(process=True)``. Requests go to
127.0.0.1 only, bypass any proxy settings, and carry the control token as a bearer token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ecsexec.errors import SandboxError
from ecsexec.sandbox.state import StateDir
from ecsexec.sandbox.tls import client_context

START_TIMEOUT = 10.0  # docs/sandbox.md §1: --detach waits this long for /_sandbox/health
_POLL = 0.05
# What ``python -m`` runs for a detached sandbox: the ``ecsexec sandbox`` commands alone.
CHILD_MODULE = "ecsexec.cli.sandbox"


class ControlClient:
    def __init__(
        self, endpoint_url: str, token: str, *, ca_bundle: str | None = None, timeout: float = 10.0
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ca_bundle:
            handlers.append(urllib.request.HTTPSHandler(context=client_context(Path(ca_bundle))))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:  # never print the token
        return f"ControlClient({self.endpoint_url})"

    @classmethod
    def from_state(cls, state: StateDir, timeout: float = 10.0) -> ControlClient:
        info = state.read_info()
        if info is None:
            raise SandboxError(f"no sandbox is running with state dir {state.path}")
        return cls(
            info["endpoint_url"],
            state.read_token(),
            ca_bundle=info.get("ca_bundle"),
            timeout=timeout,
        )

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.endpoint_url}/_sandbox/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            exc.close()
            raise SandboxError(f"{method} /_sandbox/{path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SandboxError(
                f"cannot reach the sandbox at {self.endpoint_url}: {reason}"
            ) from None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "health")
        return result

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "info")
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "stats")
        return result

    def reset_stats(self) -> None:
        self.request("POST", "stats/reset", {})

    def sessions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "sessions")["sessions"]
        return result

    def reset(self) -> None:
        self.request("POST", "reset", {})

    def shutdown(self) -> None:
        self.request("POST", "shutdown", {})

    def set_faults(self, spec: str, session: str | None = None) -> None:
        body: dict[str, Any] = {"spec": spec}
        if session:
            body["session"] = session
        self.request("POST", "faults", body)

    def disconnect(self, session_id: str) -> None:
        self.request("POST", f"sessions/{session_id}/disconnect", {})

    def pause(self, session_id: str) -> None:
        self.request("POST", f"sessions/{session_id}/pause", {})

    def start_containers(self) -> int:
        """Start every running container's namespaces now (§12); how many."""
        # A few milliseconds per container, a few at a time: 1,000 take 1-2 s, more on a
        # loaded machine, so the usual 10 s would cut a big topology short.
        result: int = self.request("POST", "containers/start", {}, timeout=600.0)["containers"]
        return result

    def set_agent(self, task_id: str, container: str, last_status: str) -> None:
        self.request("POST", f"containers/{task_id}/{container}/agent", {"lastStatus": last_status})


def start_detached(
    args: list[str], state: StateDir, *, timeout: float = START_TIMEOUT
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``python -m ecsexec.cli.sandbox up ARGS`` in the background; wait for its health
    check. The child is the CLI's ``sandbox up`` (click lives in the CLI, never here); it is
    started by module name, so this package does not import the CLI.

    On failure the child is killed and the error carries the tail of ``sandbox.log``.
    """
    if state.locked_by_other():
        info = state.read_info() or {}
        raise SandboxError(
            f"a sandbox is already running with state dir {state.path}"
            + (f" (pid {info['pid']})" if "pid" in info else "")
        )
    state.create()
    start_offset = state.log_file.stat().st_size if state.log_file.exists() else 0
    with open(state.log_file, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE, "up", "--state-dir", str(state.path), *args],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise SandboxError(
                f"the sandbox exited with status {code} before it was ready:\n"
                + _new_log(state.log_file, start_offset)
            )
        current = state.read_info()
        if current is not None and current.get("pid") == proc.pid:
            try:
                ControlClient.from_state(state, timeout=2.0).health()
                return proc, current
            except SandboxError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise SandboxError(
                f"the sandbox did not answer /_sandbox/health within {timeout:g} s:\n"
                + _new_log(state.log_file, start_offset)
            )
        time.sleep(_POLL)


def _new_log(path: Path, offset: int, lines: int = 20) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) is not alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until_gone(state: StateDir, pid: int | None, timeout: float = 30.0) -> bool:
    """Wait until the sandbox released its state dir's lock and its process has exited."""
    deadline = time.monotonic() + timeout
    while state.locked_by_other() or (pid is not None and pid_alive(pid)):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True
