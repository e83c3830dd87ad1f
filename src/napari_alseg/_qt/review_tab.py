"""The Review tab: predicted quality of each unlabelled case (or slice); accept, edit or reject it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..domain import CASE, QueryItem
from .describe import item_text, rich
from .tables import fill_table, make_table, selected_key

if TYPE_CHECKING:
    from .controller import AlsegController

BANDS = "Poor (Dice < 0.6), Acceptable with adjustments (0.6–0.8), Acceptable (> 0.8)"
HOW = ("Each rating is the Dice the prediction is expected to reach, with its 80 % interval (the "
       "quality class is the band of that Dice), best first.")


class ReviewTab(QWidget):
    def __init__(self, controller: AlsegController) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        self.note = QLabel(f"Predicted quality of each unlabelled case's segmentation: {BANDS}. {HOW}")
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.basis_label = QLabel("")
        self.basis_label.setTextFormat(Qt.TextFormat.RichText)  # its note escaped (basis_text)
        self.basis_label.setWordWrap(True)
        layout.addWidget(self.basis_label)
        self.review_table = make_table(["item", "predicted quality", "predicted Dice", "80 % interval"])
        self.review_table.sortByColumn(2, Qt.SortOrder.DescendingOrder)  # best first; a click re-sorts
        layout.addWidget(self.review_table)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(lambda: self._with_selected(controller.accept_case))
        self.edit_button = QPushButton("Edit")
        self.edit_button.clicked.connect(lambda: self._with_selected(self._edit))
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(lambda: self._with_selected(controller.reject_case))
        for button in (self.accept_button, self.edit_button, self.reject_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.review_note = QLabel("")
        self.review_note.setTextFormat(Qt.TextFormat.PlainText)  # the quality status may name classes
        self.review_note.setWordWrap(True)
        layout.addWidget(self.review_note)
        controller.suggestions_changed.connect(self._show_review)
        controller.project_opened.connect(lambda: self._enable(True))
        controller.project_closed.connect(lambda: self._enable(False))
        self._enable(False)

    def _with_selected(self, verb: Callable[[Any], None]) -> None:
        """``verb`` of the selected row's key: a case's name (Accept, Reject, Edit) or, in a
        project of slices, a slice's QueryItem (Edit)."""
        key = selected_key(self.review_table)
        if key is None:
            self.controller.warning.emit("Select a row in the table first.")
            return
        verb(key)

    def _edit(self, key: str | QueryItem) -> None:
        """A case (the table's key: its name) or a slice opens for correction."""
        self.controller.edit_item(key if isinstance(key, QueryItem) else QueryItem(key))

    def _show_review(self) -> None:
        session = self.controller.session
        cases = session.catalog.granularity == CASE
        names = [c.name for c in session.catalog.classes]
        unit = "case" if cases else "slice"
        self.note.setText(f"Predicted quality of each unlabelled {unit}'s segmentation: {BANDS}. {HOW}")
        rows = session.queries.quality_rows()
        keys = [item.case if cases else item for item, _estimate in rows]
        fill_table(self.review_table, [(item_text(item, names), e.class_name, e.dice, interval_text(e.low, e.high))
                                       for item, e in rows], keys)
        queries = session.queries
        self.basis_label.setText(basis_text(queries.quality_basis, queries.quality_note) if rows else "")
        for button in (self.accept_button, self.reject_button):  # pseudo-labels are whole cases
            button.setEnabled(cases and bool(rows))
        self.edit_button.setEnabled(bool(rows))
        if rows and cases:
            self.review_note.setText("Accept stores the prediction as a pseudo-label; Edit opens it for "
                                     "correction; Reject keeps the case for the annotator.")
        elif rows:
            self.review_note.setText("Edit opens the slice with the model's prediction for correction; "
                                     "pseudo-labels (Accept) are for whole cases.")
        else:
            status = session.queries.quality_status
            self.review_note.setText(
                f"No quality ratings yet ({status.removeprefix('quality unknown: ')}). " if status else
                "No quality ratings yet. ")
            self.review_note.setText(self.review_note.text() + (
                "They appear after the first retrain, calibrated by predictions of known Dice: the "
                "validation split, each labelled item rated by a model that never trained on it, and "
                "corrections."))

    def _enable(self, enabled: bool) -> None:
        for button in (self.accept_button, self.edit_button, self.reject_button):
            button.setEnabled(enabled)


def interval_text(low: float, high: float) -> str:
    return f"{low:.2f}–{high:.2f}"


def basis_text(n_examples: int, note: str) -> str:
    """How many predictions of known Dice the ratings rest on, and any caveat (rich text, the
    caveat escaped: it may name classes)."""
    if n_examples == 0:
        text = "Rated from no prediction of known Dice yet: the model's own soft Dice, not yet calibrated."
    else:
        text = (f"Rated from {n_examples} prediction{'s' if n_examples != 1 else ''} of known Dice "
                "(validation split, labelled items rated out of fold, corrections, ROI submits).")
    return f"{text} <i>Note: {rich(note)}.</i>" if note else text
