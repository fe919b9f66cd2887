"""The team store: users, tokens, sessions, throttling, audit and schedule claims (SQLite)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecsexec.errors import NoSuchUserError, TeamStoreError, UserExistsError
from ecsexec.store import team
from ecsexec.store.history import History
from ecsexec.store.team import SqliteTeamStore, database_path, default_state_dir, open_team_store

START = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


# Every TeamStore implementation runs the tests that take this fixture: a PostgreSQL store
# adds its name here (and a way to start one), and must pass the same tests.
@pytest.fixture(params=["sqlite"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> Iterator[SqliteTeamStore]:
    assert request.param == "sqlite"
    with SqliteTeamStore(tmp_path / "state" / team.DATABASE_NAME, clock=clock) as opened:
        yield opened


def iso(moment: datetime) -> str:
    return moment.isoformat()


def test_users_are_added_listed_and_changed(store: SqliteTeamStore, clock: Clock) -> None:
    ana = store.add_user("ana", "admin", "hash-a")
    assert ana == team.User("ana", "admin", False, iso(START)[:19] + ".000+00:00", ana.created_at)
    store.add_user("bo", "viewer", "hash-b")
    assert [u.name for u in store.list_users()] == ["ana", "bo"]
    assert store.password_hash("ana") == "hash-a"
    assert store.get_user("nobody") is None and store.password_hash("nobody") is None

    clock.now += timedelta(hours=1)
    store.set_password("ana", "hash-a2")
    store.set_role("bo", "operator")
    changed = store.get_user("ana")
    assert changed is not None and changed.password_changed_at > changed.created_at
    assert store.password_hash("ana") == "hash-a2"
    assert store.get_user("bo") == team.User(
        "bo", "operator", False, ana.created_at, ana.created_at
    )


def test_a_disabled_user_has_no_password_sessions_or_tokens(store: SqliteTeamStore) -> None:
    store.add_user("ana", "operator", "hash")
    store.create_session("ana", "sid", "csrf", iso(START + timedelta(hours=8)), "10.0.0.1")
    store.add_token("ana", "ci", "digest", None)
    store.set_disabled("ana", True)
    user = store.get_user("ana")
    assert user is not None and user.disabled
    assert store.password_hash("ana") is None
    assert store.get_session("sid") is None
    assert store.token_by_hash("digest") is None
    store.set_disabled("ana", False)
    assert store.password_hash("ana") == "hash"
    assert store.token_by_hash("digest") is not None
    assert store.get_session("sid") is None  # disabling ended it for good


def test_user_mistakes_are_named(store: SqliteTeamStore) -> None:
    store.add_user("ana", "admin", "hash")
    with pytest.raises(UserExistsError, match="'ana' already exists"):
        store.add_user("ana", "viewer", "other")
    for change in (
        lambda: store.set_password("ghost", "h"),
        lambda: store.set_disabled("ghost", True),
        lambda: store.set_role("ghost", "admin"),
        lambda: store.add_token("ghost", "t", "d", None),
        lambda: store.create_session("ghost", "s", "c", iso(START), ""),
    ):
        with pytest.raises(NoSuchUserError, match="no user 'ghost'"):
            change()
    for bad in ("", " ana", "a/b", "x" * 65, "-ana", "ana\n"):
        with pytest.raises(TeamStoreError, match=r"user name .* is not valid"):
            store.add_user(bad, "admin", "hash")
    with pytest.raises(TeamStoreError, match="a role is required"):
        store.add_user("cy", "", "hash")


def test_a_new_password_ends_the_users_sessions(store: SqliteTeamStore) -> None:
    store.add_user("ana", "admin", "hash")
    store.add_user("bo", "admin", "hash")
    later = iso(START + timedelta(hours=1))
    store.create_session("ana", "s1", "c1", later, "")
    store.create_session("bo", "s2", "c2", later, "")
    store.set_password("ana", "new")
    assert store.get_session("s1") is None
    assert store.get_session("s2") is not None


def test_tokens_are_found_by_digest_until_revoked_or_expired(
    store: SqliteTeamStore, clock: Clock
) -> None:
    store.add_user("ana", "operator", "hash")
    store.add_user("bo", "operator", "hash")
    forever = store.add_token("ana", "ci", "d1", None)
    brief = store.add_token("ana", "laptop", "d2", iso(START + timedelta(minutes=5)))
    assert brief.expires_at == "2026-12-05T12:05:00.000+00:00"
    assert store.token_by_hash("d1") == forever
    assert store.token_by_hash("unknown") is None
    assert not store.revoke_token("bo", forever.id)  # only one's own tokens
    assert store.revoke_token("ana", forever.id)
    assert not store.revoke_token("ana", forever.id)
    assert store.token_by_hash("d1") is None
    assert store.token_by_hash("d2") is not None
    clock.now += timedelta(minutes=5)
    assert store.token_by_hash("d2") is None
    listed = store.list_tokens("ana")
    assert [(t.name, t.revoked) for t in listed] == [("ci", True), ("laptop", False)]
    assert store.list_tokens("bo") == []


def test_a_token_digest_is_unique(store: SqliteTeamStore) -> None:
    store.add_user("ana", "operator", "hash")
    store.add_token("ana", "a", "same", None)
    with pytest.raises(sqlite3.IntegrityError):
        store.add_token("ana", "b", "same", None)


def test_token_use_is_noted_at_most_once_a_minute(store: SqliteTeamStore, clock: Clock) -> None:
    store.add_user("ana", "operator", "hash")
    token = store.add_token("ana", "ci", "d", None)
    store.touch_token(token.id)
    first = store.token_by_hash("d")
    assert first is not None and first.last_used_at == "2026-12-05T12:00:00.000+00:00"
    clock.now += timedelta(seconds=30)
    store.touch_token(token.id)
    assert store.token_by_hash("d") == first
    clock.now += timedelta(seconds=31)
    store.touch_token(token.id)
    again = store.token_by_hash("d")
    assert again is not None and again.last_used_at == "2026-12-05T12:01:01.000+00:00"


def test_sessions_expire_and_can_be_ended(store: SqliteTeamStore, clock: Clock) -> None:
    store.add_user("ana", "admin", "hash")
    expires = START + timedelta(hours=8)
    made = store.create_session("ana", "sid", "csrf", iso(expires), "192.0.2.7")
    assert store.get_session("sid") == made
    assert made.source == "192.0.2.7" and made.csrf_token == "csrf"
    store.create_session("ana", "sid2", "csrf2", iso(expires), "")
    store.delete_session("sid")
    assert store.get_session("sid") is None
    clock.now = expires
    assert store.get_session("sid2") is None
    clock.now = START
    assert store.get_session("sid2") is not None
    assert store.delete_sessions_of("ana") == 1
    assert store.get_session("sid2") is None


def test_times_must_carry_a_timezone(store: SqliteTeamStore) -> None:
    store.add_user("ana", "admin", "hash")
    with pytest.raises(ValueError, match="timezone"):
        store.create_session("ana", "s", "c", "2026-12-05T12:00:00", "")
    with pytest.raises(ValueError, match="ISO-8601"):
        store.add_token("ana", "t", "d", "tomorrow")


def test_sign_in_failures_are_counted_per_key_within_the_window(store: SqliteTeamStore) -> None:
    t0 = 1_000_000.0
    assert [store.record_sign_in_failure("ana", t0 + i) for i in range(3)] == [1, 2, 3]
    assert store.record_sign_in_failure("10.0.0.9", t0) == 1
    assert store.sign_in_failures("10.0.0.9", t0 + 1) == 1
    assert store.sign_in_failures("ana", t0 + 3) == 3
    later = t0 + team.SIGN_IN_WINDOW + 1.5  # the first two have aged out
    assert store.sign_in_failures("ana", later) == 1
    assert store.record_sign_in_failure("ana", later) == 2
    store.clear_sign_in_failures("ana")
    assert store.sign_in_failures("ana", later) == 0
    assert store.sign_in_failures("10.0.0.9", t0 + 1) == 0  # aged-out rows were deleted


def test_audit_is_newest_first_filterable_and_pageable(
    store: SqliteTeamStore, clock: Clock
) -> None:
    for index in range(5):
        clock.now = START + timedelta(seconds=index)
        who = "ana" if index % 2 == 0 else "bo"
        store.audit(who, "run", f"cmd {index}", "ok", "10.0.0.1", {"nodes": str(index)})
    store.audit("bo", "acl-deny", "run_command", "denied", "10.0.0.2")
    entries = store.list_audit()
    assert [e.target for e in entries][:3] == ["run_command", "cmd 4", "cmd 3"]
    newest = entries[0]
    assert (newest.user, newest.outcome, newest.detail) == ("bo", "denied", {})
    assert entries[1].detail == {"nodes": "4"}
    assert [e.target for e in store.list_audit(user="ana")] == ["cmd 4", "cmd 2", "cmd 0"]
    assert [e.user for e in store.list_audit(action="acl-deny")] == ["bo"]
    page = store.list_audit(limit=2, before_id=entries[1].id)
    assert [e.target for e in page] == ["cmd 3", "cmd 2"]
    assert store.list_audit(limit=2, before_id=page[-1].id, user="bo")[0].target == "cmd 1"
    with pytest.raises(ValueError, match="one of ok, denied, failed"):
        store.audit("ana", "run", "x", "maybe", "")


def test_a_schedule_fire_is_claimed_once(store: SqliteTeamStore) -> None:
    assert store.last_schedule_fire("ops/backup") is None
    assert store.claim_schedule_fire("ops/backup", "2026-12-05T12:00:00+00:00")
    # the same instant written another way is the same fire
    assert not store.claim_schedule_fire("ops/backup", "2026-12-05T13:00:00+01:00")
    assert store.claim_schedule_fire("ops/other", "2026-12-05T12:00:00+00:00")
    assert store.claim_schedule_fire("ops/backup", "2026-12-05T12:30:00+00:00")
    assert store.last_schedule_fire("ops/backup") == "2026-12-05T12:30:00.000+00:00"


def test_old_claims_are_dropped_but_never_reclaimable_within_a_day(
    store: SqliteTeamStore,
) -> None:
    first = START
    assert store.claim_schedule_fire("job", iso(first))
    assert store.claim_schedule_fire("job", iso(first + team.CLAIMS_KEPT))
    assert not store.claim_schedule_fire("job", iso(first + team.CLAIMS_KEPT))
    assert not store.claim_schedule_fire("job", iso(first))  # exactly a day back: still kept
    assert store.claim_schedule_fire("job", iso(first + team.CLAIMS_KEPT * 2))
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT fire_at FROM schedule_fires ORDER BY fire_at").fetchall()
    assert [r[0][:10] for r in rows] == ["2026-12-06", "2026-12-07"]


def test_two_servers_racing_on_one_file_never_claim_a_fire_twice(tmp_path: Path) -> None:
    path = tmp_path / team.DATABASE_NAME
    stores = [SqliteTeamStore(path) for _ in range(2)]
    fires = [iso(START + timedelta(minutes=i)) for i in range(40)]
    won: list[str] = []
    lock = threading.Lock()

    def claim_all(store: SqliteTeamStore) -> None:
        for fire in fires:
            if store.claim_schedule_fire("job", fire):
                with lock:
                    won.append(fire)

    threads = [threading.Thread(target=claim_all, args=(s,)) for s in stores * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(won) == sorted(fires)  # every fire claimed, none twice


def test_it_shares_the_history_database_and_survives_a_reopen(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    with History(path) as history:
        run_id = history.start(kind="run", command="true", nodes=["a"])
    store = open_team_store(path)
    store.add_user("ana", "admin", "hash")
    store.close()
    with History(path) as history:
        assert history.run(run_id) is not None
        assert history.schema_version > 0
    reopened = open_team_store(path)
    assert [u.name for u in reopened.list_users()] == ["ana"]
    reopened.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    open_team_store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE team_schema SET version = 99")
    with pytest.raises(TeamStoreError, match=r"team schema version 99.*upgrade ecsexec"):
        open_team_store(path)


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TeamStoreError, match="cannot create"):
        open_team_store(blocker / "sub" / "db.sqlite3")


def test_the_state_dir_follows_the_environment(tmp_path: Path) -> None:
    assert default_state_dir({"ECSEXEC_STATE_DIR": str(tmp_path)}) == tmp_path
    assert default_state_dir({"XDG_STATE_HOME": "/x"}) == Path("/x/ecsexec")
    assert database_path(tmp_path) == tmp_path / "history.sqlite3"


def test_one_counted_sign_in_attempt_can_be_taken_back(store: SqliteTeamStore) -> None:
    t0 = 1_000_000.0
    for _ in range(2):
        store.record_sign_in_failure("address:10.0.0.9", t0)
    store.record_sign_in_failure("address:10.0.0.9", t0 + 1)
    store.forget_sign_in_failure("address:10.0.0.9", t0)
    assert store.sign_in_failures("address:10.0.0.9", t0 + 2) == 2  # one of the two at t0
    store.forget_sign_in_failure("address:10.0.0.8", t0)  # none there: nothing happens
    assert store.sign_in_failures("address:10.0.0.9", t0 + 2) == 2


def test_the_schedulers_name_is_not_a_users(store: SqliteTeamStore) -> None:
    # Scheduled runs are recorded as user "scheduler": a person of that name could pass
    # for it in Activity and the audit log, and stop its runs as their own.
    for name in ("scheduler", "Scheduler"):
        with pytest.raises(TeamStoreError, match=r"'scheduler' is reserved"):
            store.add_user(name, "operator", "hash")
    assert store.get_user("scheduler") is None
