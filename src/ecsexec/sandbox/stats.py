"""Counters the sandbox keeps for ``GET /_sandbox/stats`` (docs/sandbox.md §12).

Every part of the sandbox increments these in place; nothing here does I/O. The event
loop is single-threaded, so plain ints suffice.

Counters (calls, sessions opened and closed, frames...) restart at a reset; gauges (the
sessions active now, the PTYs open now) describe the present and carry over, so a
session opened before a reset and ended after it never shows as -1 active.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

END_REASONS = (
    "exited",
    "terminated",
    "task_stopped",
    "idle_timeout",
    "limit",
    "handshake_failed",
    "agent_lost",
)


@dataclass
class ApiCounter:
    calls: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": dict(self.errors), "seconds": round(self.seconds, 6)}


@dataclass
class FrameCounter:
    relayed: int = 0
    bytes: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0
    disconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class SessionCounter:
    opened: int = 0
    closed: int = 0
    client_connects: int = 0
    resumes: int = 0
    by_end_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(END_REASONS, 0))
    carried: int = 0  # sessions active at the last reset

    @property
    def active(self) -> int:
        """Sessions running now (a gauge: those opened before a reset count too)."""
        return max(0, self.carried + self.opened - self.closed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "closed": self.closed,
            "active": self.active,
            "client_connects": self.client_connects,
            "resumes": self.resumes,
            "by_end_reason": dict(self.by_end_reason),
        }


@dataclass
class AgentCounter:
    output_bytes: int = 0
    retransmissions: int = 0
    not_ready: int = 0
    dup_reacks: int = 0
    discarded_during_handshake: int = 0
    kms_decrypts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ProcessCounter:
    main: int = 0  # started since the reset
    exec: int = 0  # started since the reset
    ptys_open: int = 0  # a gauge: open now

    def as_dict(self) -> dict[str, int]:
        return {**self.__dict__, "ptys_open": max(0, self.ptys_open)}


class Stats:
    """All sandbox counters. ``api[region][service][action]`` plus totals in ``as_dict``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Restart the counters; keep the gauges (active sessions, open PTYs)."""
        old_sessions = getattr(self, "sessions", None)
        old_processes = getattr(self, "processes", None)
        self.api: dict[str, dict[str, dict[str, ApiCounter]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(ApiCounter))
        )
        self.sessions = SessionCounter(carried=old_sessions.active if old_sessions else 0)
        self.frames = {"c2a": FrameCounter(), "a2c": FrameCounter()}
        self.agent = AgentCounter()
        self.processes = ProcessCounter(ptys_open=old_processes.ptys_open if old_processes else 0)
        self.protocol_warnings: list[dict[str, str]] = []
        self.loop_lag_samples: list[float] = []
        self._cpu_at_reset = time.process_time()

    def api_call(
        self, region: str, service: str, action: str, seconds: float, error: str | None = None
    ) -> None:
        counter = self.api[region][service][action]
        counter.calls += 1
        counter.seconds += seconds
        if error:
            counter.errors[error] += 1

    def session_ended(self, reason: str) -> None:
        self.sessions.closed += 1
        self.sessions.by_end_reason[reason] = self.sessions.by_end_reason.get(reason, 0) + 1

    def warn(self, session: str, code: str, detail: str) -> None:
        if len(self.protocol_warnings) < 1000:
            self.protocol_warnings.append({"session": session, "code": code, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        totals: dict[str, dict[str, dict[str, Any]]] = {}
        by_region: dict[str, Any] = {}
        for region, services in self.api.items():
            by_region[region] = {
                svc: {act: c.as_dict() for act, c in acts.items()} for svc, acts in services.items()
            }
            for svc, acts in services.items():
                for act, c in acts.items():
                    t = totals.setdefault(svc, {}).setdefault(
                        act, {"calls": 0, "errors": {}, "seconds": 0.0}
                    )
                    t["calls"] += c.calls
                    t["seconds"] = round(t["seconds"] + c.seconds, 6)
                    for code, n in c.errors.items():
                        t["errors"][code] = t["errors"].get(code, 0) + n
        lags = sorted(self.loop_lag_samples)

        def pct(p: float) -> float:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 3) if lags else 0.0

        return {
            "api": totals,
            "api_by_region": by_region,
            "sessions": self.sessions.as_dict(),
            "frames": {k: v.as_dict() for k, v in self.frames.items()},
            "agent": self.agent.as_dict(),
            "processes": self.processes.as_dict(),
            "protocol_warnings": list(self.protocol_warnings),
            "loop_lag_ms": {"p50": pct(0.5), "p99": pct(0.99)},
            "cpu_seconds": round(time.process_time() - self._cpu_at_reset, 3),
        }
