"""Open the SQLite files the stores keep: their owner's alone, WAL, foreign keys on."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

LOCK_TIMEOUT: Final = 30.0  # seconds a writer waits for another writer


def connect_private(path: Path, *, shared_between_threads: bool = False) -> sqlite3.Connection:
    """A connection to ``path``, created 0600 in a 0700 directory: what the stores hold
    (command output, password hashes, the audit) is the user's alone, and SQLite's -wal
    and -shm files copy the database's mode. Autocommit (``isolation_level=None``): the
    stores open their own ``BEGIN IMMEDIATE`` transactions.

    Raises ``OSError`` or ``sqlite3.Error``; each store names them in its own words.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(
        path,
        timeout=LOCK_TIMEOUT,
        isolation_level=None,
        check_same_thread=not shared_between_threads,
    )
    db.execute("PRAGMA foreign_keys = ON")
    # WAL persists in the file; on filesystems without shared memory it stays off.
    db.execute("PRAGMA journal_mode = WAL")
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write: ``BEGIN IMMEDIATE`` takes the write lock up front (two readers upgrading
    to writers would otherwise deadlock until the timeout), ``COMMIT`` at the end, and
    ``ROLLBACK`` on any exception, ``KeyboardInterrupt`` included."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
