"""Fires scheduled jobs (``schedule:`` in a job file) on the server, never twice for one fire.

The :class:`Scheduler` sleeps until the next fire time of any enabled schedule, then, for
each job that is due, *claims* the fire in the team store before starting it
(:meth:`ecsexec.store.team.TeamStore.claim_schedule_fire`: a UNIQUE (job, fire time) row).
Only the claim that lands starts the job, so two servers on one database, or a server
restarted in the middle of a minute, never run one fire twice. It re-reads the job library
at least every ``poll`` seconds, so edited job files take effect without a restart.

Missed runs. A fire is missed when no scheduler was running at its time (the server was
down, or the machine suspended), or while the job's schedule was disabled. When the
scheduler next looks at a job it finds the fires since the job's last claimed fire:

- the most recent of them runs once, late, if it is at most ``grace`` old (5 minutes by
  default), so a quick restart loses nothing;
- every other one is skipped: a backlog never turns into a burst of runs. The skipped fires
  are recorded once per job in the audit log as ``schedule-missed`` (outcome ``failed``,
  user ``scheduler``) with how many, the first and the last.

A job seen for the first time (new, or first start of the server) has no missed fires.
Time comes from the injected ``now`` and ``sleep`` (tests drive a fake clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from ecsexec.jobs.model import Job
from ecsexec.jobs.schedule import Schedule
from ecsexec.store.team import TeamStore, utc_text

log = logging.getLogger(__name__)

DEFAULT_GRACE: Final = timedelta(minutes=5)
DEFAULT_POLL: Final = 60.0  # seconds between looks at the job library when nothing is due
MAX_SCAN: Final = 10_000  # missed fires counted one by one before "more than"
AUDIT_USER: Final = "scheduler"
AUDIT_SOURCE: Final = "scheduler"

Fire = Callable[[Job, datetime], Awaitable[None]]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Due:
    """What one look at one job decided (returned by :meth:`Scheduler.tick`, for tests)."""

    job: str
    fire_at: datetime | None  # the fire started now, if any
    missed: int  # fires skipped (a lower bound when ``more``)
    more: bool = False


class Scheduler:
    """Runs enabled job schedules; see the module docstring for claims and missed runs."""

    def __init__(
        self,
        store: TeamStore,
        jobs: Callable[[], Sequence[Job]],
        fire: Fire,
        *,
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        grace: timedelta = DEFAULT_GRACE,
        poll: float = DEFAULT_POLL,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._fire = fire
        self._now = now
        self._sleep = sleep
        self.grace = grace
        self.poll = poll
        self._since: dict[str, datetime] = {}  # per job: fires up to here are handled
        self._running: set[asyncio.Task[None]] = set()

    # --- what the pages show ----------------------------------------------------------------

    def scheduled_jobs(self) -> list[Job]:
        return [job for job in self._jobs() if job.scheduled]

    def upcoming(self) -> list[tuple[Job, datetime]]:
        """Each enabled scheduled job with its next fire time, soonest first."""
        now = self._now()
        found = []
        for job in self.scheduled_jobs():
            assert job.schedule is not None
            at = job.schedule.next_after(now)
            if at is not None:
                found.append((job, at))
        return sorted(found, key=lambda pair: pair[1])

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Fire due jobs until cancelled; a started fire is cancelled with it."""
        try:
            while True:
                await self.tick()
                await self._sleep(self.delay())
        finally:
            for task in list(self._running):
                task.cancel()
            for task in list(self._running):
                with contextlib.suppress(BaseException):
                    await task

    def delay(self) -> float:
        """Seconds until the next fire of any job, at most ``poll``."""
        upcoming = self.upcoming()
        if not upcoming:
            return self.poll
        wait = (upcoming[0][1] - self._now()).total_seconds()
        return min(self.poll, max(0.0, wait))

    async def tick(self) -> list[Due]:
        """Handle every job that is due now; returns what was decided for each."""
        now = self._now()
        decided = []
        for job in self.scheduled_jobs():
            due = self._look(job, now)
            if due is not None:
                decided.append(due)
        await asyncio.sleep(0)  # let the fires just started begin
        return decided

    def _look(self, job: Job, now: datetime) -> Due | None:
        assert job.schedule is not None
        key = job.path
        since = self._since.get(key)
        if since is None:
            last = self._store.last_schedule_fire(key)
            since = datetime.fromisoformat(last) if last else now
        self._since[key] = max(since, now)
        cutoff = now - self.grace
        older = _scan(job.schedule, since, cutoff)  # too late to run
        recent = _scan(job.schedule, max(since, cutoff), now)  # the latest of these runs
        if not older.count and not recent.count:
            return None
        target = recent.last
        missed = older.count + max(0, recent.count - 1)
        more = older.more or recent.more
        first_missed = older.first or (recent.first if recent.count > 1 else None)
        last_missed = recent.before_last if recent.count > 1 else older.last
        claim_at = target or older.last or cutoff
        if not self._store.claim_schedule_fire(key, utc_text(claim_at)):
            return Due(key, None, 0)  # another scheduler (or an earlier life of this one) has it
        if missed:
            self._store.audit(
                AUDIT_USER,
                "schedule-missed",
                key,
                "failed",
                AUDIT_SOURCE,
                {
                    "missed": f"more than {missed}" if more else str(missed),
                    "first": utc_text(first_missed) if first_missed else "",
                    "last": utc_text(last_missed) if last_missed else "",
                    "schedule": job.schedule.expression,
                    "policy": f"the latest fire runs if at most {_seconds(self.grace)} late",
                },
            )
        if target is not None:
            task = asyncio.get_running_loop().create_task(self._start(job, target))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return Due(key, target, missed, more)

    async def _start(self, job: Job, fire_at: datetime) -> None:
        try:
            await self._fire(job, fire_at)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one job's failure must not stop the schedule
            log.warning("scheduled job %s (%s) failed to start: %s", job.path, fire_at, exc)
            self._store.audit(
                AUDIT_USER,
                "schedule-fire",
                job.path,
                "failed",
                AUDIT_SOURCE,
                {"fire_at": utc_text(fire_at), "error": f"{type(exc).__name__}: {exc}"[:500]},
            )


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():g} s"


@dataclass(frozen=True)
class _Scan:
    count: int = 0
    first: datetime | None = None
    before_last: datetime | None = None
    last: datetime | None = None  # None when ``more``: the scan stopped early
    more: bool = False


def _scan(schedule: Schedule, since: datetime, until: datetime) -> _Scan:
    """The fires in (since, until], counted up to MAX_SCAN."""
    count = 0
    first = before_last = last = None
    moment = since
    while moment < until:
        fire = schedule.next_after(moment)
        if fire is None or fire > until:
            break
        count += 1
        first = first or fire
        before_last, last = last, fire
        if count >= MAX_SCAN:
            return _Scan(count, first, None, None, more=True)
        moment = fire
    return _Scan(count, first, before_last, last)
