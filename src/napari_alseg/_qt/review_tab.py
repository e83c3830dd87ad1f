"""The Review tab: predicted quality of each unlabelled case; accept, edit or reject it."""

from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..domain import CASE
from .tables import fill_table, make_table, selected_key


class ReviewTab(QWidget):
    def __init__(self, controller) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        note = QLabel("Predicted quality of each unlabelled case's segmentation: Poor (Dice < 0.6), "
                      "Acceptable with adjustments (0.6–0.8), Acceptable (> 0.8).")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.review_table = make_table(["case", "predicted quality", "probability"])
        layout.addWidget(self.review_table)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(lambda: self._with_selected(controller.accept_case))
        self.edit_button = QPushButton("Edit")
        self.edit_button.clicked.connect(lambda: self._with_selected(controller.edit_case))
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(lambda: self._with_selected(controller.reject_case))
        for button in (self.accept_button, self.edit_button, self.reject_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.review_note = QLabel("")
        self.review_note.setWordWrap(True)
        layout.addWidget(self.review_note)
        controller.suggestions_changed.connect(self._show_review)
        controller.project_opened.connect(lambda: self._enable(True))
        controller.project_closed.connect(lambda: self._enable(False))
        self._enable(False)

    def _with_selected(self, verb) -> None:
        case = selected_key(self.review_table)
        if case is None:
            self.controller.warning.emit("Select a case in the table first.")
            return
        verb(case)

    def _show_review(self) -> None:
        session = self.controller.session
        rows = session.quality_rows()
        fill_table(self.review_table, [(case, quality, prob) for case, quality, prob in rows],
                   [case for case, _q, _p in rows])
        if rows:
            self.review_note.setText("Accept stores the prediction as a pseudo-label; Edit opens it for "
                                     "correction; Reject keeps the case for the annotator.")
        elif session.project.granularity != CASE:
            self.review_note.setText("Quality review rates whole 3D cases; this project annotates slices.")
        else:
            self.review_note.setText("No quality ratings yet: they appear after a retrain once enough "
                                     "predictions have a known Dice (validation cases, corrections).")

    def _enable(self, enabled: bool) -> None:
        for button in (self.accept_button, self.edit_button, self.reject_button):
            button.setEnabled(enabled)
