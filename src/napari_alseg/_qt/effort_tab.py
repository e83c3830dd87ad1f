"""The Effort tab: boundary traced and time spent per class, remaining effort, learning curve.

The "all classes" row is the sum of the class rows (the session splits whole-slice and
whole-case submits between classes); remaining seconds come from the annotator's own timing
and stay blank until enough timed submits exist to fit it.
"""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from .learning_curve import LearningCurve
from .tables import fill_table, fit_to_width, make_table

HEADERS = ["class", "spent mm", "spent s", "left mm", "left s"]


def guessed_text(session) -> str:
    """Which classes' "left mm" is the prior's guess (no outline of theirs traced yet), or ""."""
    model = session.effort_model()
    names = session.project.class_names
    unseen = [names[c] for c in range(1, len(names)) if model.delineations(c) == 0]
    if not unseen or len(unseen) == len(names) - 1:
        return ""
    return (f"Left mm of {', '.join(unseen)} is a guess: no outline of {'it' if len(unseen) == 1 else 'them'} "
            "traced yet, so each slice is priced at the typical outline traced so far.")


class EffortTab(QWidget):
    def __init__(self, controller) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        self.effort_table = make_table(HEADERS, sortable=False)
        fit_to_width(self.effort_table, stretch_column=0)
        self.effort_table.setToolTip("Boundary traced (mm) and active time (s) so far, and what is left to "
                                     "trace (left mm, METHODS E) with its estimated seconds (left s); 'all classes' is the "
                                     "sum of the rows above")
        layout.addWidget(self.effort_table)
        self.timing_label = QLabel("")
        self.timing_label.setWordWrap(True)
        layout.addWidget(self.timing_label)
        self.curve = LearningCurve()
        layout.addWidget(self.curve)
        controller.suggestions_changed.connect(self._show_effort)

    def _show_effort(self) -> None:
        session = self.controller.session
        summary = session.effort_summary()
        rows = [(name, values["spent_mm"], values["spent_s"], values["remaining_mm"], values["remaining_s"])
                for name, values in summary.items()]
        fill_table(self.effort_table, rows, [name for name, *_ in rows])
        timing = ("Remaining seconds: estimated from your own timing (seconds ≈ a + b · boundary)."
                  if session.seconds_model() is not None else
                  "Remaining seconds appear once two timed submits with traced boundary exist.")
        self.timing_label.setText(f"{guessed_text(session)} {timing}".strip())
        self.curve.show_points(session.learning_curve())
