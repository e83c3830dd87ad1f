"""The Annotate tab: the suggestion queue, the annotating buttons, and the model box."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..domain import QUALITY_CLASS_NAMES, TERM_EFFORT_MM, QueryItem
from .clicking import NEGATIVE_KEY, POSITIVE_KEY
from .describe import describe, quality_text, short_item_text
from .model_box import ModelBox
from .tables import fill_table, fit_to_width, make_table, row_key
from .uncertainty_profile import UncertaintyProfile

if TYPE_CHECKING:
    from .controller import AlsegController

QUEUE_HEADERS = ["#", "item", "score", "mm", "quality"]  # the rest is in each row's tooltip
QUALITY_SHORT = dict(zip(QUALITY_CLASS_NAMES, ("Poor", "Adjust", "Good")))


class AnnotateTab(QWidget):
    def __init__(self, controller: AlsegController) -> None:
        super().__init__()
        self.controller = controller
        layout = QVBoxLayout(self)
        layout.addWidget(self._suggestion_box())
        layout.addWidget(self._annotate_box())
        self.model_box = ModelBox(controller)
        layout.addWidget(self.model_box)
        layout.addStretch(1)
        controller.suggestions_changed.connect(self._show_queue)
        controller.suggestion_changed.connect(self._show_queue)
        controller.classes_changed.connect(lambda: self._show_queue() if controller.suggestions else None)
        controller.heat_map_toggled.connect(self.heat_check.setChecked)
        controller.click_mode_changed.connect(self._show_click_mode)
        controller.project_opened.connect(lambda: self._enable(True))
        controller.project_closed.connect(lambda: self._enable(False))
        self._enable(False)

    def _suggestion_box(self) -> QGroupBox:
        box = QGroupBox("Next suggestion")
        inner = QVBoxLayout(box)
        self.suggestion_label = QLabel("—")
        self.suggestion_label.setWordWrap(True)
        inner.addWidget(self.suggestion_label)
        row = QHBoxLayout()
        editor = self.controller.editor
        self.go_button = QPushButton("Go")
        self.go_button.clicked.connect(lambda: editor.go())
        self.skip_button = QPushButton("Skip")
        self.skip_button.clicked.connect(self.controller.skip)
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(self.controller.next_suggestion)
        for button in (self.go_button, self.skip_button, self.next_button):
            row.addWidget(button)
        inner.addLayout(row)
        self.queue_table = make_table(QUEUE_HEADERS)
        fit_to_width(self.queue_table, stretch_column=1)
        self.queue_table.setToolTip("Double-click a row to go there; hover for the numbers behind it")
        self.queue_table.cellDoubleClicked.connect(self._queue_row_clicked)
        self.queue_table.setMaximumHeight(180)
        inner.addWidget(self.queue_table)
        return box

    def _annotate_box(self) -> QGroupBox:
        box = QGroupBox("Annotate")
        inner = QVBoxLayout(box)
        editor = self.controller.editor
        row = QHBoxLayout()
        self.submit_button = QPushButton("Submit (Shift+S)")
        self.submit_button.clicked.connect(editor.submit)
        self.draft_button = QPushButton("Save draft")
        self.draft_button.clicked.connect(editor.save_draft)
        row.addWidget(self.submit_button)
        row.addWidget(self.draft_button)
        inner.addLayout(row)
        row = QHBoxLayout()
        self.first_button = QPushButton("Class starts on this slice")
        self.first_button.clicked.connect(lambda: editor.mark_range("first"))
        self.last_button = QPushButton("Class ends on this slice")
        self.last_button.clicked.connect(lambda: editor.mark_range("last"))
        row.addWidget(self.first_button)
        row.addWidget(self.last_button)
        inner.addLayout(row)
        tracing = self.controller.tracing
        row = QHBoxLayout()
        self.fill_button = QPushButton("Fill between slices")
        self.fill_button.setToolTip("Interpolate the selected class across the slices between the ones "
                                    "it is traced on (only where background); check, fix, then Submit")
        self.fill_button.clicked.connect(tracing.fill_between)
        self.outline_button = QPushButton("Accept model outline")
        self.outline_button.setToolTip("Copy the model's outline of the selected class on this slice "
                                       "(only where background)")
        self.outline_button.clicked.connect(tracing.accept_outline)
        self.undo_button = QPushButton("Undo submit")
        self.undo_button.setToolTip("Take back the last submit: the labels before it are restored "
                                    "(the history is kept)")
        self.undo_button.clicked.connect(tracing.undo_submit)
        for button in (self.fill_button, self.outline_button, self.undo_button):
            row.addWidget(button)
        inner.addLayout(row)
        inner.addLayout(self._click_row())
        self.heat_check = QCheckBox("Show uncertainty heat map")
        self.heat_check.toggled.connect(editor.set_heat_map)
        inner.addWidget(self.heat_check)
        self.profile = UncertaintyProfile(self.controller)
        inner.addWidget(self.profile)
        return box

    def _click_row(self) -> QHBoxLayout:
        """Click + / Click −: checkable, one at a time; unchecked, napari's own mode is back."""
        clicking = self.controller.clicking
        row = QHBoxLayout()
        self.click_buttons: dict[bool, QPushButton] = {}
        for positive, text, key, effect in ((True, "Click +", POSITIVE_KEY, "grows the selected class "
                                             "over the structure under it"),
                                            (False, "Click −", NEGATIVE_KEY, "takes the region under it "
                                             "out of the selected class")):
            button = QPushButton(f"{text} ({key.replace('-', '+')})")
            button.setCheckable(True)
            button.setToolTip(f"Click mode: a left click on the labels {effect}, from the image; each "
                              "click refines the last (Ctrl+Z takes one back). Press again to paint.")
            button.clicked.connect(lambda checked, sign=positive: clicking.set_mode(sign if checked else None))
            row.addWidget(button)
            self.click_buttons[positive] = button
        return row

    def _show_click_mode(self, positive: bool | None) -> None:
        for sign, button in self.click_buttons.items():
            button.setChecked(sign is positive)

    def _show_queue(self) -> None:
        controller = self.controller
        names = controller.session.catalog.class_names
        suggestions = controller.suggestions
        rows = [(rank + 1, short_item_text(s.item, names), float(s.score),
                 float(s.terms.get(TERM_EFFORT_MM, float("nan"))), QUALITY_SHORT.get(quality_text(s.quality), ""))
                for rank, s in enumerate(suggestions)]
        fill_table(self.queue_table, rows, [s.item for s in suggestions],
                   tooltips=[describe(s, names) for s in suggestions])
        self.suggestion_label.setText(describe(suggestions[0], names) if suggestions
                                      else "Nothing left to suggest: every item is labelled.")

    def _queue_row_clicked(self, row: int, _column: int) -> None:
        item = row_key(self.queue_table, row)
        if isinstance(item, QueryItem):
            self.controller.editor.go(item)

    def _enable(self, enabled: bool) -> None:
        for widget in (self.go_button, self.skip_button, self.next_button, self.submit_button,
                       self.draft_button, self.first_button, self.last_button, self.fill_button,
                       self.outline_button, self.undo_button, self.heat_check, *self.click_buttons.values()):
            widget.setEnabled(enabled)
