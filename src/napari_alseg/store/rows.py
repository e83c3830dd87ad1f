"""Small conversions every part of the project store uses: ids, durations, timestamps."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from ..errors import AlsegError


def optional_int(value: int | np.integer | None) -> int | None:
    """sqlite3 cannot bind numpy integers; slice and class ids often arrive as them."""
    return None if value is None else int(value)


def checked_seconds(seconds: float) -> float:
    if not (np.isfinite(seconds) and seconds >= 0):
        raise AlsegError(f"seconds_active must be a finite duration >= 0 s, got {seconds}")
    return float(seconds)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC; a naive datetime is taken as local time."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
