"""SQLite access for one project: a connection per thread, WAL, fully synchronous commits.

WAL lets the training thread read while the annotator's submit writes; ``synchronous=FULL``
makes a commit durable (fsynced) before it returns. Each thread gets its own connection
so readers never wait on a Python-level lock; writers are serialised by the caller.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import AlsegError
from .schema import MIGRATIONS, migrate

_BUSY_TIMEOUT_S = 30.0


def connect(path: Path, *, wal: bool = True) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (explicit ``BEGIN``/``COMMIT``), or raise AlsegError."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                               timeout=_BUSY_TIMEOUT_S)
        conn.row_factory = sqlite3.Row
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise AlsegError(f"{path}: not a readable project database ({exc})") from None
    return conn


class Database:
    """The project's ``project.sqlite``: per-thread connections and explicit transactions."""

    def __init__(self, path: Path, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        conn = self.connection()
        try:
            migrate(conn, path, migrations)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise AlsegError(f"{path}: not a readable project database ({exc})") from None
        except BaseException:
            self.close()
            raise

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        with self._guard:
            if self._closed:
                raise AlsegError(f"{self.path.parent}: project is closed")
            conn = connect(self.path)
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.connection().execute(sql, params).fetchall()

    def row(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return self.connection().execute(sql, params).fetchone()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls back and propagates."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._guard:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()
