"""The web console's shared state: typed aiohttp ``AppKey`` objects and the server's settings.

Handlers reach the engine, the stores and the policy through these keys
(``request.app[ENGINE]``), never through module globals, so one process can serve
several apps (tests do) and each key says what type it holds.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

from ecsexec.app import Client
from ecsexec.jobs.model import Job
from ecsexec.store.history import History
from ecsexec.store.keys import KeyStore
from ecsexec.store.team import SIGN_IN_WINDOW, TeamStore
from ecsexec.web.acl import Policy

if TYPE_CHECKING:  # runtime imports would be circular: those modules read these keys
    from ecsexec.web.runs import RunManager
    from ecsexec.web.scheduler import Scheduler


@dataclass(frozen=True)
class ServerSettings:
    """How this server runs; the CLI builds it from its flags and ``[server]``."""

    state_dir: Path
    tls: bool = False  # cookies get Secure, responses HSTS
    session_hours: float = 12.0  # a session expires this long after sign-in
    # Sign-in throttling: this many failures in the window lock the key (one user from one
    # address, or one address for any user) until the window has passed.
    sign_in_failures: int = 5
    sign_in_failures_per_address: int = 30
    sign_in_window_s: float = SIGN_IN_WINDOW  # the team store counts failures over this
    inventory_ttl_s: float = 60.0  # the node inventory is rediscovered when older than this
    max_live_output: int = 8 * 1024 * 1024  # characters of output a run's live buffer keeps
    finished_runs_kept: int = 50  # finished runs whose live buffers stay in memory
    # How often an open terminal or event stream re-checks the credential it was opened
    # with: a user disabled (by the CLI, another process), a token revoked, a session
    # ended or expired, or a role changed closes it within this time.
    live_check_s: float = 15.0
    # Origins allowed besides the request's own (a reverse proxy's public address).
    extra_origins: frozenset[str] = field(default_factory=frozenset)
    # Networks of reverse proxies whose X-Forwarded-For names the client (sign-in
    # throttling and the audit log then see each user's own address, not the proxy's).
    trusted_proxies: tuple[str, ...] = ()


class LiveConnections:
    """Every open websocket and event stream, by user and by the credential (session or
    token digest) it was opened with, so signing out closes what that sign-in opened
    (Portainer #10186: a console must not outlive its session) and leaves the user's
    scripts, which stream with a token, alone."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[int, tuple[str, Callable[[], Awaitable[None]]]]] = {}
        self._ends_with_runs: set[int] = set()
        self._ids = itertools.count(1)

    def add(
        self,
        user: str,
        close: Callable[[], Awaitable[None]],
        *,
        ends_with_run: bool = False,
        credential: str = "",
    ) -> int:
        """Register ``close`` (closes one connection) for ``user``, opened with
        ``credential``; returns its handle.

        ``ends_with_run``: a run's event stream, which shutting down leaves to end by
        itself after the run's last event (shutdown ends every run first)."""
        handle = next(self._ids)
        self._by_user.setdefault(user, {})[handle] = (credential, close)
        if ends_with_run:
            self._ends_with_runs.add(handle)
        return handle

    def discard(self, user: str, handle: int) -> None:
        self._ends_with_runs.discard(handle)
        entries = self._by_user.get(user)
        if entries is not None:
            entries.pop(handle, None)
            if not entries:
                del self._by_user[user]

    def count(self, user: str) -> int:
        return len(self._by_user.get(user, {}))

    async def close_user(self, user: str, credential: str | None = None) -> int:
        """Close every connection of ``user`` (only those opened with ``credential``,
        when given); returns how many there were."""
        entries = self._by_user.get(user, {})
        chosen = [handle for handle, (used, _) in entries.items() if credential in (None, used)]
        closers = [entries[handle][1] for handle in chosen]
        for handle in chosen:
            self.discard(user, handle)
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
        return len(closers)

    async def close_all(self) -> None:
        """At shutdown: close every connection but run event streams (see :meth:`add`)."""
        for user, entries in list(self._by_user.items()):
            for handle, (_, close) in list(entries.items()):
                if handle in self._ends_with_runs:
                    continue
                self.discard(user, handle)
                with contextlib.suppress(Exception):
                    await close()


STORE: Final = web.AppKey("ecsexec.store", TeamStore)
POLICY: Final = web.AppKey("ecsexec.policy", Policy)
ENGINE: Final = web.AppKey("ecsexec.engine", Client)
RUNS: Final[web.AppKey[RunManager]] = web.AppKey("ecsexec.runs")
SETTINGS: Final = web.AppKey("ecsexec.settings", ServerSettings)
SCHEDULER: Final[web.AppKey[Scheduler | None]] = web.AppKey("ecsexec.scheduler")
JOB_LIBRARY: Final[web.AppKey[Callable[[], Sequence[Job]]]] = web.AppKey("ecsexec.job_library")
KEYSTORE: Final[web.AppKey[KeyStore | None]] = web.AppKey("ecsexec.keystore")
HISTORY: Final = web.AppKey("ecsexec.history", History)
LIVE: Final = web.AppKey("ecsexec.live", LiveConnections)
