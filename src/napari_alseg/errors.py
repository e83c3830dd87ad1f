"""One exception type for every mistake a user can make.

Anything raised as :class:`AlsegError` is shown to the user as its one-line message
(CLI: printed to stderr, exit code 2; napari: a notification), never as a traceback.
"""


class AlsegError(Exception):
    """A user-facing problem: bad input file, bad argument, missing data."""


class Cancelled(AlsegError):
    """The user cancelled long work; nothing was changed. Reported as information, not error."""


class DamagedProjectError(AlsegError):
    """A project's database or files fail a check: refused before anything is trusted or written."""


class StorageError(AlsegError):
    """A write could not be completed (disk full, read-only, I/O error); nothing was half-saved."""


class BadCasesError(AlsegError):
    """Some cases of a source folder cannot be used; ``skipped`` holds ``(case, reason)`` pairs.

    Creating the project with ``skip_bad_cases=True`` leaves them out (and lists them).
    """

    def __init__(self, message: str, skipped: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.skipped = skipped
