"""One process per project: an exclusive ``flock`` on ``project.lock`` while it is open.

Two processes appending label versions to the same folder would race on version numbers;
the second opener is refused with the holder's PID instead. The kernel drops the lock when
the holder dies (even by SIGKILL), so a crash never leaves the project locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import AlsegError

LOCK_NAME = "project.lock"


class ProjectLock:
    """An acquired lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: Path) -> ProjectLock:
        path = folder / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AlsegError(f"{path}: cannot create the project lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AlsegError(f"{folder}: project is already open {_describe(holder)}; "
                             "close it there first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _describe(pid: int | None) -> str:
    if pid is None:
        return "in another process"
    if pid == os.getpid():
        return f"in this process (PID {pid})"
    return f"in another process (PID {pid})"
