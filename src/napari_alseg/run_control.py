"""One object a long run is handed: it reports how far the run is and says when to stop.

Training, scoring and the session's verbs take one :class:`RunControl` (``control=``); a
caller that does not care passes nothing and gets :meth:`RunControl.none`. The dock's job
runner makes one whose reports go to the UI thread and whose stop is the job's Cancel; a
script makes one around ``print`` (``RunControl(lambda update: print(update.done, update.total))``).

Cancel convention: a run stops by raising :class:`~napari_alseg.errors.Cancelled` (an
``AlsegError`` shown as information), at the next point it asks (:meth:`RunControl.check`:
before each training step, each scored case or slice, each VAE step), so nothing half-done
is handed back: a partial pool would rank items by whichever happened to be scored first,
and a cancelled fine-tune returns no weights, so its caller keeps its model. The one place
that catches it is the boundary that must still hand something back: a retrain round
(``Learner.compute_round``) turns a cancelled fine-tune into a cancelled round, which adopts
to nothing ("training cancelled; model v0003 kept"), and a cancelled quality fold ends the
folds while the round's trained model is kept whole. :attr:`RunControl.stopped` is for a loop
that words its own ``Cancelled`` (training says how many steps it did).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import Cancelled

CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunProgress:
    """How far a run is: ``done`` of ``total`` units (steps, cases or slices; a time-budgeted
    round's ``total`` is an estimate), and the run's own record where it has more to say
    (``detail``: a training step's :class:`~napari_alseg.model.TrainProgress`, with loss and
    seconds left), else None."""

    done: int
    total: int
    detail: Any = None


class RunControl:
    """``on_report(RunProgress)`` after each unit of work, in the worker's thread (None: no
    reports); ``stop_requested()`` says whether to stop (None: never). See the module for
    the cancel convention."""

    def __init__(self, on_report: Callable[[RunProgress], object] | None = None,
                 stop_requested: Callable[[], bool] | None = None) -> None:
        self._on_report = on_report
        self._stop_requested = stop_requested

    @classmethod
    def none(cls) -> RunControl:
        """No reports, never stops: the default of every run."""
        return _NONE

    def report(self, done: int, total: int, detail: Any = None) -> None:
        if self._on_report is not None:
            self._on_report(RunProgress(done, total, detail))

    @property
    def stopped(self) -> bool:
        """Whether the run was asked to stop."""
        return self._stop_requested is not None and self._stop_requested()

    def check(self, message: str = CANCELLED) -> None:
        """Raise :class:`~napari_alseg.errors.Cancelled` with ``message`` when asked to stop."""
        if self.stopped:
            raise Cancelled(message)

    def reporting_to(self, on_report: Callable[[RunProgress], object] | None) -> RunControl:
        """The same stop with reports sent to ``on_report`` instead (a stage that rescales its
        steps into the whole run's counter), or dropped (None: a stage whose units are not the
        run's, as a bootstrap member's training steps in a round of scoring)."""
        return RunControl(on_report, self._stop_requested)


_NONE = RunControl()
