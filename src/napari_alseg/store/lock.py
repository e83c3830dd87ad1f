"""One process per project: an exclusive lock held while it is open.

Two processes appending label versions to the same folder would race on version numbers;
the second opener is refused with the holder's PID instead. The operating system drops the
lock when the holder dies (even by SIGKILL), so a crash never leaves the project locked.

What is locked, per platform:

* POSIX: ``flock`` on ``project.lock`` (which holds the holder's PID, for the message) *and*
  on ``project.sqlite`` itself. Deleting ``project.lock`` while the project is open
  therefore lets nobody in: the database file stays locked. (SQLite's own locks are
  ``fcntl`` byte-range locks, which ``flock`` does not interact with on local disks.)
* Windows: ``msvcrt.locking`` on a byte of ``project.lock`` far past its text; Windows
  refuses to delete a file another process holds open, so the lock file cannot vanish.

Neither module is imported at module level, so this module (and the widget that imports
the store) loads on every platform.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from ..errors import AlsegError, disk_cause, storage_error

LOCK_NAME = "project.lock"
log = logging.getLogger(__name__)
_WINDOWS_LOCK_OFFSET = 1 << 30  # beyond the PID text, so readers can still read it


class ProjectLock:
    """An acquired lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int | None, *, read_only: str | None = None) -> None:
        self.path = path
        self._fd: int | None = fd
        self._guards: list[int] = []  # extra locked files (the database), POSIX only
        self._held = True
        self.read_only = read_only  # why project.lock could not be written (a read-only project), or None

    @classmethod
    def acquire(cls, folder: Path, *, database: Path | None = None,
                allow_read_only: bool = False) -> ProjectLock:
        """Lock ``folder`` (and ``database`` when it exists), or raise AlsegError naming the holder.

        With ``allow_read_only`` a ``project.lock`` that cannot be opened for writing (a read-only
        file system, no write permission) is locked through a read-only descriptor (``flock``
        needs none), or, where it does not exist, the database alone guards the project; the
        lock's :attr:`read_only` then says why.
        """
        path = folder / LOCK_NAME
        guard = None
        if database is not None and database.is_file() and _backend() == "flock":
            guard = _open_locked(database, folder, holder_file=path)
        read_only = None
        try:
            fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if allow_read_only and exc.errno in READ_ONLY_ERRNOS and database is not None:
                read_only = disk_cause(exc)
                fd = _open_read_only(path)
            else:
                if guard is not None:
                    _unlock_and_close(guard)
                raise storage_error(path, exc, "create the project lock", "nothing was changed") from None
        if fd is None:  # read-only and no project.lock: the database's flock is the lock
            lock = cls(path, None, read_only=read_only)
            if guard is not None:
                lock._guards.append(guard)
            return lock
        try:
            locked = _try_lock(fd)
        except OSError as exc:
            os.close(fd)
            if guard is not None:
                _unlock_and_close(guard)
            raise AlsegError(f"{path}: cannot lock the project ({exc.strerror or exc}); this file "
                             "system offers no file locks, so keep the project on a local disk") from None
        if not locked:
            holder = _read_holder(fd)
            os.close(fd)
            if guard is not None:
                _unlock_and_close(guard)
            raise AlsegError(f"{folder}: project is already open {_describe(holder)}; "
                             "close it there first") from None
        lock = cls(path, fd, read_only=read_only)
        if guard is not None:
            lock._guards.append(guard)
        if read_only is not None:
            return lock
        try:
            _write_holder(fd, path)
        except BaseException:
            lock.release()
            raise
        return lock

    def guard(self, database: Path) -> None:
        """Also lock ``database`` (a project just created under this lock)."""
        if not self._held or _backend() != "flock":
            return
        for attempt in range(20):  # an opener refused by project.lock may hold it for a moment
            try:
                guard = _open_locked(database, self.path.parent, holder_file=self.path)
                if guard is not None:
                    self._guards.append(guard)
                return
            except AlsegError:
                if attempt == 19:
                    raise
                time.sleep(0.05)

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._fd is not None:
            if self.read_only is None:
                try:
                    os.ftruncate(self._fd, 0)
                except OSError:
                    pass
            _unlock_and_close(self._fd)
            self._fd = None
        for guard in self._guards:
            _unlock_and_close(guard)
        self._guards.clear()


READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def _open_read_only(path: Path) -> int | None:
    """``project.lock`` opened for reading (to ``flock`` it), or None where it does not exist."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(path, exc, "open the project lock", "nothing was changed") from None


def _backend() -> str:
    """``"flock"`` (POSIX), ``"msvcrt"`` (Windows), or ``"none"``."""
    try:
        import fcntl  # noqa: F401
        return "flock"
    except ImportError:
        pass
    try:
        import msvcrt  # noqa: F401
        return "msvcrt"
    except ImportError:
        return "none"


def _try_lock(fd: int) -> bool:
    backend = _backend()
    if backend == "flock":
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise  # no locking here (e.g. some network file systems): not "already open"
        return True
    if backend == "msvcrt":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            # the stubs give msvcrt its functions on Windows only; the backend is chosen by what imports
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    raise AlsegError("this platform offers no file locking (neither fcntl nor msvcrt); "
                     "napari-alseg cannot keep a project to one process here")


def _unlock_and_close(fd: int) -> None:
    try:
        backend = _backend()
        if backend == "flock":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
        elif backend == "msvcrt":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]  # as in _try_lock
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_locked(database: Path, folder: Path, *, holder_file: Path) -> int | None:
    """An fd of ``database`` with an exclusive ``flock`` on it, AlsegError when another
    process holds it, or None where the file system cannot lock a read-only descriptor
    (NFS emulates flock with fcntl locks): then ``project.lock`` alone guards the project."""
    try:
        fd = os.open(database, os.O_RDONLY)
    except OSError as exc:
        raise AlsegError(f"{database}: cannot open the project database ({exc.strerror})") from None
    try:
        locked = _try_lock(fd)
    except OSError as exc:
        os.close(fd)
        log.warning("cannot lock %s (%s); relying on %s alone", database, exc.strerror or exc, LOCK_NAME)
        return None
    if locked:
        return fd
    os.close(fd)
    holder = None
    try:
        with open(holder_file, "rb") as handle:
            text = handle.read(32).decode("ascii", "replace").strip()
        holder = int(text) if text.isdigit() else None
    except OSError:
        pass
    where = _describe(holder) if holder is not None else (
        f"in another process (its {LOCK_NAME} was deleted, so its PID is unknown)")
    raise AlsegError(f"{folder}: project is already open {where}; close it there first")


def _write_holder(fd: int, path: Path) -> None:
    """Write this process's PID into the lock file, for the "already open" message of others.

    Best effort: the ``flock`` is the lock, the PID only names its holder. On a full disk
    (or a file that cannot be written) the project still opens, so it can be read, exported
    elsewhere or have space freed in it; a second opener is refused without the PID.
    """
    try:
        os.ftruncate(fd, 0)
        _write_at_start(fd)
    except OSError as exc:
        log.info("%s: cannot write the holder's PID (%s); the lock is held without it", path, disk_cause(exc))


def _write_at_start(fd: int) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())


def _read_holder(fd: int) -> int | None:
    try:
        if hasattr(os, "pread"):
            raw = os.pread(fd, 32, 0)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            raw = os.read(fd, 32)
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _describe(pid: int | None) -> str:
    if pid is None:
        return "in another process"
    if pid == os.getpid():
        return f"in this process (PID {pid})"
    return f"in another process (PID {pid})"
