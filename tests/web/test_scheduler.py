"""The scheduler: fires on time, claims before firing, and the missed-run policy (fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecsexec.jobs.model import Job, Step
from ecsexec.jobs.schedule import Schedule
from ecsexec.store.team import SqliteTeamStore
from ecsexec.web.scheduler import Scheduler

START = datetime(2026, 12, 5, 12, 0, 0, 500_000, tzinfo=UTC)
EVERY_MINUTE = "0 * * ? * *"


def job(name: str, expression: str = EVERY_MINUTE, *, enabled: bool = True) -> Job:
    return Job(
        name=name,
        group="ops",
        steps=(Step("exec", command="true"),),
        schedule=Schedule(expression),
        schedule_enabled=enabled,
    )


class Stop(Exception):
    """Ends a scheduler's run() once the fake clock reaches the end of a test."""


class World:
    """A fake clock whose sleep moves time, and a record of every fire."""

    def __init__(self, store: SqliteTeamStore, jobs: list[Job]) -> None:
        self.now = START
        self.end = START
        self.store = store
        self.jobs = jobs
        self.fired: list[tuple[str, datetime, datetime]] = []  # (job, fire time, clock)
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        if self.now >= self.end:
            raise Stop
        self.now = min(self.end, self.now + timedelta(seconds=seconds))
        await asyncio.sleep(0)

    async def fire(self, fired: Job, at: datetime) -> None:
        self.fired.append((fired.path, at, self.now))

    def scheduler(self, **kw: object) -> Scheduler:
        return Scheduler(
            self.store,
            lambda: self.jobs,
            self.fire,
            now=self.clock,
            sleep=self.sleep,
            **kw,  # type: ignore[arg-type]
        )

    def run_until(self, end: datetime, scheduler: Scheduler | None = None) -> Scheduler:
        self.end = end
        chosen = scheduler or self.scheduler()
        with pytest.raises(Stop):
            asyncio.run(chosen.run())
        return chosen

    def tick(self, scheduler: Scheduler) -> None:
        async def once() -> None:
            await scheduler.tick()

        asyncio.run(once())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteTeamStore]:
    with SqliteTeamStore(tmp_path / "history.sqlite3") as opened:
        yield opened


def at(minute: int, second: int = 0) -> datetime:
    return START.replace(microsecond=0) + timedelta(minutes=minute, seconds=second)


def test_each_fire_runs_once_at_its_time_and_sleeps_are_exact(store: SqliteTeamStore) -> None:
    world = World(store, [job("report")])
    world.run_until(at(5, 30))
    assert [(name, fire) for name, fire, _ in world.fired] == [
        ("ops/report", at(minute)) for minute in range(1, 6)
    ]
    assert all(clock == fire for _, fire, clock in world.fired)  # started on time, not late
    assert world.sleeps[0] == 59.5  # from 12:00:00.5 straight to 12:01:00
    assert store.last_schedule_fire("ops/report") == "2026-12-05T12:05:00.000+00:00"
    assert store.list_audit() == []


def test_two_schedulers_on_one_database_fire_once(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    first, second = SqliteTeamStore(path), SqliteTeamStore(path)
    fired: list[datetime] = []

    async def fire(_: Job, when: datetime) -> None:
        fired.append(when)

    now = [START]
    schedulers = [
        Scheduler(s, lambda: [job("backup")], fire, now=lambda: now[0]) for s in (first, second)
    ]

    async def both_tick() -> None:
        for scheduler in schedulers:
            await scheduler.tick()  # first sight: nothing due yet
        for minute in (1, 2, 3):
            now[0] = at(minute, 1)
            results = await asyncio.gather(*(s.tick() for s in schedulers))
            started = [d for result in results for d in result if d.fire_at is not None]
            assert len(started) == 1

    asyncio.run(both_tick())
    assert fired == [at(1), at(2), at(3)]
    first.close()
    second.close()


def test_a_restart_does_not_run_a_fire_again(store: SqliteTeamStore) -> None:
    world = World(store, [job("backup")])
    world.run_until(at(1, 30))
    assert [fire for _, fire, _ in world.fired] == [at(1)]
    # the server restarts within the same minute: a new scheduler, the same database
    world.run_until(at(2, 30))
    assert [fire for _, fire, _ in world.fired] == [at(1), at(2)]
    assert store.list_audit() == []


def test_a_fire_missed_within_the_grace_runs_once_late(store: SqliteTeamStore) -> None:
    world = World(store, [job("backup")])
    world.run_until(at(1, 30))
    world.now = at(3, 30)  # down from 12:01:30 to 12:03:30: 12:02 and 12:03 were missed
    world.run_until(at(3, 45))
    assert [(fire, clock) for _, fire, clock in world.fired] == [(at(1), at(1)), (at(3), at(3, 30))]
    (entry,) = store.list_audit()
    assert (entry.user, entry.action, entry.target, entry.outcome) == (
        "scheduler",
        "schedule-missed",
        "ops/backup",
        "failed",
    )
    assert entry.detail["missed"] == "1"
    assert entry.detail["first"] == entry.detail["last"] == "2026-12-05T12:02:00.000+00:00"


def test_a_long_outage_runs_only_the_latest_fire_within_the_grace(store: SqliteTeamStore) -> None:
    world = World(store, [job("backup")])
    world.run_until(at(1, 30))
    world.now = at(30, 30)  # grace 5 minutes: 12:26..12:30 are within it, 12:30 runs
    world.run_until(at(30, 40))
    assert [fire for _, fire, _ in world.fired] == [at(1), at(30)]
    (entry,) = store.list_audit()
    assert entry.detail["missed"] == "28"  # 12:02 .. 12:29
    assert entry.detail["first"] == "2026-12-05T12:02:00.000+00:00"
    assert entry.detail["last"] == "2026-12-05T12:29:00.000+00:00"


def test_fires_older_than_the_grace_are_skipped_and_audited_once(store: SqliteTeamStore) -> None:
    hourly = [job("rotate", "0 0 * ? * *")]
    world = World(store, hourly)
    world.run_until(at(60, 30))
    assert [fire for _, fire, _ in world.fired] == [at(60)]
    world.now = at(3 * 60 + 30)  # 14:00 and 15:00 missed; the grace ended at 15:05
    world.run_until(at(3 * 60 + 31))
    assert [fire for _, fire, _ in world.fired] == [at(60)]
    (entry,) = store.list_audit()
    assert (entry.detail["missed"], entry.detail["last"]) == (
        "2",
        "2026-12-05T15:00:00.000+00:00",
    )
    world.run_until(at(3 * 60 + 32))  # another restart: nothing more to report
    assert len(store.list_audit()) == 1


def test_a_job_seen_for_the_first_time_has_missed_nothing(store: SqliteTeamStore) -> None:
    world = World(store, [job("new", "0 0 0 ? * *")])
    world.run_until(at(10))
    assert world.fired == [] and store.list_audit() == []


def test_a_disabled_schedule_never_fires(store: SqliteTeamStore) -> None:
    world = World(store, [job("paused", enabled=False), job("on", "30 * * ? * *")])
    scheduler = world.run_until(at(2, 45))
    assert [(name, fire) for name, fire, _ in world.fired] == [
        ("ops/on", at(0, 30)),
        ("ops/on", at(1, 30)),
        ("ops/on", at(2, 30)),
    ]
    assert [j.path for j, _ in scheduler.upcoming()] == ["ops/on"]


def test_upcoming_lists_the_next_fire_of_each_job_soonest_first(store: SqliteTeamStore) -> None:
    world = World(store, [job("daily", "0 0 3 ? * *"), job("minutely"), job("none", enabled=False)])
    upcoming = world.scheduler().upcoming()
    assert [(j.path, when) for j, when in upcoming] == [
        ("ops/minutely", at(1)),
        ("ops/daily", datetime(2026, 12, 6, 3, tzinfo=UTC)),
    ]


def test_with_nothing_scheduled_it_looks_again_after_the_poll_interval(
    store: SqliteTeamStore,
) -> None:
    world = World(store, [])
    scheduler = world.scheduler(poll=42.0)
    assert scheduler.delay() == 42.0
    world.jobs.append(job("late-addition"))
    assert scheduler.delay() == 42.0  # 12:01 is 59.5 s away: the poll comes first
    world.now = at(0, 30)
    assert scheduler.delay() == 30.0


def test_a_fire_that_fails_is_audited_and_the_schedule_goes_on(store: SqliteTeamStore) -> None:
    calls: list[datetime] = []

    async def failing(_: Job, when: datetime) -> None:
        calls.append(when)
        raise RuntimeError("option 'env' is required")

    world = World(store, [job("broken")])
    scheduler = Scheduler(store, lambda: world.jobs, failing, now=world.clock, sleep=world.sleep)
    world.run_until(at(2, 30), scheduler)
    assert calls == [at(1), at(2)]
    entries = store.list_audit(action="schedule-fire")
    assert [e.detail["fire_at"] for e in entries] == [
        "2026-12-05T12:02:00.000+00:00",
        "2026-12-05T12:01:00.000+00:00",
    ]
    assert entries[0].outcome == "failed"
    assert entries[0].detail["error"] == "RuntimeError: option 'env' is required"


def test_cancelling_the_scheduler_cancels_a_fire_in_progress(store: SqliteTeamStore) -> None:
    cancelled: list[bool] = []

    async def scenario() -> None:
        began = asyncio.Event()

        async def slow(_: Job, __: datetime) -> None:
            began.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        now = [at(0, 59)]

        async def no_sleep(_: float) -> None:
            now[0] = at(1)
            await asyncio.sleep(0)

        scheduler = Scheduler(
            store, lambda: [job("slow")], slow, now=lambda: now[0], sleep=no_sleep
        )
        task = asyncio.create_task(scheduler.run())
        await began.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert cancelled == [True]
