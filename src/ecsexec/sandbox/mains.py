"""Container main processes (``sandbox.main``): start, log to ``main.log``, stop like ECS (§8.4).

Each main process leads its own process group (setsid) and dies with the sandbox through
``setpriv --pdeathsig KILL`` (no ``preexec_fn``: the sandbox runs in threaded processes).
Groups are also recorded in ``mains.json`` so the next start sweeps any survivor. The
executable is resolved with the data plane's ``process.resolve_executable``, on the
container's PATH, exactly as exec'd commands are.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ecsexec.sandbox.model import Container, Task
from ecsexec.sandbox.process import (
    CannotStart,
    resolve_executable,
    start_time,
    sweep_recorded,
)
from ecsexec.sandbox.stats import Stats

log = logging.getLogger("ecsexec.sandbox")
_SETPRIV = shutil.which("setpriv")


@dataclass(eq=False)
class MainProcess:
    container: Container
    popen: subprocess.Popen[bytes]
    exited: asyncio.Event
    pidfd: int | None = None


def sweep_leftovers(record: Path) -> int:
    """Kill process groups a previous sandbox recorded and that are still alive (§8.4)."""
    return sweep_recorded(record, os.killpg)


class MainProcesses:
    def __init__(
        self,
        *,
        stats: Stats,
        record: Path,
        env_for: Callable[[Container], dict[str, str]],
        cwd_for: Callable[[Container], str],
        log_dir_for: Callable[[Container], Path],
        on_exit: Callable[[Container, int], None],
        popen_for: Callable[[Container], Callable[..., subprocess.Popen[bytes]]] | None = None,
    ) -> None:
        self.stats = stats
        # How a container's process is started: subprocess.Popen, or inside its namespaces.
        self.popen_for = popen_for or (lambda c: subprocess.Popen)
        self.record = record
        self.env_for = env_for
        self.cwd_for = cwd_for
        self.log_dir_for = log_dir_for
        self.on_exit = on_exit
        self.running: dict[Container, MainProcess] = {}

    def _save(self) -> None:
        entries = [
            {"pid": m.popen.pid, "start": start_time(m.popen.pid)} for m in self.running.values()
        ]
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, self.record)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, task: Task) -> None:
        for c in task.containers:
            if c.sandbox.main and c not in self.running:
                self._spawn(c, c.sandbox.main)

    def _spawn(self, c: Container, argv: list[str]) -> None:
        loop = asyncio.get_running_loop()
        log_dir = self.log_dir_for(c)
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = self.env_for(c)
        cwd = self.cwd_for(c)
        with open(log_dir / "main.log", "ab") as out:
            try:
                path = resolve_executable(argv[0], env, cwd, distroless=c.sandbox.distroless)
                prefix = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
                popen = self.popen_for(c)(
                    [*prefix, path, *argv[1:]],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    close_fds=True,
                    start_new_session=True,
                )
            except (CannotStart, OSError) as exc:
                # Like a container whose entrypoint cannot start: it exits at once.
                out.write(f"CannotStartContainerError: {exc}\n".encode())
                loop.call_soon(self.on_exit, c, 127)
                return
        proc = MainProcess(c, popen, asyncio.Event())
        self.running[c] = proc
        self.stats.processes.main += 1  # processes started, like ``exec``
        self._save()
        try:
            proc.pidfd = os.pidfd_open(popen.pid)
            loop.add_reader(proc.pidfd, self._reap, proc)
        except OSError:
            loop.call_later(0.05, self._poll, proc)

    def _poll(self, proc: MainProcess) -> None:
        if proc.popen.poll() is None:
            asyncio.get_running_loop().call_later(0.05, self._poll, proc)
        else:
            self._reap(proc)

    def _reap(self, proc: MainProcess) -> None:
        code = proc.popen.poll()
        if code is None:
            return
        if proc.pidfd is not None:
            asyncio.get_running_loop().remove_reader(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
        if self.running.pop(proc.container, None) is not None:
            self._save()
        # ECS reports a signal death as 128 + signal number.
        exit_code = 128 - code if code < 0 else code
        proc.exited.set()
        self.on_exit(proc.container, exit_code)

    async def stop(self, task: Task, timeout: float) -> None:
        """SIGTERM every main group of ``task``, then SIGKILL after ``timeout`` (§8.4)."""
        procs = [p for c, p in list(self.running.items()) if c.task is task]
        await self._terminate(procs, timeout)

    async def stop_all(self, timeout: float = 0.0) -> None:
        await self._terminate(list(self.running.values()), timeout)
        self.record.unlink(missing_ok=True)

    async def _terminate(self, procs: list[MainProcess], timeout: float) -> None:
        if not procs:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            alive = [p for p in procs if not p.exited.is_set()]
            if not alive or (sig == signal.SIGTERM and timeout <= 0):
                continue
            for p in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.popen.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await asyncio.gather(*(p.exited.wait() for p in alive))
        for p in procs:
            if not p.exited.is_set():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
                self._reap(p)
        log.debug("stopped %d main process(es)", len(procs))
