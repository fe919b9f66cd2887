"""The stores' SQLite files: private, WAL, foreign keys enforced."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from ecsexec.store.sqlite import connect_private, write_transaction


def test_a_new_database_is_its_owners_alone_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "state" / "db.sqlite3"
    db = connect_private(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (parent INTEGER REFERENCES parent(id))")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO child VALUES (1)")
    finally:
        db.close()


def test_a_write_commits_or_rolls_back_whole(tmp_path: Path) -> None:
    db = connect_private(tmp_path / "db.sqlite3")
    try:
        db.execute("CREATE TABLE t (v INTEGER)")
        with write_transaction(db):
            db.execute("INSERT INTO t VALUES (1)")

        def interrupted_write() -> None:
            with write_transaction(db):
                db.execute("INSERT INTO t VALUES (2)")
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted_write()
        assert db.execute("SELECT v FROM t").fetchall() == [(1,)]
        assert not db.in_transaction
    finally:
        db.close()
