"""The model box of the Annotate tab: Retrain / Cancel, the round's budget, progress, the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QVBoxLayout

from .background import JobProgress, time_left_text
from .describe import model_text
from .settings import settings_gui

if TYPE_CHECKING:
    from .controller import AlsegController


class ModelBox(QGroupBox):
    def __init__(self, controller: AlsegController) -> None:
        super().__init__("Model")
        self.controller = controller
        inner = QVBoxLayout(self)
        row = QHBoxLayout()
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.clicked.connect(controller.learning.retrain)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(controller.cancel_jobs)
        row.addWidget(self.retrain_button)
        row.addWidget(self.cancel_button)
        inner.addLayout(row)
        budget = settings_gui(controller.round)
        budget.margins = (0, 0, 0, 0)
        self.budget_spin = budget.budget_minutes.native
        self.budget_spin.setDecimals(2)
        self.budget_spin.setSuffix(" min")
        self.budget_spin.setKeyboardTracking(False)  # the plan changes on Enter / focus out, not per key
        row = QHBoxLayout()
        row.addWidget(budget.native)
        row.addStretch(1)
        inner.addLayout(row)
        self.job_progress = QProgressBar()
        self.job_progress.setFormat("%v / %m")
        inner.addWidget(self.job_progress)
        self.job_label = QLabel("")
        # one line whatever it says: a step's text that widened or heightened the dock relaid the
        # window out and repainted the canvas on the main thread (a ~50 ms stall per job start)
        self.job_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.job_label.setFixedHeight(self.job_label.fontMetrics().height())
        inner.addWidget(self.job_label)
        self.model_label = QLabel("no model yet")
        self.model_label.setWordWrap(True)
        inner.addWidget(self.model_label)
        self._progress_job: str | None = None
        controller.model_changed.connect(self._show_model)
        controller.job_progress.connect(self._show_progress)
        controller.job_started.connect(self._update_buttons)
        controller.job_finished.connect(self._job_finished)
        controller.project_opened.connect(self._update_buttons)
        controller.project_closed.connect(self._update_buttons)
        self._update_buttons()

    def _update_buttons(self, *_args: object) -> None:
        self.cancel_button.setEnabled(bool(self.controller.running_jobs))
        self.retrain_button.setEnabled(self.controller.can_retrain)

    def _show_model(self) -> None:
        session = self.controller.session
        version = session.learner.model_version
        self.model_label.setText(model_text(version, session.catalog.metrics() if version else {},
                                            session.catalog.class_names))

    def _show_progress(self, progress: JobProgress) -> None:
        """The job's progress in the box's own bar. Not also in napari's activity dock: adding a
        bar there repaints the canvas on the main thread (the round's two UI stalls over 50 ms,
        at the start of training and of scoring, issue 22 item 6)."""
        if progress.name != self._progress_job:
            self._end_progress()
            self._progress_job = progress.name
        left = time_left_text(progress.seconds_left)
        bar = self.job_progress
        bar.setUpdatesEnabled(False)  # QProgressBar.setValue repaints at once; this way the paint waits
        bar.setMaximum(progress.total)  # for the event loop (a ~50 ms stall at the round's start)
        bar.setValue(progress.done)
        bar.setFormat(f"%v / %m · {left}" if left else "%v / %m")
        bar.setUpdatesEnabled(True)
        self.job_label.setText(progress.text)

    def _job_finished(self, name: str) -> None:
        if name == self._progress_job:
            self._end_progress()
        self._update_buttons()

    def _end_progress(self) -> None:
        self.job_label.setText("")
        self.job_progress.setFormat("%v / %m")
        self._progress_job = None
