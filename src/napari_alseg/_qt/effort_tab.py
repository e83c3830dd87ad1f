"""The Effort tab: boundary traced and time spent per class, remaining effort, learning curve.

The "all classes" row is the sum of the class rows (the session splits whole-slice and
whole-case submits between classes); remaining seconds come from the annotator's own timing
and stay blank until enough timed submits exist to fit it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtGui import QShowEvent
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..pricing import SecondsCosts
from .background import duration_text
from .learning_curve import LearningCurve
from .tables import fill_table, fit_to_width, make_table

if TYPE_CHECKING:
    from ..session import Session
    from ..session.cohort_time import CohortSeconds
    from .controller import AlsegController

HEADERS = ["class", "spent mm", "spent s", "left mm", "left s"]
COHORT_TIP = ("Seconds of the whole cohort (the pool less the held-out items). Spent: your active time. "
              "Tracing is priced at {speed:g} s per mm of outline (the cohort benchmark's stated speed); "
              "left with the current model: reviewing each item plus redrawing the outline the model "
              "itself doubts, from the last scoring.")


def hours_text(seconds: float) -> str:
    """A cohort's duration to the minute (``12 min``, ``3 h 05 min``; under a minute ``40 s``)."""
    return duration_text(seconds, to_the_minute=True)


def cohort_text(cohort: CohortSeconds) -> str:
    """The Effort tab's cohort line from a :class:`~napari_alseg.session.cohort_time.CohortSeconds`."""
    total = cohort.items_done + cohort.items_left
    done = f"Cohort: {cohort.items_done} of {total} items done"
    if cohort.items_done and cohort.spent_s <= 0:  # labels imported or submitted by a script: no time to compare
        done += f" (untimed: tracing them would take {hours_text(cohort.traced_done_s)})"
    elif cohort.items_done:
        saved = cohort.saved_s
        verdict = f"saved {hours_text(saved)}" if saved >= 0 else f"{hours_text(-saved)} more than tracing"
        done += (f", {hours_text(cohort.spent_s)} spent (tracing them: {hours_text(cohort.traced_done_s)}, "
                 f"{verdict})")
    if not cohort.items_left:
        return done + "."
    model = ("with the current model: after the next retrain and scoring" if cohort.left_with_model_s is None
             else f"~{hours_text(cohort.left_with_model_s)} with the current model")
    trace = ("tracing the rest: once an outline is traced" if cohort.trace_rest_s is None
             else f"tracing the rest ~{hours_text(cohort.trace_rest_s)}")
    return f"{done}. Left: {model}; {trace}."


def guessed_text(session: Session) -> str:
    """Which classes' "left mm" is the prior's guess (no outline of theirs traced yet), or ""."""
    model = session.accounting.effort_model()
    names = session.catalog.class_names
    unseen = [names[c] for c in range(1, len(names)) if model.delineations(c) == 0]
    if not unseen or len(unseen) == len(names) - 1:
        return ""
    return (f"Left mm of {', '.join(unseen)} is a guess: no outline of {'it' if len(unseen) == 1 else 'them'} "
            "traced yet, so each slice is priced at the typical outline traced so far.")


class EffortTab(QWidget):
    def __init__(self, controller: AlsegController) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        self.effort_table = make_table(HEADERS, sortable=False)
        fit_to_width(self.effort_table, stretch_column=0)
        self.effort_table.setToolTip("Boundary traced (mm) and active time (s) so far, and what is left to "
                                     "trace (left mm, docs/METHODS.md §7.4) with its estimated seconds (left s); "
                                     "'all classes' is the sum of the rows above")
        layout.addWidget(self.effort_table)
        self.cohort_label = QLabel("")
        self.cohort_label.setWordWrap(True)
        self.cohort_label.setToolTip(COHORT_TIP.format(speed=SecondsCosts().trace_seconds_per_mm))
        layout.addWidget(self.cohort_label)
        self.timing_label = QLabel("")
        self.timing_label.setWordWrap(True)
        layout.addWidget(self.timing_label)
        self.curve = LearningCurve()
        layout.addWidget(self.curve)
        self.stale = False  # the suggestions changed while the tab was hidden
        controller.suggestions_changed.connect(self._suggestions_changed)

    def _suggestions_changed(self) -> None:
        """Refresh now when on screen, else when next shown: the summary and the cohort line
        read every label (0.2-0.5 s of the UI thread after each Submit and at the end of each
        round, the worst stall of a round in benchmarks/bench_latency.py)."""
        if self.isVisible():
            self._show_effort()
        else:
            self.stale = True

    def showEvent(self, event: QShowEvent | None) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self.stale and self.controller.session is not None:
            self.stale = False
            self._show_effort()

    def _show_effort(self) -> None:
        session = self.controller.session
        if session is None:
            return
        summary = session.accounting.effort_summary()
        rows = [(name, values["spent_mm"], values["spent_s"], values["remaining_mm"], values["remaining_s"])
                for name, values in summary.items()]
        fill_table(self.effort_table, rows, [name for name, *_ in rows])
        timing = ("Remaining seconds: estimated from your own timing (seconds ≈ a + b · boundary)."
                  if session.accounting.seconds_model() is not None else
                  "Remaining seconds appear once two timed submits with traced boundary exist.")
        self.timing_label.setText(f"{guessed_text(session)} {timing}".strip())
        self.cohort_label.setText(cohort_text(session.cohort_seconds()))
        self.curve.show_points(session.accounting.learning_curve())
