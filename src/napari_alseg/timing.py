"""Active annotation time: what the effort calibration (seconds ≈ a + b·length) needs.

Wall time from "Go" to "Submit" overstates effort whenever the annotator is
interrupted, so gaps between edits longer than ``idle_after`` count only up to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

IDLE_AFTER_SECONDS = 30.0


class ActivityClock:
    """Counts active seconds from :meth:`start` through :meth:`touch` calls (edits, clicks)."""

    def __init__(self, *, idle_after: float = IDLE_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_after = idle_after
        self._clock = clock
        self._last: float | None = None
        self._active = 0.0
        self.started_at: datetime | None = None

    def start(self) -> None:
        self._last = self._clock()
        self._active = 0.0
        self.started_at = datetime.now(timezone.utc)

    def touch(self) -> None:
        if self._last is None:
            self.start()
            return
        now = self._clock()
        self._active += min(now - self._last, self.idle_after)
        self._last = now

    def active_seconds(self) -> float:
        """Active time so far, counting up to now (itself an activity: the submit click)."""
        if self._last is None:
            return 0.0
        self.touch()
        return self._active
