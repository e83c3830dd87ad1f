"""The Effort tab: boundary traced and time spent per class, remaining effort, learning curve."""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget

from .learning_curve import LearningCurve
from .tables import fill_table, make_table


class EffortTab(QWidget):
    def __init__(self, controller) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        self.effort_table = make_table(["class", "spent mm", "spent s", "remaining mm"])
        layout.addWidget(self.effort_table)
        self.curve = LearningCurve()
        layout.addWidget(self.curve)
        controller.suggestions_changed.connect(self._show_effort)

    def _show_effort(self) -> None:
        session = self.controller.session
        summary = session.effort_summary()
        rows = [(name, values["spent_mm"], values["spent_s"], values["remaining_mm"])
                for name, values in summary.items()]
        fill_table(self.effort_table, rows, [name for name, *_ in rows])
        self.curve.show_points(session.learning_curve())
