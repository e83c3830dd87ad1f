"""Low-level SQLite helpers of the store: connections, one-line errors, checks, transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import AlsegError, DamagedProjectError, StorageError

_BUSY_TIMEOUT_S = 30.0
# SQLite primary result codes (sqlite3.h) that tell damage and full disks apart
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB, _SQLITE_READONLY = 10, 11, 13, 26, 8
_MESSAGE_CHARS = 160


def connect(path: Path, *, wal: bool = True, read_only: bool = False) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (explicit ``BEGIN``/``COMMIT``), or raise AlsegError.

    ``read_only``: SQLite's ``mode=ro`` (every write refused by SQLite itself). A WAL database
    on a read-only folder has no ``-shm`` to share and cannot make one; there it is opened as
    ``immutable`` when no ``-wal`` holds commits (after a clean close none does), and refused in
    one line otherwise, since its last commits would be missed.
    """
    if read_only:
        return _connect_read_only(path)
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


def _connect_read_only(path: Path) -> sqlite3.Connection:
    wal = Path(f"{path}-wal")
    try:
        wal_has_commits = wal.is_file() and wal.stat().st_size > 0
    except OSError:
        wal_has_commits = True
    error: sqlite3.Error | None = None
    for options in ("mode=ro",) if wal_has_commits else ("mode=ro", "immutable=1"):
        conn = None
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?{options}", uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens lazily: open now
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA query_only = ON")
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            error = exc
            if isinstance(database_error(path, exc, ""), DamagedProjectError):
                break
    assert error is not None, "every way of opening failed, each keeping its error"
    if wal_has_commits and not isinstance(database_error(path, error, ""), DamagedProjectError):
        raise StorageError(f"{path}: cannot open the read-only project: its last commits are in "
                           f"{wal.name}, which SQLite cannot read without writing {path.name}-shm "
                           f"({_short(str(error))}); open it once where it can be written")
    raise database_error(path, error, "opening the project read-only") from None


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
                            "Free some space and try again", "disk full")
    if primary == _SQLITE_READONLY or "readonly" in lowered:
        return StorageError(f"{path}: cannot write the project database while {action} (read-only: a "
                            "read-only file system or no write permission); nothing was saved", "read-only")
    if primary == _SQLITE_IOERR or "disk i/o" in lowered:
        return StorageError(f"{path}: cannot write the project database while {action} "
                            f"({_short(text)}); nothing was saved", _short(text))
    return StorageError(f"{path}: database error while {action} ({_short(text)}); nothing was saved",
                        _short(text))


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


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path, action: str = "saving") -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on ``conn`` (autocommit mode); any exception rolls back
    and propagates.

    sqlite3 errors (disk full, damage, a failed ``COMMIT``) come out as one AlsegError
    line naming the database ``path``; after it the transaction is rolled back, so nothing
    of it was saved and the connection is ready for the next one.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise database_error(path, exc, action) from None
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        _rollback(conn)
        if isinstance(exc, sqlite3.Error):
            raise database_error(path, exc, action) from None
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is open; SQLite may already have rolled back after a full disk."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
