"""One exception type for every mistake a user can make.

Anything raised as :class:`AlsegError` is shown to the user as its one-line message
(CLI: printed to stderr, exit code 2; napari: a notification), never as a traceback.
"""

import errno


class AlsegError(Exception):
    """A user-facing problem: bad input file, bad argument, missing data."""


class Cancelled(AlsegError):
    """The user cancelled long work; nothing was changed. Reported as information, not error."""


class DamagedProjectError(AlsegError):
    """A project's database or files fail a check: refused before anything is trusted or written."""


class DamagedLabelsError(AlsegError):
    """One label version of one case cannot be read or fails its checksum. Blocks only what
    needs that case's labels: the rest of the project (status, other cases' exports) goes on."""

    def __init__(self, message: str, case: str = "", version: int = 0) -> None:
        super().__init__(message)
        self.case = case
        self.version = version


class StorageError(AlsegError):
    """A write could not be completed (disk full, read-only, I/O error); nothing was half-saved.
    ``cause``: the reason in a few words (``disk full``), where known."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class BadCasesError(AlsegError):
    """Some cases of a source folder cannot be used; ``skipped`` holds ``(case, reason)`` pairs.

    Creating the project with ``skip_bad_cases=True`` leaves them out (and lists them).
    """

    def __init__(self, message: str, skipped: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.skipped = skipped


_DISK_CAUSES = {  # errno name -> what the user reads (the numbers differ per platform)
    "ENOSPC": "disk full", "EDQUOT": "disk quota exceeded", "EROFS": "read-only file system",
    "EACCES": "permission denied", "EPERM": "permission denied", "EIO": "input/output error",
}


def disk_cause(exc: BaseException) -> str:
    """The cause of a failed write in a few words: ``disk full``, ``read-only file system``,
    ``permission denied``, else the system's own text."""
    number = getattr(exc, "errno", None)
    name = errno.errorcode.get(number, "") if isinstance(number, int) else ""
    if name in _DISK_CAUSES:
        return _DISK_CAUSES[name]
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def storage_error(path: object, exc: BaseException, what: str,
                  outcome: str = "nothing was saved") -> StorageError:
    """One line for a failed write: ``<path>: cannot <what> (disk full); <outcome>``."""
    cause = disk_cause(exc)
    advice = "; free some space and try again" if cause in ("disk full", "disk quota exceeded") else ""
    return StorageError(f"{path}: cannot {what} ({cause}); {outcome}{advice}", cause)
