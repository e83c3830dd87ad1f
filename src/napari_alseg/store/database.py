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

from ..errors import AlsegError, DamagedProjectError, StorageError
from .schema import MIGRATIONS, MigrationStep, migrate, schema_version
from .sqlite import connect, damaged_message, database_error, quick_check, transaction  # noqa: F401 (re-exported)

class Database:
    """The project's ``project.sqlite``: per-thread connections and explicit transactions."""

    def __init__(self, path: Path, migrations: Sequence[Sequence[MigrationStep]] = MIGRATIONS, *,
                 check: bool = True, read_only: str | None = None) -> None:
        """Open (and migrate) ``path``: an existing project's database. With ``check`` a damaged
        file, or one holding no project at all, is refused before any write. ``read_only`` (why
        the project cannot be written) opens it for reading only: every transaction is refused
        with one line, and an older schema, which would need writing, is refused."""
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        conn = self.connection()
        try:
            problems = quick_check(conn, path) if check else []
            if problems:
                raise DamagedProjectError(damaged_message(path, problems[0]))
            if check and schema_version(conn) == 0:  # migrating would write a new, empty project
                raise DamagedProjectError(damaged_message(path, "it holds no project: no tables, "
                                                                "schema version 0"))
            if read_only is not None and schema_version(conn) < len(migrations):
                raise StorageError(f"{path}: made by an older napari-alseg (schema version {schema_version(conn)}, "
                                   f"this one uses {len(migrations)}) and read-only here ({read_only}), so it "
                                   "cannot be upgraded; open it once where it can be written")
            migrate(conn, path, migrations)
        except sqlite3.Error as exc:
            self.close()
            raise database_error(path, exc, "opening the project") from None
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
            conn = connect(self.path, read_only=self.read_only is not None)
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise database_error(self.path, exc, "reading the project") from None

    def row(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        try:
            return self.connection().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise database_error(self.path, exc, "reading the project") from None

    @contextmanager
    def transaction(self, action: str = "saving") -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` on this thread's connection (see :func:`transaction`)."""
        self.require_writable(action)
        with transaction(self.connection(), self.path, action) as conn:
            yield conn

    def require_writable(self, action: str) -> None:
        """One StorageError line when the project is open read-only: nothing is attempted."""
        if self.read_only is not None:
            raise StorageError(read_only_refusal(self.path.parent, self.read_only, action))

    def problems(self, *, full: bool = True) -> list[str]:
        """SQLite's check of the file (see :func:`quick_check`); [] when sound."""
        return quick_check(self.connection(), self.path, full=full)

    def close(self) -> None:
        """Checkpoint the WAL into the database file, then close every connection. Idempotent.

        After a clean close ``project.sqlite`` alone holds every commit, so a backup or copy
        that leaves out ``project.sqlite-wal`` loses nothing.
        """
        with self._guard:
            self._closed = True
            last = self._connections.pop() if self._connections else None
            for conn in self._connections:  # first, so no reader of ours keeps the checkpoint busy
                conn.close()
            self._connections.clear()
            if last is not None:
                if self.read_only is None:
                    checkpoint_wal(last)
                last.close()


def read_only_refusal(folder: Path, reason: str, action: str) -> str:
    """The one line a write to a read-only project gets."""
    return (f"{folder}: the project is open read-only ({reason}); {action} is not possible, nothing "
            "was saved. Viewing, status and export work; to annotate, copy the project where it can "
            "be written")


def checkpoint_wal(conn: sqlite3.Connection) -> None:
    """``wal_checkpoint(TRUNCATE)``; best effort (a read-only disk, a reader still busy)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass
