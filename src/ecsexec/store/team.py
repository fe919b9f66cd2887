"""The web server's team store: users, API tokens, sessions, sign-in throttling, audit, schedules.

:class:`TeamStore` is the interface the server codes against; :class:`SqliteTeamStore` is
the implementation, kept in the same SQLite file as the execution history
(:mod:`ecsexec.store.history`): ``<state dir>/history.sqlite3``, where the state dir is
``--state-dir``, else ``[server] state_dir``, else ``$XDG_STATE_HOME/ecsexec`` (or
``~/.local/state/ecsexec``). Like history it runs in WAL mode, writes under
``BEGIN IMMEDIATE`` with a 30 s lock wait, and creates the file for its owner only.
History versions the file with ``PRAGMA user_version``; this store keeps its own version
in the ``team_schema`` table, so each migrates its own tables forward, once, under the
write lock, whichever opens a fresh file first.

Secrets are never stored: passwords as argon2id hashes, session ids and API tokens as
SHA-256 digests (``ecsexec.web.passwords``). Times are UTC ISO-8601 strings with
milliseconds, which sort as text. Two servers (or a restart) never run one scheduled fire
twice: :meth:`TeamStore.claim_schedule_fire` inserts under a UNIQUE (job, fire time) key
and only the insert that lands owns the fire.

A PostgreSQL implementation of :class:`TeamStore` (several servers behind a load
balancer) needs the same tables; the claim becomes ``INSERT ... ON CONFLICT DO NOTHING``
and the throttle counters a shared table, exactly as here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from ecsexec.errors import NoSuchUserError, TeamStoreError, UserExistsError
from ecsexec.store.sqlite import connect_private, write_transaction

DATABASE_NAME: Final = "history.sqlite3"  # the history store's file name: one database
STATE_DIR_ENV: Final = "ECSEXEC_STATE_DIR"
OUTCOMES: Final = ("ok", "denied", "failed")
SIGN_IN_WINDOW: Final = 15 * 60.0  # seconds over which sign-in failures are counted
TOKEN_TOUCH_INTERVAL: Final = timedelta(minutes=1)  # last_used_at is kept to the minute
CLAIMS_KEPT: Final = timedelta(days=1)  # schedule claims older than a job's latest are dropped
USER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Names the server records on its own behalf (scheduled runs): no person may take them.
RESERVED_USER_NAMES: Final = frozenset({"scheduler"})

# Each entry moves this store's schema from version N-1 to N; never edit a released entry.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            password_changed_at TEXT NOT NULL
        )""",
        """CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            last_used_at TEXT,
            revoked INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX api_tokens_by_user ON api_tokens(user)",
        """CREATE TABLE web_sessions (
            id_hash TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX web_sessions_by_user ON web_sessions(user)",
        """CREATE TABLE sign_in_failures (
            key TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        "CREATE INDEX sign_in_failures_by_key ON sign_in_failures(key, at)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            outcome TEXT NOT NULL,
            source TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX audit_by_user ON audit(user, id)",
        "CREATE INDEX audit_by_action ON audit(action, id)",
        """CREATE TABLE schedule_fires (
            job_key TEXT NOT NULL,
            fire_at TEXT NOT NULL,
            claimed_at TEXT NOT NULL,
            claimed_by TEXT NOT NULL,
            UNIQUE (job_key, fire_at)
        )""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$ECSEXEC_STATE_DIR``, else ``$XDG_STATE_HOME/ecsexec``, else ``~/.local/state/ecsexec``."""
    env = os.environ if environ is None else environ
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ecsexec"


def database_path(state_dir: Path | None = None) -> Path:
    """The one database file of a server's state dir (history and the team store)."""
    return (state_dir or default_state_dir()) / DATABASE_NAME


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name, else :class:`TeamStoreError` saying what is."""
    if not USER_NAME.fullmatch(name):
        raise TeamStoreError(
            f"user name {name[:80]!r} is not valid: use 1 to 64 letters, digits, '.', '_', '@' "
            "or '-', starting with a letter or digit"
        )
    if name.lower() in RESERVED_USER_NAMES:
        raise TeamStoreError(
            f"user name {name!r}: {name.lower()!r} is reserved (the server records "
            "scheduled runs under it)"
        )
    return name


def utc_text(moment: datetime) -> str:
    """A timezone-aware moment as the store writes it: UTC, ISO-8601, milliseconds."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no timezone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _normalized(stamp: str) -> str:
    try:
        return utc_text(datetime.fromisoformat(stamp))
    except ValueError as exc:
        raise ValueError(f"not a timezone-aware ISO-8601 time: {stamp!r} ({exc})") from None


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool
    created_at: str
    password_changed_at: str


@dataclass(frozen=True)
class ApiToken:
    id: str
    user: str
    name: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked: bool


@dataclass(frozen=True)
class WebSession:
    id_hash: str
    user: str
    csrf_token: str
    created_at: str
    expires_at: str
    source: str


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    user: str
    action: str
    target: str
    outcome: str  # one of OUTCOMES
    source: str
    detail: dict[str, str]


class TeamStore(Protocol):
    """What the web server keeps about its team. Every method is one short transaction."""

    def add_user(self, name: str, role: str, password_hash: str) -> User: ...
    def get_user(self, name: str) -> User | None: ...
    def list_users(self) -> list[User]: ...
    def password_hash(self, name: str) -> str | None: ...
    def set_password(self, name: str, password_hash: str) -> None: ...
    def set_disabled(self, name: str, disabled: bool) -> None: ...
    def set_role(self, name: str, role: str) -> None: ...
    def add_token(
        self, user: str, name: str, token_hash: str, expires_at: str | None
    ) -> ApiToken: ...
    def token_by_hash(self, token_hash: str) -> ApiToken | None: ...
    def list_tokens(self, user: str) -> list[ApiToken]: ...
    def revoke_token(self, user: str, token_id: str) -> bool: ...
    def touch_token(self, token_id: str) -> None: ...
    def create_session(
        self, user: str, sid_hash: str, csrf_token: str, expires_at: str, source: str
    ) -> WebSession: ...
    def get_session(self, sid_hash: str) -> WebSession | None: ...
    def delete_session(self, sid_hash: str) -> None: ...
    def delete_sessions_of(self, user: str) -> int: ...
    def record_sign_in_failure(self, key: str, at: float) -> int: ...
    def sign_in_failures(self, key: str, at: float) -> int: ...
    def clear_sign_in_failures(self, key: str) -> None: ...
    def forget_sign_in_failure(self, key: str, at: float) -> None: ...
    def audit(
        self,
        user: str,
        action: str,
        target: str,
        outcome: str,
        source: str,
        detail: Mapping[str, str] | None = None,
    ) -> None: ...
    def list_audit(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        user: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]: ...
    def claim_schedule_fire(self, job_key: str, fire_at: str) -> bool: ...
    def last_schedule_fire(self, job_key: str) -> str | None: ...
    def close(self) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


class SqliteTeamStore:
    """:class:`TeamStore` in SQLite (WAL), safe to share between processes on one host.

    ``clock`` gives the current time (tests move it to expire sessions and tokens).
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _now) -> None:
        self.path = path
        self._clock = clock
        self._claimer = f"{os.uname().nodename}:{os.getpid()}"
        # One connection, shared by the server's event loop and its executor threads.
        self._lock = threading.RLock()
        try:
            self._db = connect_private(path, shared_between_threads=True)
            self._migrate()
        except sqlite3.Error as exc:
            raise TeamStoreError(f"cannot open the team database {path}: {exc}") from None
        except OSError as exc:
            raise TeamStoreError(f"cannot create {path}: {exc.strerror}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteTeamStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, write_transaction(self._db) as db:
            yield db

    def _rows(self, sql: str, values: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, values).fetchall()

    def _row(self, sql: str, values: Sequence[object] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, values)
        return rows[0] if rows else None

    def _migrate(self) -> None:
        if self.schema_version == SCHEMA_VERSION:
            return
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS team_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM team_schema").fetchone()
            version = int(row[0]) if row else 0  # another process may have migrated meanwhile
            if version > SCHEMA_VERSION:
                raise TeamStoreError(
                    f"{self.path} has team schema version {version}; this ecsexec knows "
                    f"{SCHEMA_VERSION}: upgrade ecsexec or use another --state-dir"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    db.execute(statement)
            db.execute("DELETE FROM team_schema")
            db.execute("INSERT INTO team_schema (version) VALUES (?)", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        exists = self._row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'team_schema'"
        )
        if not exists:
            return 0
        row = self._row("SELECT version FROM team_schema")
        return int(str(row[0])) if row else 0

    def _stamp(self, delta: timedelta = timedelta()) -> str:
        return utc_text(self._clock() + delta)

    # --- users --------------------------------------------------------------------------------

    _USER_COLUMNS: Final = "name, role, disabled, created_at, password_changed_at"

    @staticmethod
    def _user(row: Sequence[object]) -> User:
        name, role, disabled, created, changed = row
        return User(str(name), str(role), bool(disabled), str(created), str(changed))

    def add_user(self, name: str, role: str, password_hash: str) -> User:
        check_user_name(name)
        if not role:
            raise TeamStoreError(f"user {name!r}: a role is required")
        now = self._stamp()
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO users (name, role, password_hash, created_at,"
                    " password_changed_at) VALUES (?,?,?,?,?)",
                    (name, role, password_hash, now, now),
                )
            except sqlite3.IntegrityError:
                raise UserExistsError(name) from None
        return User(name, role, False, now, now)

    def get_user(self, name: str) -> User | None:
        row = self._row(f"SELECT {self._USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return None if row is None else self._user(row)

    def list_users(self) -> list[User]:
        rows = self._rows(f"SELECT {self._USER_COLUMNS} FROM users ORDER BY name")
        return [self._user(row) for row in rows]

    def password_hash(self, name: str) -> str | None:
        """The user's hash, or None for an unknown or disabled user."""
        row = self._row("SELECT password_hash FROM users WHERE name = ? AND disabled = 0", (name,))
        return None if row is None else str(row[0])

    def _update_user(
        self, name: str, assignments: str, values: Sequence[object], *, end_sessions: bool
    ) -> None:
        with self._write() as db:
            changed = db.execute(
                f"UPDATE users SET {assignments} WHERE name = ?", (*values, name)
            ).rowcount
            if not changed:
                raise NoSuchUserError(name)
            if end_sessions:
                db.execute("DELETE FROM web_sessions WHERE user = ?", (name,))

    def set_password(self, name: str, password_hash: str) -> None:
        """Replace the password hash; the user's sessions end."""
        self._update_user(
            name,
            "password_hash = ?, password_changed_at = ?",
            (password_hash, self._stamp()),
            end_sessions=True,
        )

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (sessions end; tokens stop working) or enable an account."""
        self._update_user(name, "disabled = ?", (int(disabled),), end_sessions=disabled)

    def set_role(self, name: str, role: str) -> None:
        if not role:
            raise TeamStoreError(f"user {name!r}: a role is required")
        self._update_user(name, "role = ?", (role,), end_sessions=False)

    # --- API tokens ---------------------------------------------------------------------------

    _TOKEN_COLUMNS: Final = "id, user, name, created_at, expires_at, last_used_at, revoked"

    @staticmethod
    def _token(row: Sequence[object]) -> ApiToken:
        tid, user, name, created, expires, used, revoked = row
        return ApiToken(
            str(tid),
            str(user),
            str(name),
            str(created),
            None if expires is None else str(expires),
            None if used is None else str(used),
            bool(revoked),
        )

    def add_token(self, user: str, name: str, token_hash: str, expires_at: str | None) -> ApiToken:
        """Keep a new token's digest; ``expires_at`` is an aware ISO-8601 time or None."""
        expires = None if expires_at is None else _normalized(expires_at)
        token_id = secrets.token_hex(8)
        now = self._stamp()
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
                raise NoSuchUserError(user)
            db.execute(
                "INSERT INTO api_tokens (id, user, name, token_hash, created_at, expires_at)"
                " VALUES (?,?,?,?,?,?)",
                (token_id, user, name, token_hash, now, expires),
            )
        return ApiToken(token_id, user, name, now, expires, None, False)

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        """The token with this digest, unless revoked, expired or its user is disabled."""
        row = self._row(
            f"SELECT {', '.join('t.' + c for c in self._TOKEN_COLUMNS.split(', '))}"
            " FROM api_tokens t JOIN users u ON u.name = t.user"
            " WHERE t.token_hash = ? AND t.revoked = 0 AND u.disabled = 0"
            " AND (t.expires_at IS NULL OR t.expires_at > ?)",
            (token_hash, self._stamp()),
        )
        return None if row is None else self._token(row)

    def list_tokens(self, user: str) -> list[ApiToken]:
        """Every token of ``user``, revoked and expired ones too, oldest first."""
        rows = self._rows(
            f"SELECT {self._TOKEN_COLUMNS} FROM api_tokens WHERE user = ?"
            " ORDER BY created_at, rowid",
            (user,),
        )
        return [self._token(row) for row in rows]

    def revoke_token(self, user: str, token_id: str) -> bool:
        """Revoke one of ``user``'s own tokens; False if it has none of that id."""
        with self._write() as db:
            return bool(
                db.execute(
                    "UPDATE api_tokens SET revoked = 1 WHERE id = ? AND user = ? AND revoked = 0",
                    (token_id, user),
                ).rowcount
            )

    def touch_token(self, token_id: str) -> None:
        """Note a use; written at most once a minute per token, to spare the write lock."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?"
                " AND (last_used_at IS NULL OR last_used_at < ?)",
                (utc_text(now), token_id, utc_text(now - TOKEN_TOUCH_INTERVAL)),
            )

    # --- sessions -----------------------------------------------------------------------------

    def create_session(
        self, user: str, sid_hash: str, csrf_token: str, expires_at: str, source: str
    ) -> WebSession:
        expires = _normalized(expires_at)
        now = self._stamp()
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
                raise NoSuchUserError(user)
            db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO web_sessions (id_hash, user, csrf_token, created_at, expires_at,"
                " source) VALUES (?,?,?,?,?,?)",
                (sid_hash, user, csrf_token, now, expires, source),
            )
        return WebSession(sid_hash, user, csrf_token, now, expires, source)

    def get_session(self, sid_hash: str) -> WebSession | None:
        """The session, unless expired or its user is disabled."""
        row = self._row(
            "SELECT s.id_hash, s.user, s.csrf_token, s.created_at, s.expires_at, s.source"
            " FROM web_sessions s JOIN users u ON u.name = s.user"
            " WHERE s.id_hash = ? AND s.expires_at > ? AND u.disabled = 0",
            (sid_hash, self._stamp()),
        )
        return None if row is None else WebSession(*(str(v) for v in row))

    def delete_session(self, sid_hash: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM web_sessions WHERE id_hash = ?", (sid_hash,))

    def delete_sessions_of(self, user: str) -> int:
        with self._write() as db:
            return int(db.execute("DELETE FROM web_sessions WHERE user = ?", (user,)).rowcount)

    # --- sign-in throttling -------------------------------------------------------------------

    def record_sign_in_failure(self, key: str, at: float, *, window: float = SIGN_IN_WINDOW) -> int:
        """Count a failed sign-in for ``key`` (a user name, a source address) at ``at``
        (epoch seconds); return the failures within the last ``window`` seconds, this one
        included. Older failures are forgotten."""
        with self._write() as db:
            db.execute("DELETE FROM sign_in_failures WHERE at <= ?", (at - window,))
            db.execute("INSERT INTO sign_in_failures (key, at) VALUES (?, ?)", (key, at))
            (count,) = db.execute(
                "SELECT COUNT(*) FROM sign_in_failures WHERE key = ?", (key,)
            ).fetchone()
        return int(count)

    def sign_in_failures(self, key: str, at: float, *, window: float = SIGN_IN_WINDOW) -> int:
        """The failures recorded for ``key`` within ``window`` seconds before ``at``."""
        row = self._row(
            "SELECT COUNT(*) FROM sign_in_failures WHERE key = ? AND at > ?", (key, at - window)
        )
        return int(str(row[0])) if row else 0

    def clear_sign_in_failures(self, key: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sign_in_failures WHERE key = ?", (key,))

    def forget_sign_in_failure(self, key: str, at: float) -> None:
        """Take back one failure counted for ``key`` at ``at``: the server counts each
        attempt before checking its password (so concurrent guesses cannot outrun the
        count) and takes it back when it was no failure."""
        with self._write() as db:
            db.execute(
                "DELETE FROM sign_in_failures WHERE rowid = (SELECT rowid FROM"
                " sign_in_failures WHERE key = ? AND at = ? LIMIT 1)",
                (key, at),
            )

    # --- audit --------------------------------------------------------------------------------

    def audit(
        self,
        user: str,
        action: str,
        target: str,
        outcome: str,
        source: str,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        """Append an entry. ``detail`` holds strings only, and never a secret."""
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
        text = json.dumps({str(k): str(v) for k, v in (detail or {}).items()}, sort_keys=True)
        with self._write() as db:
            db.execute(
                "INSERT INTO audit (at, user, action, target, outcome, source, detail)"
                " VALUES (?,?,?,?,?,?,?)",
                (self._stamp(), user, action, target, outcome, source, text),
            )

    def list_audit(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        user: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first; ``before_id`` pages back from an entry already shown."""
        where: list[str] = []
        values: list[object] = []
        for clause, value in (("id < ?", before_id), ("user = ?", user), ("action = ?", action)):
            if value is not None:
                where.append(clause)
                values.append(value)
        sql = "SELECT id, at, user, action, target, outcome, source, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._rows(f"{sql} ORDER BY id DESC LIMIT ?", (*values, max(0, limit)))
        return [
            AuditEntry(
                int(rid),
                str(at),
                str(who),
                str(what),
                str(target),
                str(outcome),
                str(source),
                json.loads(str(detail)),
            )
            for rid, at, who, what, target, outcome, source, detail in rows
        ]

    # --- schedules ----------------------------------------------------------------------------

    def claim_schedule_fire(self, job_key: str, fire_at: str) -> bool:
        """Own the fire of ``job_key`` at ``fire_at`` (an aware ISO-8601 time): True for
        the one caller whose claim lands, False for every other (another server, or this one
        after a restart)."""
        fire = _normalized(fire_at)
        with self._write() as db:
            inserted = db.execute(
                "INSERT INTO schedule_fires (job_key, fire_at, claimed_at, claimed_by)"
                " VALUES (?,?,?,?) ON CONFLICT (job_key, fire_at) DO NOTHING",
                (job_key, fire, self._stamp(), self._claimer),
            ).rowcount
            if inserted:
                # Only the latest claims matter (no scheduler looks a day back): a job that
                # fires every second keeps a day of rows, not a year's.
                horizon = utc_text(datetime.fromisoformat(fire) - CLAIMS_KEPT)
                db.execute(
                    "DELETE FROM schedule_fires WHERE job_key = ? AND fire_at < ?",
                    (job_key, horizon),
                )
        return bool(inserted)

    def last_schedule_fire(self, job_key: str) -> str | None:
        """The latest fire time claimed for ``job_key`` (UTC ISO-8601), or None."""
        row = self._row("SELECT MAX(fire_at) FROM schedule_fires WHERE job_key = ?", (job_key,))
        return None if row is None or row[0] is None else str(row[0])


def open_team_store(path: Path, *, clock: Callable[[], datetime] = _now) -> TeamStore:
    """Open (creating and migrating as needed) the team store in the database at ``path``."""
    return SqliteTeamStore(path, clock=clock)
