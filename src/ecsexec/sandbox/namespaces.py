"""Containers isolated like containers: one PID, UTS and mount namespace per container.

Each sandbox container that runs anything gets, on first use, a long-lived init started as
``unshare --pid --fork --kill-child --mount-proc --uts --mount``.
Its forked child is PID 1 of the new PID namespace, with a fresh ``/proc``: ``cat`` with
SIGCHLD ignored, so the kernel reaps every orphan reparented to it. ``cat`` echoes a line
the sandbox writes to its stdin (proof that PID 1 is in place), then blocks on that pipe
for the container's life. The first spawn thread to join the new namespaces (below) then
sets the hostname and mounts an empty tmpfs on ``/tmp`` and ``/dev/shm``, binding the
directories the container must still see (its scratch directory, which is its HOME, and
the sandbox's shared directories) back in at the same paths, before anything runs there.

Every process started in the container (exec sessions and the main process) is forked by
a spawn thread that has joined the container's mount, UTS and PID namespaces with
``setns(2)``, so the spawned child is itself inside: its pid is the real
(host) pid of the session leader, and kill, exit status and the PTY work exactly as
without namespaces. Python 3.11 has no ``os.setns``, so libc's is called through ctypes.
Joining a mount namespace needs a thread that does not share its filesystem attributes,
so spawn threads are dedicated (``unshare(CLONE_FS)`` once each) and go back to the
sandbox's own namespaces after every spawn.

Killing PID 1 ends the PID namespace: the kernel kills every process still in it, and
unshare, which waits for PID 1, exits only then. That happens when the container's task
has stopped and its last exec'd process is gone, and when the sandbox resets or stops. If
the sandbox itself dies, PID 1's stdin closes and ``cat`` exits (no PR_SET_PDEATHSIG is
needed, which would also tie the container to the thread that started it); if unshare is
killed, ``--kill-child`` kills PID 1; the ``namespaces.json`` record lets the next start
sweep any survivor.

Needs root, or a sandbox running inside a user namespace that maps it to root (for
example under ``unshare --user --map-root-user``); :func:`probe` says why not otherwise.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from ecsexec.sandbox.process import DEFAULT_PATH, CannotStart, kill_recorded, start_time

__all__ = ["PRIVATE_DIRS", "ContainerNamespace", "Namespaces", "probe", "sweep"]

T = TypeVar("T")

# What a container gets of its own on top of the host's filesystem: empty tmpfs mounts.
PRIVATE_DIRS: Final = ("/tmp", "/dev/shm")
START_TIMEOUT: Final = 10.0  # the init normally says "ready" within a few milliseconds
HOSTNAME_MAX: Final = 64  # HOST_NAME_MAX on Linux

_CLONE_FS: Final = 0x00000200
_CLONE_NEWNS: Final = 0x00020000
_CLONE_NEWUTS: Final = 0x04000000
_CLONE_NEWPID: Final = 0x20000000
_MS_NOSUID: Final = 0x2
_MS_NODEV: Final = 0x4
_MS_BIND: Final = 0x1000
_MS_REC: Final = 0x4000
# The order a spawn thread joins in; PID last, as nsenter does.
_KINDS: Final = (("mnt", _CLONE_NEWNS), ("uts", _CLONE_NEWUTS), ("pid", _CLONE_NEWPID))

READY: Final = b"ready\n"


class _Libc:
    """``unshare``, ``setns`` and ``mount`` from libc, raising OSError like ``os`` does."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._unshare = libc.unshare
        self._unshare.argtypes = [ctypes.c_int]
        self._setns = libc.setns
        self._setns.argtypes = [ctypes.c_int, ctypes.c_int]
        self._mount = libc.mount
        self._mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def unshare(self, flags: int) -> None:
        self._check(self._unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int) -> None:
        self._check(self._setns(fd, nstype), "setns")

    def mount(self, source: str, target: str, fstype: str | None, flags: int, data: str) -> None:
        self._check(
            self._mount(
                source.encode(),
                target.encode(),
                fstype.encode() if fstype else None,
                flags,
                data.encode() if data else None,
            ),
            f"mount {target}",
        )


_LIBC: _Libc | None = None
_LIBC_LOCK = threading.Lock()


def _libc() -> _Libc:
    global _LIBC
    with _LIBC_LOCK:
        if _LIBC is None:
            _LIBC = _Libc()
        return _LIBC


_TOOLS: tuple[list[str], str | None] | None = None


def _tools() -> tuple[list[str], str | None]:
    """The init's argv prefix (unshare) and what is missing, if anything.

    Looked up once per process: two PATH searches per container start showed up in the
    1,000-node fan-out profile, and the answer does not change while the sandbox runs.
    """
    global _TOOLS
    if _TOOLS is None or _TOOLS[1] is not None:  # a missing tool is looked for again
        _TOOLS = _find_tools()
    return list(_TOOLS[0]), _TOOLS[1]


def _find_tools() -> tuple[list[str], str | None]:
    unshare = shutil.which("unshare", path=DEFAULT_PATH)
    if unshare is None:
        return [], "util-linux unshare is not installed"
    for tool in ("cat",):
        if shutil.which(tool, path=DEFAULT_PATH) is None:
            return [], f"{tool} is not installed"
    return [
        unshare,
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--mount-proc",
        "--uts",
        "--mount",
        "--",
    ], None


_REAPER: list[str] | None = None
_REAPER_LOCK = threading.Lock()


def _reaper() -> list[str]:
    """PID 1's argv: ``cat`` with SIGCHLD ignored, so orphans never stay zombies.

    ``cat`` echoes the READY line the sandbox writes to its stdin, which proves that PID 1
    runs its final program, then blocks on that pipe: when the sandbox dies the pipe closes,
    ``cat`` exits and the kernel kills the whole container. Coreutils ``env
    --ignore-signal`` (8.31+) sets the SIGCHLD disposition ``cat`` inherits; without it,
    bash's ``trap '' CHLD`` does (dash resets it); failing both, orphans stay zombies until
    the container stops.
    """
    global _REAPER
    with _REAPER_LOCK:
        if _REAPER is not None:
            return _REAPER
        env = shutil.which("env", path=DEFAULT_PATH) or "env"
        cat = shutil.which("cat", path=DEFAULT_PATH) or "cat"
        bash = shutil.which("bash", path=DEFAULT_PATH)
        try:
            ok = (
                subprocess.run(
                    [env, "--ignore-signal=CHLD", "true"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={"PATH": DEFAULT_PATH},
                    check=False,
                ).returncode
                == 0
            )
        except OSError:
            ok = False
        if ok:
            _REAPER = [env, "--ignore-signal=CHLD", cat]
        elif bash:
            _REAPER = [bash, "-c", f"trap '' CHLD; exec {cat}"]
        else:
            _REAPER = [cat]
        return _REAPER


class Namespaces:
    """The namespaced containers of one sandbox runtime, and the threads that spawn into them.

    ``record`` (``namespaces.json``) names every live init (unshare) for :func:`sweep` at
    the next start: one JSON line appended per start (``{"pid", "start"}``) and per end
    (``{"end": pid}``), compacted now and then. Rewriting the whole list at each start,
    under the lock, made a 1,000-container fan-out's starts O(N²) and one at a time.
    :meth:`close` kills them all and stops the threads.
    """

    def __init__(self, record: Path | None = None) -> None:
        self.record = record
        self.libc = _libc()
        self._host: dict[str, int] = {}
        for kind, _ in _KINDS:
            self._host[kind] = os.open(f"/proc/self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            min(32, (os.cpu_count() or 1) + 4),
            thread_name_prefix="sandbox-ns-spawn",
            initializer=self._thread_init,
        )
        self._lock = threading.Lock()
        self._live: dict[ContainerNamespace, None] = {}
        self._reaping: set[subprocess.Popen[bytes]] = set()  # killed inits not yet waited for
        self._closed = False
        self._record_fd: int | None = None  # the record, open for appending
        self._record_lines = 0

    @property
    def closing(self) -> bool:
        return self._closed

    def _thread_init(self) -> None:
        # setns(CLONE_NEWNS) refuses a thread that shares cwd/root with others.
        self.libc.unshare(_CLONE_FS)

    def container(self, hostname: str, keep: Iterable[str] = ()) -> ContainerNamespace:
        """A container's namespaces, started on first use (:meth:`ContainerNamespace.run`)."""
        return ContainerNamespace(self, hostname, keep)

    # -- used by ContainerNamespace ---------------------------------------------------------------

    def submit(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a spawn thread and wait for it; CannotStart once closing."""
        try:
            future = self._pool.submit(fn)
        except RuntimeError:
            raise CannotStart("the sandbox is stopping") from None
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise CannotStart("the sandbox is stopping") from None

    def enter(self, fds: dict[str, int]) -> None:
        """Join a container's namespaces (this spawn thread only)."""
        for kind, nstype in _KINDS:
            self.libc.setns(fds[kind], nstype)

    def leave(self) -> None:
        """Back to the sandbox's own namespaces, so a thread keeps no ended container alive.

        A sandbox inside a user namespace may not rejoin the host's (EPERM): the thread then
        stays where it is, which is harmless, since every spawn joins all three first.
        """
        for kind, nstype in _KINDS:
            with contextlib.suppress(OSError):
                self.libc.setns(self._host[kind], nstype)
        with contextlib.suppress(OSError):
            os.chdir("/")

    def started(self, ns: ContainerNamespace) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._live[ns] = None
            if ns.init_pid is not None:
                self._append({"pid": ns.init_pid, "start": ns.init_start})
            return True

    def ended(self, ns: ContainerNamespace) -> None:
        with self._lock:
            if ns in self._live:
                del self._live[ns]
                if ns.init_pid is not None:
                    self._append({"end": ns.init_pid})

    def reap(self, init: subprocess.Popen[bytes]) -> None:
        """Wait for a killed init on a spawn thread (here once the threads are stopping)."""
        with self._lock:
            self._reaping.add(init)

        def reap_it() -> None:
            _reap(init)
            with self._lock:
                self._reaping.discard(init)

        try:
            self._pool.submit(reap_it)
        except RuntimeError:
            reap_it()

    def _append(self, entry: dict[str, object]) -> None:
        """Add one line to the record (under the lock); compact it once mostly ends."""
        if self.record is None:
            return
        with contextlib.suppress(OSError):
            if self._record_lines > 2 * len(self._live) + 256:
                self._compact()
            if self._record_fd is None:
                self._record_fd = os.open(
                    self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            os.write(self._record_fd, json.dumps(entry).encode() + b"\n")
            self._record_lines += 1

    def _compact(self) -> None:
        """Rewrite the record as the live inits' start lines only."""
        assert self.record is not None
        lines = [
            json.dumps({"pid": ns.init_pid, "start": ns.init_start}) + "\n"
            for ns in self._live
            if ns.init_pid is not None
        ]
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        os.replace(tmp, self.record)
        if self._record_fd is not None:
            os.close(self._record_fd)
            self._record_fd = None
        self._record_lines = len(lines)

    def close(self) -> None:
        """Kill every container's processes, wait for the inits, stop the spawn threads."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        for ns in live:
            ns.kill(wait=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Reaps still queued were cancelled with the pool: an init never waited for would
        # stay a zombie (and warn "still running" when collected).
        with self._lock:
            pending, self._reaping = list(self._reaping), set()
        for init in pending:
            if init.returncode is None:
                _reap(init)
        for fd in self._host.values():
            os.close(fd)
        self._host.clear()
        with self._lock:
            if self._record_fd is not None:
                os.close(self._record_fd)
                self._record_fd = None
        if self.record is not None:
            self.record.unlink(missing_ok=True)


class ContainerNamespace:
    """One container's PID, UTS and mount namespaces; thread-safe.

    :meth:`run` starts the init on first use, then calls a function on a spawn thread
    that has joined the namespaces: every process it forks is in the container.
    """

    def __init__(self, owner: Namespaces, hostname: str, keep: Iterable[str]) -> None:
        self.owner = owner
        self.hostname = hostname[:HOSTNAME_MAX]
        self.keep = tuple(os.path.abspath(p) for p in keep)
        self._lock = threading.Lock()
        self._init: subprocess.Popen[bytes] | None = None
        self._pid1: int | None = None  # host pid of the init's child, PID 1 inside
        self.init_start: str | None = None  # unshare's start time (for the sweep record)
        self._fds: dict[str, int] = {}
        self._prepared = False  # private mounts and hostname in place (_prepare)
        self._users = 0
        self._retired = False
        self._closed = False

    @property
    def init_pid(self) -> int | None:
        """Host pid of ``unshare`` (PID 1 is its child)."""
        return self._init.pid if self._init is not None else None

    @property
    def closed(self) -> bool:
        return self._closed

    # -- running things inside ------------------------------------------------------------------

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a spawn thread inside the container; blocks, and starts the container
        on first use (so never call it from a spawn thread)."""
        try:
            fds = self._acquire()
        except OSError as exc:
            raise CannotStart(f"cannot start the container's namespaces: {exc}") from exc
        taken: list[bool] = []

        def inside() -> T:
            taken.append(True)
            try:
                self.owner.enter(fds)
            except OSError as exc:
                self.owner.leave()
                raise CannotStart(f"cannot enter the container's namespaces: {exc}") from exc
            finally:
                for fd in fds.values():
                    os.close(fd)
            try:
                if not self._prepared:
                    self._prepare()
                return fn()
            finally:
                self.owner.leave()

        try:
            return self.owner.submit(inside)
        finally:
            if not taken:  # never ran: the sandbox is stopping
                for fd in fds.values():
                    os.close(fd)

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen`` whose child starts inside the container."""
        return self.run(lambda: subprocess.Popen(args, **kwargs))

    def _acquire(self) -> dict[str, int]:
        """Copies of the namespace fds (a kill may close the originals meanwhile)."""
        with self._lock:
            if self._closed:
                raise CannotStart("the container has stopped")
            if self._init is None:
                self._start()
            return {kind: os.dup(fd) for kind, fd in self._fds.items()}

    # -- life cycle -----------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the init (under the lock); the first :meth:`run` prepares its namespaces.

        Not on a spawn thread: unshare would copy whatever namespaces the thread last
        joined.
        """
        argv, missing = _tools()
        if missing:
            raise CannotStart(f"cannot create the container's namespaces: {missing}")
        try:
            init = subprocess.Popen(
                [*argv, *_reaper()],
                stdin=subprocess.PIPE,  # held open by the sandbox for the container's life
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # unshare's complaint, if any, instead of READY
                env={"PATH": DEFAULT_PATH},
                cwd="/",
                close_fds=True,
                # No start_new_session: it costs ~2 ms per container (no vfork).
                bufsize=0,
            )
        except OSError as exc:
            raise CannotStart(f"cannot start the container's init: {exc}") from exc
        self._init = init
        try:
            self._await_ready(init)
            self._pid1 = _child_of(init.pid)
            self.init_start = start_time(init.pid)
            for kind, _ in _KINDS:
                name = "pid_for_children" if kind == "pid" else kind
                self._fds[kind] = os.open(f"/proc/{init.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            self._prepared = False
            if not self.owner.started(self):
                raise CannotStart("the sandbox is stopping")
        except BaseException:
            # Not closed: the next use tries again (a failure may be passing, e.g. EAGAIN).
            self._kill_locked(wait=True)
            self._init = None
            self._closed = self.owner.closing
            raise

    @staticmethod
    def _await_ready(init: subprocess.Popen[bytes]) -> None:
        assert init.stdin is not None and init.stdout is not None
        try:
            with contextlib.suppress(BrokenPipeError):
                init.stdin.write(READY)  # the pipe holds it until PID 1 reads it
            ready = _readable(init.stdout.fileno(), START_TIMEOUT)
            out = os.read(init.stdout.fileno(), 4096) if ready else b""
            if out != READY:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    init.wait(1.0 if ready else 0)  # unshare failed and is exiting
                if init.returncode is not None:
                    out += init.stdout.read()
                why = out.decode(errors="replace").strip()
                raise CannotStart(
                    "cannot create the container's namespaces: "
                    + (why.splitlines()[-1] if why else "the init did not start")
                )
        finally:
            init.stdout.close()

    def _prepare(self) -> None:
        """Private tmpfs mounts, the container's own directories, the hostname: once, by
        the first spawn thread to have joined the namespaces (before anything runs there).

        On that thread rather than one of its own: a thread started and joined per
        container cost the sandbox's event loop more than the mounts. A failure ends the
        container, and the next use starts it again (it may be passing, e.g. EAGAIN).
        """
        with self._lock:
            if self._prepared:
                return
            if self._closed or self._init is None:
                raise CannotStart("the container has stopped")
            try:
                self._prepare_here()
            except OSError as exc:
                self._kill_locked(wait=True)
                self._init = None
                self._closed = self.owner.closing
                raise CannotStart(f"cannot start the container's namespaces: {exc}") from exc
            self._prepared = True

    def _prepare_here(self) -> None:
        libc = self.owner.libc
        socket.sethostname(self.hostname)
        # Opened before /tmp is covered: the directories that must stay visible.
        kept = []
        for path in sorted(set(self.keep)):
            if _is_private(path) and path not in PRIVATE_DIRS:
                with contextlib.suppress(OSError):
                    kept.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
        try:
            for directory in PRIVATE_DIRS:
                if os.path.isdir(directory):
                    libc.mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=1777")
            for path, fd in kept:
                os.makedirs(path, mode=0o700, exist_ok=True)
                os.fchdir(fd)  # "." is the covered host directory: bind it back
                libc.mount(".", path, None, _MS_BIND | _MS_REC, "")
        finally:
            for _, fd in kept:
                os.close(fd)

    def retain(self) -> None:
        """A process was started in the container (see :meth:`release`)."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """A retained process has been reaped; the last one ends a retired container."""
        with self._lock:
            self._users -= 1
            done = self._retired and self._users <= 0
        if done:
            self.kill()

    def retire(self) -> None:
        """The task stopped: end the container once no retained process is left."""
        with self._lock:
            self._retired = True
            done = self._users <= 0
        if done:
            self.kill()

    def kill(self, *, wait: bool = False) -> None:
        """End the container now: the kernel kills every process in its PID namespace."""
        with self._lock:
            self._kill_locked(wait=wait)

    def _kill_locked(self, *, wait: bool) -> None:
        self._closed = True
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        init = self._init
        if init is None:
            return
        if init.returncode is None:
            # PID 1, not unshare: unshare, waiting for it, exits only once the kernel has
            # killed and reaped everything in the namespace, so reaping unshare proves it
            # empty. Unshare itself if PID 1 is unknown: --kill-child then kills PID 1.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._pid1 or init.pid, signal.SIGKILL)
        if init.stdin is not None:
            init.stdin.close()
        if wait:
            _reap(init)
        else:
            self.owner.reap(init)
        self.owner.ended(self)


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` becomes readable within ``timeout`` seconds.

    poll, not select: select refuses descriptors from 1024 up, and a sandbox with a few
    hundred sessions open (a PTY and a socket each) hands out such numbers; the
    ValueError then killed the session's agent, which never started its command.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _reap(init: subprocess.Popen[bytes]) -> None:
    """Wait for a killed init; unshare gets SIGKILL too if the namespace takes too long.

    Through a pidfd: ``Popen.wait(timeout)`` would poll.
    """
    try:
        pidfd = os.pidfd_open(init.pid)
    except OSError:  # already reaped, or no pidfd support
        init.wait()
        return
    try:
        exited = _readable(pidfd, START_TIMEOUT)
    finally:
        os.close(pidfd)
    if not exited:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(init.pid, signal.SIGKILL)
    init.wait()


def sweep(record: Path) -> int:
    """Kill the inits a previous sandbox recorded and that still run; how many.

    ``--kill-child`` takes each init's PID 1, and the kernel the rest of its container.
    """
    try:
        text = record.read_text()
    except OSError:
        return 0
    killed = kill_recorded(_live_entries(text), os.kill)
    record.unlink(missing_ok=True)
    return killed


def _live_entries(text: str) -> list[dict[str, object]]:
    """The record's inits that were started and not ended, in order. A line cut short by
    a crash (the last one) is skipped."""
    live: dict[object, dict[str, object]] = {}
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if "end" in entry:
            live.pop(entry["end"], None)
        elif "pid" in entry:
            live[entry["pid"]] = entry
    return list(live.values())


def _child_of(pid: int) -> int | None:
    """The one child of ``pid`` (unshare's forked child), or None if it cannot be told."""
    try:  # os-level: pathlib's parsing showed in the fan-out profile (once per container)
        fd = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY | os.O_CLOEXEC)
        try:
            children = os.read(fd, 4096).split()
        finally:
            os.close(fd)
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: look at every parent pid
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if stat.rsplit(")", 1)[1].split()[1] == str(pid):
                        children.append(entry.encode())
    return int(children[0]) if len(children) == 1 else None


def _is_private(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in PRIVATE_DIRS)


_PROBED: list[str | None] = []  # the one answer, once known
_PROBE_LOCK = threading.Lock()


def probe() -> str | None:
    """Why this host cannot give containers their own namespaces, or None if it can.

    Tries the real thing once per process: an init, the mounts, a spawn into it.
    """
    with _PROBE_LOCK:
        if not _PROBED:
            _PROBED.append(_probe())
        return _PROBED[0]


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"namespaces are a Linux feature (this is {sys.platform})"
    try:
        owner = Namespaces()
    except (OSError, AttributeError) as exc:
        return f"cannot use setns: {exc}"
    try:
        ns = owner.container("probe")
        ns.run(lambda: subprocess.run(["true"], env={"PATH": DEFAULT_PATH}, check=True))
    except (CannotStart, OSError, subprocess.CalledProcessError) as exc:
        return str(exc)
    finally:
        owner.close()
    return None
