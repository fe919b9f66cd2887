"""Execution history: schema migrations, records, bounded logs, concurrent writers, crashes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecsexec.errors import Status
from ecsexec.exec.dispatcher import NodeFinished
from ecsexec.exec.results import CommandResult
from ecsexec.store.history import (
    SCHEMA_VERSION,
    History,
    HistoryError,
    RunRecorder,
    bound_log,
    default_path,
)

WRITER = """
import sys
from pathlib import Path
from ecsexec.store.history import History
path, worker, runs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with History(path) as history:
    for n in range(runs):
        nodes = [f"{worker}-{n}-{i}" for i in range(3)]
        run_id = history.start(kind="run", command=f"{worker} {n}", nodes=nodes)
        for node in nodes:
            history.record_node(run_id, node, status="succeeded", exit_code=0, log=node.encode())
        history.finish(run_id, status="succeeded", exit_code=0)
"""

CRASH = """
import os, signal, sys
from pathlib import Path
from ecsexec.store.history import History
history = History(Path(sys.argv[1]))
run_id = history.start(kind="job", job="g/crashing", nodes=["a", "b", "c"])
history.record_node(run_id, "a", status="succeeded", exit_code=0, log=b"before the crash")
history.record_session(run_id, "b", "sess-b", "eu-west-1")
print(run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_new_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history.sqlite3"
    with History(path) as history:
        assert history.schema_version == SCHEMA_VERSION == 2
    with History(path) as again:  # opening a current file changes nothing
        assert again.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="schema version 99"):
        History(path)


def test_runs_nodes_and_logs_are_recorded(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3") as history:
        first = history.start(kind="run", command="echo hi", filter="name: a", nodes=["b", "a"])
        history.record_node(first, "a", status="failed", exit_code=3, duration_s=0.5, log=b"A\n")
        history.record_node(first, "b", status="succeeded", exit_code=0, log=b"B\n")
        history.finish(first, status="failed", exit_code=1)
        second = history.start(
            kind="job", job="g/j", job_file="j.yaml", options={"pw": "****"}, nodes=["a"]
        )
        history.finish(second, status="succeeded", exit_code=0)
        assert [r.id for r in history.runs()] == [second, first]
        assert [r.id for r in history.runs(status="failed")] == [first]
        assert [r.id for r in history.runs(limit=1)] == [second]
        run = history.run(first)
        assert run is not None
        assert (run.kind, run.command, run.filter, run.status, run.exit_code) == (
            "run",
            "echo hi",
            "name: a",
            "failed",
            1,
        )
        assert run.user and run.pid == os.getpid() and run.duration is not None
        assert [(n.node, n.status, n.exit_code) for n in run.nodes] == [
            ("b", "succeeded", 0),
            ("a", "failed", 3),
        ]
        assert history.logs(first) == [("b", b"B\n"), ("a", b"A\n")]
        assert history.logs(first, "a") == [("a", b"A\n")]
        job = history.run(second)
        assert job is not None and job.options == {"pw": "****"} and job.what == "g/j"
        assert history.run(12345) is None


def test_each_nodes_log_is_bounded_with_a_visible_marker(tmp_path: Path) -> None:
    kept, truncated = bound_log(b"a" * 60 + b"z" * 40, 20)
    assert truncated and kept.startswith(b"a" * 10) and kept.endswith(b"z" * 10)
    assert b"[ecsexec history: 80 bytes of output omitted here; 20 bytes are kept per node]" in kept
    assert bound_log(b"short", 20) == (b"short", False)
    with History(tmp_path / "h.sqlite3", max_log_bytes=1000) as history:
        run_id = history.start(kind="run", nodes=["n"])
        history.record_node(run_id, "n", status="succeeded", log=b"x" * 5000)
        run = history.run(run_id)
        assert run is not None
        assert (run.nodes[0].log_bytes, run.nodes[0].truncated) == (5000, True)
        ((_, log),) = history.logs(run_id)
        assert b"4000 bytes of output omitted" in log and len(log) < 1200


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"  # new: the writers also race to migrate it
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{i}", "15"]) for i in range(4)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    with History(path) as history:
        runs = history.runs(limit=1000)
        assert len(runs) == 60 and len({r.id for r in runs}) == 60
        assert {r.status for r in runs} == {"succeeded"}
        for run in runs:
            detail = history.run(run.id)
            assert detail is not None
            assert [n.status for n in detail.nodes] == ["succeeded"] * 3
            logs = [log for _, log in history.logs(run.id)]
            assert logs == [n.node.encode() for n in detail.nodes]


def test_a_crash_leaves_an_incomplete_record_not_a_lost_one(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -9
    run_id = int(crashed.stdout)
    with History(path) as history:
        run = history.run(run_id)
        assert run is not None
        assert (run.status, run.exit_code, run.finished_at) == ("incomplete", None, None)
        # b's session had started and never reported; c never started.
        assert [(n.node, n.status) for n in run.nodes] == [
            ("a", "succeeded"),
            ("b", "incomplete"),
            ("c", "not started"),
        ]
        assert (run.nodes[1].session_id, run.nodes[1].region) == ("sess-b", "eu-west-1")
        assert history.logs(run_id, "a") == [("a", b"before the crash")]
        assert [r.id for r in history.runs(status="incomplete")] == [run_id]
        live = history.start(kind="run", command="still going")
        assert [r.id for r in history.runs(status="running")] == [live]
    # A pid that is alive but was reused by another process is not our run either.
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET pid_started = '1' WHERE id = ?", (live,))
    db.commit()
    db.close()
    with History(path) as history:
        run = history.run(live)
        assert run is not None and run.status == "incomplete"


def test_the_recorder_follows_node_events_and_never_breaks_a_run(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    path = tmp_path / "h.sqlite3"
    recorder = RunRecorder.open(kind="run", path=path, command="exit 2", nodes=["n1"])
    assert recorder.active
    result = CommandResult("n1", "exit 2", Status.FAILED, 2, b"out\n", now, now, reason="")
    recorder(NodeFinished("n1", result))
    recorder.finish(1)
    with History(path) as history:
        run = history.run(recorder.run_id or 0)
        assert run is not None and (run.status, run.exit_code) == ("failed", 1)
        assert [(n.status, n.exit_code) for n in run.nodes] == [("failed", 2)]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    broken = RunRecorder.open(kind="run", path=blocked / "h.sqlite3", nodes=["n1"])
    broken(NodeFinished("n1", result))
    broken.finish(0)
    assert not broken.active and broken.errors and "history not recorded" in broken.errors[0]


def test_where_history_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ECSEXEC_HISTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "ecsexec" / "history.sqlite3"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_path() == Path.home() / ".local" / "state" / "ecsexec" / "history.sqlite3"
    monkeypatch.setenv("ECSEXEC_HISTORY", "off")
    assert default_path() is None


def test_finishing_a_run_says_what_happened_to_every_node(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3") as history:
        run_id = history.start(kind="run", command="x", nodes=["a", "b", "c"])
        history.record_session(run_id, "a", "sess-a")
        history.record_node(run_id, "a", status="succeeded", exit_code=0)
        history.record_session(run_id, "b", "sess-b")  # started, never reported
        history.finish(run_id, status="interrupted", exit_code=130)
        run = history.run(run_id)
        assert run is not None
        assert [(n.node, n.status, n.session_id) for n in run.nodes] == [
            ("a", "succeeded", "sess-a"),
            ("b", "incomplete", "sess-b"),
            ("c", "not started", ""),
        ]


def test_a_version_1_database_is_migrated_keeping_its_runs(tmp_path: Path) -> None:
    from ecsexec.store.history import MIGRATIONS

    path = tmp_path / "h.sqlite3"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute(
        "INSERT INTO runs (kind, user, host, pid, status, started_at)"
        " VALUES ('run', 'u', 'h', 1, 'succeeded', '2026-01-01T00:00:00+00:00')"
    )
    db.execute("INSERT INTO run_nodes (run_id, node, position, status) VALUES (1, 'a', 0, 'x')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with History(path) as history:
        assert history.schema_version == 2
        run = history.run(1)
        assert run is not None and run.nodes[0].session_id == ""


def test_prune_by_age_and_by_count_keeps_running_runs(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3") as history:
        ids = [history.start(kind="run", command=str(n)) for n in range(5)]
        for run_id in ids[:4]:
            history.finish(run_id, status="succeeded", exit_code=0)
        db = history._db
        db.execute(
            "UPDATE runs SET started_at = '2020-01-01T00:00:00+00:00' WHERE id = ?", (ids[0],)
        )
        assert history.prune(older_than_days=30) == 1  # only the old, finished one
        assert history.prune(keep=2) == 1  # of ids[1:4] the newest two stay
        left = [r.id for r in history.runs()]
        assert left == [ids[4], ids[3], ids[2]]  # the running one is never deleted
