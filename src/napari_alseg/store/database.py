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
from .schema import MIGRATIONS, migrate

_BUSY_TIMEOUT_S = 30.0
# SQLite primary result codes (sqlite3.h) that tell damage and full disks apart
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB, _SQLITE_READONLY = 10, 11, 13, 26, 8
_MESSAGE_CHARS = 160


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
    except sqlite3.Error as exc:
        raise database_error(path, exc, "opening the project") from None
    return conn


def damaged_message(path: Path, problem: str) -> str:
    """The one line shown for a damaged database: what failed, that nothing changed, what to do."""
    return (f"{path}: damaged project database ({_short(problem)}); nothing was changed. Restore "
            f"{path.name} from a backup, or salvage it with `sqlite3 {path.name} .recover | sqlite3 "
            "recovered.sqlite`; label files under labels/ are untouched "
            "(`alseg status --check` lists every problem)")


def database_error(path: Path, exc: sqlite3.Error, action: str) -> AlsegError:
    """One AlsegError line for a sqlite3 error: damaged, disk full, unwritable, or other."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    text = str(exc)
    lowered = text.lower()
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in lowered \
            or "not a database" in lowered or "could not decode" in lowered:
        return DamagedProjectError(damaged_message(path, text))
    if primary == _SQLITE_FULL or "disk is full" in lowered:
        return StorageError(f"{path}: disk full while {action}; nothing was saved. "
                            "Free some space and try again")
    if primary in (_SQLITE_IOERR, _SQLITE_READONLY) or "readonly" in lowered or "disk i/o" in lowered:
        return StorageError(f"{path}: cannot write the project database while {action} "
                            f"({_short(text)}); nothing was saved")
    return StorageError(f"{path}: database error while {action} ({_short(text)}); nothing was saved")


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"


def quick_check(conn: sqlite3.Connection, path: Path, *, full: bool = False) -> list[str]:
    """SQLite's own consistency check: [] when sound, else its problem lines.

    ``quick_check`` (on every open) reads every page but skips index-vs-table cross checks;
    ``integrity_check`` (``alseg status --check``) does those too.
    """
    pragma = "integrity_check" if full else "quick_check"
    try:
        lines = [row[0] for row in conn.execute(f"PRAGMA {pragma}").fetchall()]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if lines == ["ok"] else [str(line) for line in lines]


class Database:
    """The project's ``project.sqlite``: per-thread connections and explicit transactions."""

    def __init__(self, path: Path, migrations: Sequence[Sequence[str]] = MIGRATIONS, *,
                 check: bool = True) -> None:
        """Open (and migrate) ``path``; with ``check`` a damaged file is refused before any write."""
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        conn = self.connection()
        try:
            problems = quick_check(conn, path) if check else []
            if problems:
                raise DamagedProjectError(damaged_message(path, problems[0]))
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
            conn = connect(self.path)
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
        """``BEGIN IMMEDIATE`` … ``COMMIT``; any exception rolls back and propagates.

        sqlite3 errors (disk full, damage, a failed ``COMMIT``) come out as one AlsegError
        line naming the database; after it the transaction is rolled back, so nothing of
        it was saved and the connection is ready for the next one.
        """
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise database_error(self.path, exc, action) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise database_error(self.path, exc, action) from None
            raise

    def problems(self, *, full: bool = True) -> list[str]:
        """SQLite's check of the file (see :func:`quick_check`); [] when sound."""
        return quick_check(self.connection(), self.path, full=full)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is open; SQLite may already have rolled back after a full disk."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
