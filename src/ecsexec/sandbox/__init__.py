"""The ecsexec sandbox, a local AWS region for ECS Exec; ``Sandbox`` is its Python API (§1).

::

    with Sandbox(topology=..., seed=..., faults=..., tls=..., process=False) as sb:
        sb.endpoint_url, sb.env, sb.stats(), sb.reset_stats(), sb.set_faults(...), sb.control.*

``process=False`` runs the sandbox on its own event loop in a background thread;
``process=True`` runs it as a child process (``python -m ecsexec.cli.sandbox up``), so it does
not share the client's GIL. Clients are built from ``sb.env``, never from host settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ecsexec.errors import EcsexecError, SandboxError

__all__ = ["Sandbox", "SandboxError"]

T = TypeVar("T")
_SETTINGS = (
    "agent_start_delay",
    "drain_timeout",
    "handshake_timeout",
    "idle_timeout",
    "token_ttl",
    "close_grace",
    "require_challenge_ack",
    "agent_loss",
    "credential_ttl",
    "imds_v1",
    "retention",
    "metadata_port",
    "verify_signatures",
    "run_main",
    "session_limit_mode",
)


class Sandbox:
    """A running sandbox; use as a context manager (see module docstring)."""

    def __init__(
        self,
        topology: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        tasks: int | None = None,
        seed: int | None = None,
        faults: str = "",
        tls: bool = False,
        initial_wait: float = 1.0,
        process: bool = False,
        state_dir: str | os.PathLike[str] | None = None,
        throttle: str = "",
        session_limit: int = 2,
        credentials: str = "keys",
        strict: bool = True,
        port: int = 0,
        namespaces: bool = True,
        share: Sequence[str | os.PathLike[str]] = (),
        **settings: Any,
    ) -> None:
        unknown = set(settings) - set(_SETTINGS)
        if unknown:
            raise TypeError(f"unknown Sandbox setting(s): {', '.join(sorted(unknown))}")
        self._topology = topology
        self._tasks = tasks
        self._seed = seed
        self._faults = faults
        self._tls = tls
        self._initial_wait = initial_wait
        self.process = process
        self._state_arg = Path(state_dir) if state_dir is not None else None
        self._throttle = throttle
        self._session_limit = session_limit
        self._credentials = credentials
        self._strict = strict
        self._port = port
        # Each container in its own PID, UTS and mount namespaces where the host allows it;
        # ``notices`` says when containers share the host's instead.
        self._namespaces = namespaces
        # Host directories that stay visible in every container (even under /tmp).
        self._share = [os.path.abspath(os.fspath(p)) for p in share]
        self._settings = settings
        self._tmp: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: dict[str, Any] = {}
        self._control: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state_dir(self) -> Path:
        if self._state_arg is not None:
            return self._state_arg
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="ecsexec-sandbox-")
        return Path(self._tmp)

    def _config(self) -> Any:
        from ecsexec.sandbox.runtime import SandboxConfig

        doc: dict[str, Any] | None = None
        file: str | None = None
        if isinstance(self._topology, Mapping):
            doc = dict(self._topology)
        elif self._topology is not None:
            file = os.fspath(self._topology)
        return SandboxConfig(
            state_dir=self.state_dir,
            topology=doc,
            topology_file=file,
            tasks=self._tasks,
            seed=self._seed,
            port=self._port,
            tls=self._tls,
            credentials=self._credentials,
            faults=self._faults,
            throttle=self._throttle,
            initial_wait=self._initial_wait,
            session_limit=self._session_limit,
            strict=self._strict,
            namespaces=self._namespaces,
            share=list(self._share),
            **self._settings,
        )

    def start(self) -> None:
        if self.process:
            self._start_process()
        else:
            self._start_thread()

    def _start_thread(self) -> None:
        from ecsexec.sandbox.server import SandboxServer

        config = self._config()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                server = SandboxServer(config)
                await server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._server = server
            self._loop = asyncio.get_running_loop()
            ready.set()
            await server.wait_stopped()

        self._thread = threading.Thread(
            target=lambda: asyncio.run(main()), name="ecsexec-sandbox", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._cleanup_tmp()
            raise failure[0]
        self._info = self._server.info()

    def _start_process(self) -> None:
        from ecsexec.sandbox import topology as topo
        from ecsexec.sandbox.control import start_detached
        from ecsexec.sandbox.state import StateDir

        state = StateDir(self.state_dir)
        state.create()
        args: list[str] = []
        if isinstance(self._topology, Mapping):
            path = state.path / "topology.yaml"
            path.write_text(topo.dump(dict(self._topology)))
            args += ["--topology", str(path)]
        elif self._topology is not None:
            args += ["--topology", os.fspath(self._topology)]
        if self._tasks is not None:
            args += ["--tasks", str(self._tasks)]
        if self._seed is not None:
            args += ["--seed", str(self._seed)]
        if self._faults:
            args += ["--faults", self._faults]
        if self._tls:
            args.append("--tls")
        if self._throttle:
            args += ["--throttle", self._throttle]
        args.append("--strict" if self._strict else "--no-strict")
        args.append("--namespaces" if self._namespaces else "--no-namespaces")
        if self._share:
            args += ["--share", os.pathsep.join(self._share)]
        args += [
            "--initial-wait",
            repr(float(self._initial_wait)),
            "--session-limit",
            str(self._session_limit),
            "--credentials",
            self._credentials,
            "--port",
            str(self._port),
        ]
        for key, value in self._settings.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                if key in ("verify_signatures", "run_main"):
                    if not value:
                        args.append(
                            "--no-verify-signatures" if key == "verify_signatures" else "--no-main"
                        )
                elif value:
                    args.append(flag)
            else:
                args += [flag, str(value)]
        try:
            self._proc, self._info = start_detached(args, state, timeout=30.0)
        except EcsexecError:
            self._cleanup_tmp()
            raise

    def stop(self) -> None:
        """Shut down, wait for every child process, and remove a temporary state dir."""
        try:
            if self._proc is not None:
                self._stop_process()
            elif self._thread is not None:
                self._stop_thread()
        finally:
            self._cleanup_tmp()

    def _stop_thread(self) -> None:
        loop, server, thread = self._loop, self._server, self._thread
        if loop is not None and server is not None:
            # The loop is already closed when POST /_sandbox/shutdown stopped the sandbox.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(server.request_stop)
        if thread is not None:
            thread.join(timeout=60)
            if thread.is_alive():
                raise SandboxError("the sandbox thread did not stop within 60 s")
        self._thread = self._loop = self._server = None

    def _stop_process(self) -> None:
        proc = self._proc
        assert proc is not None
        if proc.poll() is None:
            try:
                self.control.shutdown()
            except EcsexecError:
                proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- what clients need ----------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        """``sandbox.json``: pid, endpoint URLs, regions, account, TLS flag, start time."""
        return dict(self._info)

    @property
    def endpoint_url(self) -> str:
        url: str = self._info["endpoint_url"]
        return url

    @property
    def regions(self) -> list[str]:
        return list(self._info["regions"])

    @property
    def notices(self) -> list[str]:
        """Why parts of the topology are degraded (e.g. no ``java`` for demo/orders)."""
        return list(self._info.get("notices") or [])

    @property
    def env(self) -> dict[str, str]:
        """The variables ``eval "$(ecsexec sandbox env)"`` would set (§9.4)."""
        from ecsexec.sandbox.state import env_vars

        return env_vars(self._info)[0]

    @property
    def control(self) -> Any:
        """A ``ControlClient`` for ``/_sandbox`` (health, sessions, reset, faults, agent...)."""
        if self._control is None:
            from ecsexec.sandbox.control import ControlClient
            from ecsexec.sandbox.state import StateDir

            self._control = ControlClient.from_state(StateDir(self.state_dir))
        return self._control

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control.stats()
        return result

    def reset_stats(self) -> None:
        self.control.reset_stats()

    def start_containers(self) -> int:
        """Start every running container's namespaces now, as ECS has its containers running
        before anyone execs into them (§12); how many. Without it each starts at its first
        exec, which then includes the container's creation."""
        started: int = self.control.start_containers()
        return started

    def set_faults(self, spec: str, session_id: str | None = None) -> None:
        """Replace the fault plan (``""`` clears it), globally or for one session (§12)."""
        self.control.set_faults(spec, session_id)

    # -- in-process access (process=False only) ---------------------------------------------------

    @property
    def server(self) -> Any:
        """The running ``SandboxServer`` (thread mode only): for tests that inspect state."""
        if self._server is None:
            raise SandboxError("server access needs a running Sandbox(process=False)")
        return self._server

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the sandbox's loop thread and return its result (thread mode)."""
        loop = self._loop
        if loop is None:
            raise SandboxError("call() needs a running Sandbox(process=False)")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)
