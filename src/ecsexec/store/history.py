"""Execution history in SQLite: every run and job run, per-node results and bounded logs.

The database lives at ``$ECSEXEC_HISTORY`` if set (``off`` disables history), else
``$XDG_STATE_HOME/ecsexec/history.sqlite3``, else ``~/.local/state/ecsexec/history.sqlite3``.
It runs in WAL mode, so readers never wait for a writer and several ecsexec processes can
record at once (writes take ``BEGIN IMMEDIATE`` and wait up to 30 s for the lock). The
schema is versioned with ``PRAGMA user_version`` and migrated forward at open, under the
write lock, so two processes opening a fresh file migrate it once.

A run's row is written first, with status ``running``, the recording process's pid and
its start time, and its nodes ``pending``. A node becomes ``running`` with its session id
as its session starts, and gets its outcome as it finishes; when the run finishes, nodes
that never started are ``not started``. A run whose process died (crash, SIGKILL, power
loss) therefore stays ``running`` in the file and is reported as ``incomplete`` once that
process is gone, and so are its nodes that were still ``running`` (their session ids are
kept for ``ecsexec history cleanup``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from ecsexec.errors import HistoryError, status_for_exit
from ecsexec.exec.dispatcher import NodeFinished, ProgressEvent
from ecsexec.exec.results import CommandResult
from ecsexec.store.sqlite import connect_private, write_transaction

DEFAULT_MAX_LOG: Final = 1024 * 1024  # bytes of log kept per node and run
STATUSES: Final = ("running", "succeeded", "failed", "error", "interrupted", "incomplete")

# Each entry moves the schema from version N-1 to N; never edit a released entry.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            user TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_started TEXT NOT NULL DEFAULT '',
            command TEXT NOT NULL DEFAULT '',
            job TEXT NOT NULL DEFAULT '',
            job_file TEXT NOT NULL DEFAULT '',
            filter TEXT NOT NULL DEFAULT '',
            options TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            exit_code INTEGER,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        """CREATE TABLE run_nodes (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            node TEXT NOT NULL,
            position INTEGER NOT NULL,
            status TEXT NOT NULL,
            exit_code INTEGER,
            duration_s REAL,
            detail TEXT NOT NULL DEFAULT '',
            log BLOB NOT NULL DEFAULT x'',
            log_bytes INTEGER NOT NULL DEFAULT 0,
            truncated INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, node)
        )""",
        "CREATE INDEX runs_by_status ON runs(status, id)",
    ),
    (
        # The session each node runs in, written as it starts: after a crash or SIGKILL,
        # `ecsexec history cleanup` can still terminate what was left running.
        "ALTER TABLE run_nodes ADD COLUMN session_id TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE run_nodes ADD COLUMN region TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX runs_by_start ON runs(started_at)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def default_path() -> Path | None:
    """Where history lives; None when ``ECSEXEC_HISTORY=off``."""
    configured = os.environ.get("ECSEXEC_HISTORY")
    if configured:
        return None if configured.lower() == "off" else Path(configured).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ecsexec" / "history.sqlite3"


def bound_log(data: bytes, limit: int) -> tuple[bytes, bool]:
    """Keep the head and the tail of a long log, with a visible marker where bytes were cut."""
    if len(data) <= limit:
        return data, False
    head = limit // 2
    tail = limit - head
    omitted = len(data) - head - tail
    marker = (
        f"\n[ecsexec history: {omitted} bytes of output omitted here; "
        f"{limit} bytes are kept per node]\n"
    ).encode()
    return data[:head] + marker + data[len(data) - tail :], True


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (some containers)
        return str(os.getuid())


def process_started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not started or process_started(pid) in ("", started)


@dataclass(frozen=True)
class NodeRecord:
    node: str
    position: int
    status: str
    exit_code: int | None = None
    duration_s: float | None = None
    detail: str = ""
    log_bytes: int = 0  # before truncation
    truncated: bool = False
    session_id: str = ""
    region: str = ""


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str  # "run" or "job"
    user: str
    host: str
    pid: int
    command: str
    job: str
    job_file: str
    filter: str
    options: Mapping[str, str]
    status: str  # as stored, except "incomplete" for a dead process's "running"
    exit_code: int | None
    started_at: datetime
    finished_at: datetime | None
    node_count: int
    nodes: tuple[NodeRecord, ...] = field(default=())

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def what(self) -> str:
        return self.job if self.kind == "job" else self.command


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class History:
    """One history database; cheap to open, safe to share between processes."""

    def __init__(self, path: Path, *, max_log_bytes: int = DEFAULT_MAX_LOG) -> None:
        self.path = path
        self.max_log_bytes = max_log_bytes
        self._host = socket.gethostname()
        try:
            self._db = connect_private(path)
            self._migrate()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open the history database {path}: {exc}") from None
        except OSError as exc:
            raise HistoryError(f"cannot create {path.parent}: {exc.strerror}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._db) as db:
            yield db

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        with self._write() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()  # another process won?
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"{self.path} has schema version {version}; this ecsexec knows "
                    f"{SCHEMA_VERSION}: upgrade ecsexec or set ECSEXEC_HISTORY"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    # --- writing ------------------------------------------------------------------------------

    def start(
        self,
        *,
        kind: str,
        command: str = "",
        job: str = "",
        job_file: str = "",
        filter: str = "",
        options: Mapping[str, str] | None = None,
        nodes: Sequence[str] = (),
        user: str | None = None,
    ) -> int:
        """Record a run as ``running`` (with its nodes ``pending``) and return its id.

        ``user`` is who asked for it: the local user unless a server runs it for one of
        its users."""
        pid = os.getpid()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO runs (kind, user, host, pid, pid_started, command, job, job_file,"
                " filter, options, status, started_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    kind,
                    user or local_user(),
                    self._host,
                    pid,
                    process_started(pid),
                    command,
                    job,
                    job_file,
                    filter,
                    json.dumps(dict(options or {}), sort_keys=True),
                    "running",
                    _now(),
                ),
            )
            run_id = cursor.lastrowid
            assert run_id is not None
            db.executemany(
                "INSERT INTO run_nodes (run_id, node, position, status) VALUES (?,?,?,?)",
                [(run_id, node, index, "pending") for index, node in enumerate(nodes)],
            )
        return run_id

    def record_node(
        self,
        run_id: int,
        node: str,
        *,
        status: str,
        exit_code: int | None = None,
        duration_s: float | None = None,
        detail: str = "",
        log: bytes = b"",
    ) -> None:
        """Write (or rewrite) one node's outcome and its log, bounded to ``max_log_bytes``."""
        kept, truncated = bound_log(log, self.max_log_bytes)
        with self._write() as db:
            row = db.execute(
                "SELECT position FROM run_nodes WHERE run_id = ? AND node = ?", (run_id, node)
            ).fetchone()
            if row is None:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM run_nodes WHERE run_id = ?", (run_id,)
                ).fetchone()
                position = int(count)
            else:
                position = int(row[0])
            # An upsert, not INSERT OR REPLACE: the row keeps its session id and region.
            db.execute(
                "INSERT INTO run_nodes (run_id, node, position, status, exit_code,"
                " duration_s, detail, log, log_bytes, truncated) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (run_id, node) DO UPDATE SET status = excluded.status,"
                " exit_code = excluded.exit_code, duration_s = excluded.duration_s,"
                " detail = excluded.detail, log = excluded.log, log_bytes = excluded.log_bytes,"
                " truncated = excluded.truncated",
                (
                    run_id,
                    node,
                    position,
                    status,
                    exit_code,
                    duration_s,
                    detail,
                    kept,
                    len(log),
                    int(truncated),
                ),
            )

    def record_session(self, run_id: int, node: str, session_id: str, region: str = "") -> None:
        """A node's session has started: keep its id, so it can be ended after a crash."""
        with self._write() as db:
            db.execute(
                "UPDATE run_nodes SET status = 'running', session_id = ?, region = ?"
                " WHERE run_id = ? AND node = ? AND status IN ('pending', 'running')",
                (session_id, region, run_id, node),
            )

    def finish(self, run_id: int, *, status: str, exit_code: int | None) -> None:
        """Finish a run; nodes still pending never started, and ones still running never
        reported an outcome (their process died with this one's cleanup)."""
        with self._write() as db:
            db.execute(
                "UPDATE run_nodes SET status = CASE status WHEN 'pending' THEN 'not started'"
                " ELSE 'incomplete' END WHERE run_id = ? AND status IN ('pending', 'running')",
                (run_id,),
            )
            db.execute(
                "UPDATE runs SET status = ?, exit_code = ?, finished_at = ? WHERE id = ?",
                (status, exit_code, _now(), run_id),
            )

    def prune(self, *, older_than_days: float | None = None, keep: int | None = None) -> int:
        """Delete finished runs older than ``older_than_days`` and all but the newest
        ``keep`` finished runs; return how many were deleted. Running runs are kept."""
        deleted = 0
        with self._write() as db:
            if older_than_days is not None:
                cutoff = datetime.now(UTC).timestamp() - older_than_days * 86400
                stamp = datetime.fromtimestamp(cutoff, UTC).isoformat(timespec="milliseconds")
                deleted += db.execute(
                    "DELETE FROM runs WHERE status != 'running' AND started_at < ?", (stamp,)
                ).rowcount
            if keep is not None:
                deleted += db.execute(
                    "DELETE FROM runs WHERE status != 'running' AND id NOT IN"
                    " (SELECT id FROM runs WHERE status != 'running' ORDER BY id DESC LIMIT ?)",
                    (max(0, keep),),
                ).rowcount
        return deleted

    # --- reading ------------------------------------------------------------------------------

    _RUN_COLUMNS: Final = (
        "id, kind, user, host, pid, pid_started, command, job, job_file, filter, options,"
        " status, exit_code, started_at, finished_at,"
        " (SELECT COUNT(*) FROM run_nodes n WHERE n.run_id = runs.id)"
    )

    def _record(self, row: Sequence[object], nodes: tuple[NodeRecord, ...] = ()) -> RunRecord:
        (rid, kind, user, host, pid, pid_started, command, job, job_file, flt, options) = row[:11]
        status, exit_code, started, finished, count = row[11:]
        status = str(status)
        # Another host's process cannot be checked from here: its run stays "running".
        if (
            status == "running"
            and host == self._host
            and not process_alive(int(str(pid)), str(pid_started))
        ):
            status = "incomplete"
        return RunRecord(
            id=int(str(rid)),
            kind=str(kind),
            user=str(user),
            host=str(host),
            pid=int(str(pid)),
            command=str(command),
            job=str(job),
            job_file=str(job_file),
            filter=str(flt),
            options=json.loads(str(options)),
            status=status,
            exit_code=None if exit_code is None else int(str(exit_code)),
            started_at=datetime.fromisoformat(str(started)),
            finished_at=None if finished is None else datetime.fromisoformat(str(finished)),
            node_count=int(str(count)),
            nodes=nodes,
        )

    def runs(
        self, *, limit: int = 20, status: str | None = None, nodes: bool = False
    ) -> list[RunRecord]:
        """The newest runs first; ``status`` filters on the reported status; ``nodes`` adds
        each run's nodes (without logs)."""
        found = self._runs(limit, status)
        if not nodes:
            return found
        return [self.run(r.id) or r for r in found]

    def find_runs(
        self,
        *,
        limit: int = 20,
        status: str | None = None,
        user: str | None = None,
        job: str | None = None,
        before: int | None = None,
    ) -> list[RunRecord]:
        """The newest runs first, filtered: ``status`` as reported (``incomplete`` is a
        dead process's ``running``), ``user`` and ``job`` exactly, ids below ``before``."""
        where, params = [], []
        if user is not None:
            where.append("user = ?")
            params.append(user)
        if job is not None:
            where.append("job = ?")
            params.append(job)
        if before is not None:
            where.append("id < ?")
            params.append(str(before))
        live = status in ("running", "incomplete")
        if status is not None:
            where.append("status = ?")
            params.append("running" if live else status)
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if not live:
            sql += f" LIMIT {max(0, int(limit))}"
        records = [self._record(row) for row in self._db.execute(sql, params)]
        if live:  # which "running" rows are alive is known only row by row
            records = [r for r in records if r.status == status][:limit]
        return records

    def _runs(self, limit: int, status: str | None) -> list[RunRecord]:
        if status in ("running", "incomplete"):
            rows = self._db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY id DESC"
            ).fetchall()
            records = [r for r in map(self._record, rows) if r.status == status]
            return records[:limit]
        if status is not None:
            rows = self._db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY id DESC LIMIT ?",
                (status, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [self._record(row) for row in rows]

    def run(self, run_id: int) -> RunRecord | None:
        """One run with its nodes (without their logs)."""
        row = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        nodes = tuple(
            NodeRecord(
                node=str(n[0]),
                position=int(n[1]),
                status=str(n[2]),
                exit_code=n[3],
                duration_s=n[4],
                detail=str(n[5]),
                log_bytes=int(n[6]),
                truncated=bool(n[7]),
                session_id=str(n[8]),
                region=str(n[9]),
            )
            for n in self._db.execute(
                "SELECT node, position, status, exit_code, duration_s, detail, log_bytes,"
                " truncated, session_id, region FROM run_nodes WHERE run_id = ?"
                " ORDER BY position",
                (run_id,),
            )
        )
        record = self._record(row, nodes)
        if record.status == "incomplete":
            # The process died: nodes it was still running have no outcome, and the ones
            # it never started never will.
            dead = {"running": "incomplete", "pending": "not started"}
            nodes = tuple(
                dataclasses.replace(n, status=dead.get(n.status, n.status)) for n in nodes
            )
            record = dataclasses.replace(record, nodes=nodes)
        return record

    def logs(self, run_id: int, node: str | None = None) -> list[tuple[str, bytes]]:
        """``(node, log)`` for each node of a run in order, or for the one node named."""
        if node is None:
            rows = self._db.execute(
                "SELECT node, log FROM run_nodes WHERE run_id = ? ORDER BY position", (run_id,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT node, log FROM run_nodes WHERE run_id = ? AND node = ?", (run_id, node)
            ).fetchall()
        return [(str(name), bytes(log)) for name, log in rows]


def outcome_fields(outcome: CommandResult) -> dict[str, object]:
    """``record_node`` keyword arguments for one command's outcome."""
    return {
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "duration_s": round(outcome.duration, 3),
        "detail": outcome.reason,
        "log": outcome.output,
    }


class RunRecorder:
    """Records an ad-hoc run from its progress events: each node's row as it finishes.

    History must never break a run: a failed write is kept in :attr:`errors` (for the
    caller to show once) and recording stops.
    """

    def __init__(self, history: History | None, run_id: int | None) -> None:
        self.history = history
        self.run_id = run_id
        self.errors: list[str] = []

    @classmethod
    def open(
        cls,
        *,
        kind: str,
        nodes: Iterable[str],
        path: Path | None = None,
        **fields: str | Mapping[str, str],
    ) -> RunRecorder:
        """Open the default history and record a run's start; never raises."""
        target = path or default_path()
        if target is None:
            return cls(None, None)
        recorder = cls(None, None)
        try:
            recorder.history = History(target)
            recorder.run_id = recorder.history.start(kind=kind, nodes=list(nodes), **fields)  # type: ignore[arg-type]
        except (HistoryError, sqlite3.Error) as exc:
            recorder._failed(exc)
        return recorder

    @property
    def active(self) -> bool:
        return self.history is not None and self.run_id is not None

    def record_node(self, node: str, **fields: object) -> None:
        if self.history is None or self.run_id is None:
            return
        try:
            self.history.record_node(self.run_id, node, **fields)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            self._failed(exc)

    def prune(self, *, keep_days: float, keep_runs: int) -> None:
        """Apply the retention (0 keeps everything by that measure)."""
        if self.history is None:
            return
        try:
            self.history.prune(older_than_days=keep_days or None, keep=keep_runs or None)
        except sqlite3.Error as exc:
            self._failed(exc)

    def record_session(self, node: str, session_id: str, region: str = "") -> None:
        if self.history is None or self.run_id is None:
            return
        try:
            self.history.record_session(self.run_id, node, session_id, region)
        except sqlite3.Error as exc:
            self._failed(exc)

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, NodeFinished):
            self.record_node(event.node, **outcome_fields(event.outcome))

    def finish(self, exit_code: int) -> None:
        if self.history is None or self.run_id is None:
            return
        try:
            self.history.finish(self.run_id, status=status_for_exit(exit_code), exit_code=exit_code)
        except sqlite3.Error as exc:
            self._failed(exc)
        self.history.close()
        self.history = None

    def _failed(self, exc: Exception) -> None:
        self.errors.append(f"history not recorded: {exc}")
        if self.history is not None:
            with contextlib.suppress(sqlite3.Error):
                self.history.close()
        self.history = None
