"""Atomic file replacement: a reader (or a crash) sees the old file or the new one, never half.

Used for every file the annotator's work depends on: label versions, checkpoints, exports,
the project database. Also the folder-making helpers (:func:`make_folder`, :func:`claim_folder`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import AlsegError, storage_error


def _read_umask() -> int:
    """Read once at import (single-threaded then): os.umask can only be read by setting it."""
    current = os.umask(0o022)
    os.umask(current)
    return current


FILE_UMASK = _read_umask()


def make_folder(folder: str | os.PathLike, what: str = "the folder") -> Path:
    """Create ``folder`` (and its parents) if missing; one AlsegError line naming ``what`` if not possible."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AlsegError(f"{folder}: is a file, not a folder; it cannot be {what}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(folder, exc, f"create {what}", "nothing was changed") from None
    return folder


def claim_folder(folder: str | os.PathLike, what: str = "the folder") -> bool:
    """Create ``folder`` exclusively (parents as needed): True when this call made it, False
    when it already existed. Of two racing callers exactly one gets True, so only that one
    may ever remove it."""
    folder = Path(folder)
    make_folder(folder.parent, f"the folder of {what}")
    try:
        folder.mkdir()
    except FileExistsError:
        if not folder.is_dir():
            raise AlsegError(f"{folder}: is a file, not a folder; it cannot be {what}") from None
        return False
    except OSError as exc:
        raise storage_error(folder, exc, f"create {what}", "nothing was changed") from None
    return True


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; then fsync it, rename it over ``path``
    and fsync the folder. On any error the temp file is removed and ``path`` is untouched.

    The temp name starts with a dot and holds ``.tmp``, so folder scans can ignore debris.
    """
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(descriptor)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~FILE_UMASK)  # mkstemp makes it 0600; give it a normal file's mode
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename durable: the directory entry must reach the disk too (POSIX)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
