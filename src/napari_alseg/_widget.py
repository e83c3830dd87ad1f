"""The annotator's dock widget: suggest → go → trace/correct → submit → one-click retrain.

All logic lives in :class:`~napari_alseg.session.Session`; this module turns its state
into controls and layers. Long work (training, scoring, predictions, heat maps) runs in
napari thread workers (:mod:`._qt.background`); layers are touched only on the UI thread.
"""

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

import napari
import numpy as np
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (QCheckBox, QColorDialog, QComboBox, QFileDialog, QFormLayout, QGroupBox,
                            QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox,
                            QDoubleSpinBox,
                            QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from ._qt.background import BackgroundJob, start_job
from ._qt.case_layers import apply_class_colors, jump_to, owned_layers, show_case, show_heat_map
from ._qt.learning_curve import LearningCurve
from ._qt.tables import fill_table, make_table, row_key, selected_key
from .errors import AlsegError, BadCasesError
from .store import CORRECTED, MANUAL
from .strategies import STRATEGIES, QueryItem, Suggestion
from .timing import ActivityClock

DRAFT_INTERVAL_MS = 30_000
QUEUE_LENGTH = 20
SAMPLE_PROJECTS = ("tumour-cases", "brain-stack")
MODES = ("correct the prediction", "trace from scratch")
EXCLUSIVE_JOBS = {"training", "scoring"}
MODEL_FILE_FILTER = "napari-alseg model (*.pt);;all files (*)"


def projects_root() -> Path:
    """Where sample projects go: ``$ALSEG_PROJECTS_DIR`` or ``~/napari-alseg-projects``."""
    return Path(os.environ.get("ALSEG_PROJECTS_DIR", Path.home() / "napari-alseg-projects"))


@dataclass
class Runtime:
    """What must be cleaned up when the dock closes: running jobs and the open session."""

    session: object = None
    jobs: list = field(default_factory=list)

    def shutdown(self, *_args) -> None:
        """Cancel jobs and wait for them (a round stops within one step), then close the project."""
        from napari.qt.threading import WorkerBase

        for job in self.jobs:
            job.cancel()
        if self.jobs:
            WorkerBase.await_workers(msecs=120_000)
        self.jobs.clear()
        if self.session is not None:
            self.session.close()
            self.session = None


@dataclass
class Editing:
    """The item on screen: what is being annotated, and what the layer started from."""

    suggestion: Suggestion
    layer: object
    prefill: np.ndarray | None
    clock: ActivityClock
    dirty: bool = False


class AlsegWidget(QWidget):
    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.runtime = Runtime()
        self.suggestions: list[Suggestion] = []
        self.editing: Editing | None = None
        self.progress_bar = None
        self.tabs = QTabWidget()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.status = QLabel("Open or create a project to start.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.tabs.addTab(self._project_tab(), "Project")
        self.tabs.addTab(self._annotate_tab(), "Annotate")
        self.tabs.addTab(self._review_tab(), "Review")
        self.tabs.addTab(self._effort_tab(), "Effort")
        self.draft_timer = QTimer(self)
        self.draft_timer.setInterval(DRAFT_INTERVAL_MS)
        self.draft_timer.timeout.connect(self.save_draft)
        self.draft_timer.start()
        self.destroyed.connect(self.runtime.shutdown)
        self._enable(False)

    @property
    def session(self):
        return self.runtime.session

    # ------------------------------------------------------------------ building the tabs

    def _project_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        self.project_label = QLabel("no project open")
        self.project_label.setWordWrap(True)
        form.addRow("Project:", self.project_label)
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open…")
        self.open_button.clicked.connect(self._choose_and_open)
        self.new_button = QPushButton("New from folder…")
        self.new_button.clicked.connect(self._choose_and_create)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.new_button)
        form.addRow(buttons)
        init_row = QHBoxLayout()
        self.init_model_edit = QLineEdit()
        self.init_model_edit.setPlaceholderText("none: new projects start untrained")
        self.init_model_edit.setToolTip("a model exported from another project (alseg model export); "
                                        "its channels and classes must match the new cases'")
        self.init_model_button = QPushButton("Choose…")
        self.init_model_button.clicked.connect(self._choose_init_model)
        init_row.addWidget(self.init_model_edit)
        init_row.addWidget(self.init_model_button)
        form.addRow("Initial model (optional):", init_row)
        self.export_model_button = QPushButton("Export model…")
        self.export_model_button.clicked.connect(self._choose_and_export_model)
        form.addRow(self.export_model_button)
        sample_row = QHBoxLayout()
        self.sample_combo = QComboBox()
        self.sample_combo.addItems(SAMPLE_PROJECTS)
        self.sample_button = QPushButton("Open sample project")
        self.sample_button.clicked.connect(lambda: self.open_sample_project(self.sample_combo.currentText()))
        sample_row.addWidget(self.sample_combo)
        sample_row.addWidget(self.sample_button)
        form.addRow("Sample:", sample_row)
        self.annotator_edit = QLineEdit(_user_name())
        self.annotator_edit.editingFinished.connect(self._annotator_changed)
        form.addRow("Annotator:", self.annotator_edit)
        self.strategy_combo = QComboBox()
        self.strategy_combo.addItems(list(STRATEGIES))
        self.strategy_combo.currentTextChanged.connect(self._strategy_changed)
        form.addRow("Query engine:", self.strategy_combo)
        self.strategy_help = QLabel()
        self.strategy_help.setWordWrap(True)
        form.addRow(self.strategy_help)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 200)
        self.batch_spin.setValue(5)
        self.batch_spin.valueChanged.connect(self._batch_changed)
        form.addRow("Batch size:", self.batch_spin)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        form.addRow("Mode:", self.mode_combo)
        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["class (double-click to rename)", "colour"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.itemChanged.connect(self._class_renamed)
        self.class_table.cellDoubleClicked.connect(self._class_cell_clicked)
        form.addRow("Classes:", self.class_table)
        self._strategy_changed(self.strategy_combo.currentText())
        return tab

    def _annotate_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        box = QGroupBox("Next suggestion")
        inner = QVBoxLayout(box)
        self.suggestion_label = QLabel("—")
        self.suggestion_label.setWordWrap(True)
        inner.addWidget(self.suggestion_label)
        row = QHBoxLayout()
        self.go_button = QPushButton("Go")
        self.go_button.clicked.connect(lambda: self.go(self.suggestions[0]) if self.suggestions else None)
        self.skip_button = QPushButton("Skip")
        self.skip_button.clicked.connect(self.skip)
        self.next_button = QPushButton("Next")
        self.next_button.clicked.connect(self.next_suggestion)
        for button in (self.go_button, self.skip_button, self.next_button):
            row.addWidget(button)
        inner.addLayout(row)
        self.queue_table = make_table(["#", "case", "slice", "class", "score", "effort mm", "quality"])
        self.queue_table.cellDoubleClicked.connect(self._queue_row_clicked)
        self.queue_table.setMaximumHeight(180)
        inner.addWidget(self.queue_table)
        layout.addWidget(box)

        box = QGroupBox("Annotate")
        inner = QVBoxLayout(box)
        row = QHBoxLayout()
        self.submit_button = QPushButton("Submit (Shift+S)")
        self.submit_button.clicked.connect(self.submit)
        self.draft_button = QPushButton("Save draft")
        self.draft_button.clicked.connect(self.save_draft)
        row.addWidget(self.submit_button)
        row.addWidget(self.draft_button)
        inner.addLayout(row)
        row = QHBoxLayout()
        self.first_button = QPushButton("Class starts on this slice")
        self.first_button.clicked.connect(lambda: self.mark_range("first"))
        self.last_button = QPushButton("Class ends on this slice")
        self.last_button.clicked.connect(lambda: self.mark_range("last"))
        row.addWidget(self.first_button)
        row.addWidget(self.last_button)
        inner.addLayout(row)
        self.heat_check = QCheckBox("Show uncertainty heat map")
        self.heat_check.toggled.connect(self._toggle_heat_map)
        inner.addWidget(self.heat_check)
        layout.addWidget(box)

        box = QGroupBox("Model")
        inner = QVBoxLayout(box)
        row = QHBoxLayout()
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.clicked.connect(self.retrain)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.retrain_button)
        row.addWidget(self.cancel_button)
        inner.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Train for"))
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0.25, 120.0)
        self.budget_spin.setSingleStep(0.5)
        self.budget_spin.setDecimals(2)
        self.budget_spin.setSuffix(" min")
        self.budget_spin.setToolTip("Wall-clock training time of one retrain round (kept in the project's plan)")
        self.budget_spin.editingFinished.connect(self._budget_changed)
        row.addWidget(self.budget_spin)
        row.addStretch(1)
        inner.addLayout(row)
        self.job_progress = QProgressBar()
        self.job_progress.setFormat("%v / %m")
        inner.addWidget(self.job_progress)
        self.job_label = QLabel("")
        inner.addWidget(self.job_label)
        self.model_label = QLabel("no model yet")
        self.model_label.setWordWrap(True)
        inner.addWidget(self.model_label)
        layout.addWidget(box)
        layout.addStretch(1)
        self._pending_range: dict[int, int] = {}
        self.viewer.bind_key("Shift-S", lambda _viewer: self.submit(), overwrite=True)
        return tab

    def _review_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        note = QLabel("Predicted quality of each unlabelled case's segmentation: Poor (Dice < 0.6), "
                      "Acceptable with adjustments (0.6–0.8), Acceptable (> 0.8).")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.review_table = make_table(["case", "predicted quality", "probability"])
        layout.addWidget(self.review_table)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(self.accept_selected)
        self.edit_button = QPushButton("Edit")
        self.edit_button.clicked.connect(self.edit_selected)
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(self.reject_selected)
        for button in (self.accept_button, self.edit_button, self.reject_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.review_note = QLabel("")
        self.review_note.setWordWrap(True)
        layout.addWidget(self.review_note)
        return tab

    def _effort_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.effort_table = make_table(["class", "spent mm", "spent s", "remaining mm"])
        layout.addWidget(self.effort_table)
        self.curve = LearningCurve()
        layout.addWidget(self.curve)
        return tab

    # ------------------------------------------------------------------ project

    def _choose_and_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an annotation project")
        if folder:
            self.open_project(Path(folder))

    def _choose_and_create(self) -> None:
        source = QFileDialog.getExistingDirectory(self, "Folder of NIfTI cases")
        if not source:
            return
        target = QFileDialog.getExistingDirectory(self, "Empty folder for the new project")
        if target:
            self.create_project(Path(source), Path(target) / f"{Path(source).name}-project")

    def _choose_init_model(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Initial model for new projects", "",
                                                    MODEL_FILE_FILTER)
        if path:
            self.init_model_edit.setText(path)

    def _choose_and_export_model(self) -> None:
        suggested = str(Path.home() / f"{self.session.project.dataset_name}-{self.session.model_version}.pt")
        path, _filter = QFileDialog.getSaveFileName(self, "Export the model", suggested, MODEL_FILE_FILTER)
        if path:
            self.export_model(Path(path))

    def export_model(self, path: Path) -> None:
        """The current model as one file another project can start from (Session.export_model)."""
        try:
            written = self.session.export_model(path)
        except AlsegError as error:
            show_error(str(error))
            return
        show_info(f"model {self.session.model_version} exported to {written}")

    def create_project(self, source: Path, folder: Path) -> None:
        """A project over ``source`` in ``folder`` (from the initial model when one is chosen), then open it."""
        from .model_transfer import create_project
        from .store import Project

        init_model = self.init_model_edit.text().strip()

        def create(**options) -> None:
            options["annotator"] = self.annotator_edit.text()
            if init_model:
                create_project(folder, source, init_model=Path(init_model), **options).close()
            else:
                Project.create(folder, source, **options).close()

        try:
            try:
                create()
            except BadCasesError as error:  # never drop a case silently: name them, ask
                listed = "\n".join(f"• {name}: {reason}" for name, reason in error.skipped)
                if not self.confirm(f"{len(error.skipped)} case(s) cannot be used:\n{listed}\n\n"
                                    "Create the project without them?"):
                    show_error(str(error))
                    return
                create(skip_bad_cases=True)
                show_warning(f"created without {len(error.skipped)} case(s): "
                             + ", ".join(name for name, _ in error.skipped))
        except AlsegError as error:
            show_error(str(error))
            return
        self.open_project(folder)

    def confirm(self, question: str) -> bool:
        """Ask yes/no in a dialog (a seam tests replace)."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(self, "napari-alseg", question)
        return answer == QMessageBox.StandardButton.Yes

    def open_sample_project(self, sample: str) -> None:
        """Open (creating on first use) a project over one of the sample sets."""
        from .samples import sample_dir
        from .store import DB_NAME

        folder = projects_root() / sample
        try:
            if not (folder / DB_NAME).exists():
                self._say(f"Creating the {sample} sample project (first time: generating data)…")
                self.create_project(sample_dir(sample), folder)
                return
        except AlsegError as error:
            show_error(str(error))
            return
        self.open_project(folder)

    def open_project(self, folder: Path) -> None:
        from .session import Session, import_model_backend

        self.close_project()
        try:
            session = Session.open(folder, annotator=self.annotator_edit.text() or _user_name(),
                                   strategy=self.strategy_combo.currentText(),
                                   batch_size=self.batch_spin.value())
        except AlsegError as error:
            show_error(str(error))
            return
        self.runtime.session = session
        self._say("Loading the model backend (torch)…")
        import_model_backend()  # on the UI thread once, never first inside a worker
        project = session.project
        self.project_label.setText(f"{project.folder}\n{len(project.cases)} cases · "
                                   f"{project.granularity} granularity · {project.dataset_name}")
        self._show_classes()
        self.budget_spin.setValue(session.training_plan().seconds / 60.0)
        self._enable(True)
        self._show_model()
        self.tabs.setCurrentIndex(1)
        if session.model_version is not None:
            self.rescore()
        else:
            self.refresh_suggestions()
            self._say("No model yet: annotate a few suggestions, then Retrain.")

    def _show_classes(self) -> None:
        table = self.class_table
        table.blockSignals(True)
        classes = self.session.project.classes[1:]
        table.setRowCount(len(classes))
        for row, info in enumerate(classes):
            name = QTableWidgetItem(info.name)
            name.setData(Qt.ItemDataRole.UserRole, info.id)
            table.setItem(row, 0, name)
            swatch = QTableWidgetItem("")
            swatch.setFlags(swatch.flags() & ~Qt.ItemFlag.ItemIsEditable)
            swatch.setBackground(QColor(*(info.color or (128, 128, 128))))
            table.setItem(row, 1, swatch)
        table.blockSignals(False)

    def _class_renamed(self, cell: QTableWidgetItem) -> None:
        if self.session is None or cell.column() != 0:
            return
        self.update_class(cell.data(Qt.ItemDataRole.UserRole), name=cell.text())

    def _class_cell_clicked(self, row: int, column: int) -> None:
        if self.session is None or column != 1:
            return
        class_id = self.class_table.item(row, 0).data(Qt.ItemDataRole.UserRole)
        current = self.session.project.classes[class_id].color or (128, 128, 128)
        chosen = QColorDialog.getColor(QColor(*current), self, "Class colour")
        if chosen.isValid():
            self.update_class(class_id, color=(chosen.red(), chosen.green(), chosen.blue()))

    def update_class(self, class_id: int, *, name: str | None = None, color=None) -> None:
        """Rename / recolour a class in the project and on the layer being edited."""
        try:
            self.session.project.update_class(class_id, name=name, color=color)
        except AlsegError as error:
            show_error(str(error))
        self._show_classes()
        if self.editing is not None:
            apply_class_colors(self.editing.layer, self.session.project.classes)
        if self.suggestions:
            self._show_queue()

    def close_project(self) -> None:
        if self.session is None:
            return
        self.save_draft()
        self.runtime.shutdown()
        for layer in owned_layers(self.viewer):
            self.viewer.layers.remove(layer)
        self.editing = None
        self._enable(False)

    def _annotator_changed(self) -> None:
        if self.session is not None and self.annotator_edit.text().strip():
            self.session.annotator = self.annotator_edit.text().strip()

    def _strategy_changed(self, name: str) -> None:
        strategy = STRATEGIES[name]
        self.strategy_help.setText(f"<i>{strategy.description}</i> (granularity: {strategy.granularity})")
        if self.session is not None:
            self.session.strategy = name
            self.rescore() if self.session.model_version else self.refresh_suggestions()

    def _batch_changed(self, value: int) -> None:
        if self.session is not None:
            self.session.batch_size = value
            self.refresh_suggestions()

    # ------------------------------------------------------------------ suggestions

    def refresh_suggestions(self) -> None:
        if self.session is None:
            return
        try:
            self.suggestions = self.session.suggest(max(QUEUE_LENGTH, self.batch_spin.value()))
        except AlsegError as error:
            show_error(str(error))
            return
        self._show_queue()
        self._show_review()
        self._show_effort()

    def _show_queue(self) -> None:
        names = self.session.project.class_names
        rows = [(rank + 1, s.item.case, s.item.slice_index, None if s.item.class_id is None
                 else names[s.item.class_id], float(s.score), float(s.terms.get("effort_mm", float("nan"))),
                 _quality_text(s.terms))
                for rank, s in enumerate(self.suggestions)]
        fill_table(self.queue_table, rows, [s.item for s in self.suggestions])
        self.suggestion_label.setText(_describe(self.suggestions[0], names) if self.suggestions
                                      else "Nothing left to suggest: every item is labelled.")

    def _queue_row_clicked(self, row: int, _column: int) -> None:
        item = row_key(self.queue_table, row)
        chosen = next((s for s in self.suggestions if s.item == item), None)
        if chosen is not None:
            self.go(chosen)

    def next_suggestion(self) -> None:
        if self.suggestions:
            self.suggestions = self.suggestions[1:] + self.suggestions[:1]
            self._show_queue()

    def skip(self) -> None:
        if self.session is None or not self.suggestions:
            return
        self.session.skip(self.suggestions[0].item)
        self.refresh_suggestions()

    # ------------------------------------------------------------------ annotating

    def go(self, suggestion: Suggestion) -> None:
        """Load the case, prefill (correct mode) and jump to the item; prediction runs in a worker."""
        if self.session is None:
            return
        self.save_draft()
        correcting = self.mode_combo.currentIndex() == 0 and self.session.model_version is not None
        session = self.session
        item = suggestion.item

        def prepare(progress=None, should_stop=None):
            return session.predict_labels(item.case, item.slice_index) if correcting else None

        self._say(f"Opening {item.case}…")
        self._start("prediction", prepare, on_done=lambda prediction: self._show_item(suggestion, prediction))

    def _show_item(self, suggestion: Suggestion, prediction: np.ndarray | None) -> None:
        session, item = self.session, suggestion.item
        labels = session.load_draft(item.case)
        if labels is None:
            snapshot = session.project.current_labels(item.case)
            record = session.project.case(item.case)
            labels = (snapshot.data.copy() if snapshot is not None
                      else np.zeros(record.shape, session.project.label_dtype))
        prefill = None
        if prediction is not None:
            prefill = _prefill(labels, prediction, item)
        layer = show_case(self.viewer, session, item.case, labels)
        jump_to(self.viewer, session, item.case, item.slice_index, suggestion.bbox)
        self.viewer.layers.selection.active = layer
        layer.mode = "paint"
        layer.selected_label = item.class_id or 1
        clock = ActivityClock()
        clock.start()
        self.editing = Editing(suggestion, layer, prefill, clock)
        layer.events.paint.connect(self._edited)
        layer.events.data.connect(self._edited)
        if self.heat_check.isChecked():
            self._toggle_heat_map(True)
        self._say(f"Annotating {_item_text(item, session.project.class_names)}. Submit with Shift+S.")

    def _edited(self, _event=None) -> None:
        if self.editing is not None:
            self.editing.dirty = True
            self.editing.clock.touch()

    def submit(self) -> None:
        """Save the item through the session (durable before this returns), then go on."""
        editing = self.editing
        if self.session is None or editing is None:
            show_warning("Nothing to submit: press Go on a suggestion first.")
            return
        item = editing.suggestion.item
        data = np.asarray(editing.layer.data)
        region = data if item.slice_index is None else data[item.slice_index]
        original = None
        if editing.prefill is not None:
            original = editing.prefill if item.slice_index is None else editing.prefill[item.slice_index]
        try:
            self.session.submit(item.case, region, kind=CORRECTED if original is not None else MANUAL,
                                seconds_active=editing.clock.active_seconds(),
                                slice_index=item.slice_index, class_id=item.class_id,
                                original=original, started_at=editing.clock.started_at)
        except AlsegError as error:
            show_error(str(error))
            return
        editing.dirty = False
        show_info(f"Saved {_item_text(item, self.session.project.class_names)}")
        self.editing = None
        self.refresh_suggestions()
        if self.suggestions:
            self.go(self.suggestions[0])

    def save_draft(self) -> None:
        editing = self.editing
        if self.session is None or editing is None or not editing.dirty:
            return
        try:
            self.session.save_draft(editing.suggestion.item.case, np.asarray(editing.layer.data))
        except AlsegError as error:
            show_error(str(error))
            return
        editing.dirty = False

    def mark_range(self, end: str) -> None:
        """Weak annotation (METHODS E): the selected class starts / ends on the current slice."""
        if self.session is None or self.editing is None:
            show_warning("Open a case first (Go).")
            return
        layer = self.editing.layer
        class_id = int(layer.selected_label)
        current = int(self.viewer.dims.current_step[0])
        case = self.editing.suggestion.item.case
        weak = self.session.project.weak_annotations(case).get(class_id)
        first, last = (weak.first_slice, weak.last_slice) if weak else (0, layer.data.shape[0] - 1)
        first, last = (current, max(current, last)) if end == "first" else (min(first, current), current)
        try:
            self.session.mark_class_range(case, class_id, first, last)
        except AlsegError as error:
            show_error(str(error))
            return
        name = self.session.project.class_names[class_id]
        show_info(f"{name} appears only on slices {first}–{last} of {case}")

    # ------------------------------------------------------------------ training and scoring

    def retrain(self) -> None:
        if self.session is None:
            return
        self.save_draft()
        session = self.session
        config = session.round_config()
        self._begin_progress("Training", config.steps or 100)
        self._start("training", session.retrain, on_progress=self._training_progress,
                    on_done=self._trained)

    def _budget_changed(self) -> None:
        if self.session is not None:
            self.session.set_plan(seconds=self.budget_spin.value() * 60.0)

    def _training_progress(self, report) -> None:
        self.job_progress.setMaximum(report.total_steps)
        self.job_progress.setValue(report.step)
        self.job_label.setText(f"step {report.step} of ~{report.total_steps} · loss {report.loss:.3f} · "
                               f"{report.eta_seconds:.0f} s left")
        if self.progress_bar is not None:
            self.progress_bar.total = report.total_steps
            self.progress_bar.n = report.step
            self.progress_bar.set_description(f"Training (loss {report.loss:.3f})")
            self.progress_bar.refresh()

    def _trained(self, report) -> None:
        self._end_progress()
        if report.cancelled:
            show_info(report.message)
            return
        show_info(f"Model {report.model_version} trained: validation Dice "
                  f"{report.metrics.get('val_dice', float('nan')):.3f}")
        if report.message:
            show_warning(report.message)
        self._show_model()
        self.rescore()

    def rescore(self) -> None:
        """Re-score the pool in the background, then refresh suggestions, tables and heat map."""
        if self.session is None:
            return
        self._begin_progress("Scoring the pool", 1)

        def scoring_progress(update) -> None:
            done, total = update
            self.job_progress.setMaximum(total)
            self.job_progress.setValue(done)
            self.job_label.setText(f"scoring {done}/{total}")
            if self.progress_bar is not None:
                self.progress_bar.total = total
                self.progress_bar.n = done
                self.progress_bar.refresh()

        session = self.session

        def run(progress=None, should_stop=None):
            report = (lambda done, total: progress((done, total))) if progress else None
            return session.rescore(progress=report, should_stop=should_stop)

        self._start("scoring", run, on_progress=scoring_progress, on_done=self._rescored)

    def _rescored(self, pool) -> None:
        self._end_progress()
        self.refresh_suggestions()
        if self.suggestions and self.suggestions[0].message:
            show_info(self.suggestions[0].message)
        self._say(f"Pool scored with model {pool.model_version}: {len(pool.candidates)} items.")
        if self.heat_check.isChecked():
            self._toggle_heat_map(True)

    def cancel_jobs(self) -> None:
        for job in self.runtime.jobs:
            job.cancel()
        self._say("Cancelling… the current model stays active.")

    def _toggle_heat_map(self, shown: bool) -> None:
        if self.session is None or self.editing is None:
            return
        case = self.editing.suggestion.item.case
        if not shown:
            for layer in [l for l in owned_layers(self.viewer) if l.metadata.get("alseg_role") == "heat map"]:
                self.viewer.layers.remove(layer)
            return
        if self.session.model_version is None:
            show_warning("No model yet: the heat map needs a trained model.")
            self.heat_check.setChecked(False)
            return
        session = self.session

        def compute(progress=None, should_stop=None):
            return session.uncertainty_map(case)

        def show(values) -> None:
            show_heat_map(self.viewer, session, case, values)
            if self.editing is not None:
                self.viewer.layers.selection.active = self.editing.layer

        self._start("uncertainty map", compute, on_done=show)

    # ------------------------------------------------------------------ review

    def _selected_case(self) -> str | None:
        case = selected_key(self.review_table)
        if case is None:
            show_warning("Select a case in the table first.")
        return case

    def accept_selected(self) -> None:
        case = self._selected_case()
        if case is not None:
            self.accept_case(case)

    def accept_case(self, case: str) -> None:
        """One click: the case's prediction is stored as its labels (kind pseudo-accepted)."""
        session = self.session

        def accept(progress=None, should_stop=None):
            return session.accept_pseudo(case)

        self._start("accepting", accept,
                    on_done=lambda _id: self._reviewed(case, f"Accepted {case}'s prediction"))

    def reject_selected(self) -> None:
        case = self._selected_case()
        if case is None:
            return
        try:
            self.session.reject_pseudo(case)
        except AlsegError as error:
            show_error(str(error))
            return
        self._reviewed(case, f"Rejected {case}'s prediction: it stays in the annotation queue")

    def edit_selected(self) -> None:
        case = self._selected_case()
        if case is None:
            return
        self.mode_combo.setCurrentIndex(0)
        suggestion = next((s for s in self.suggestions if s.item.case == case),
                          Suggestion(QueryItem(case), float("nan"), "review", {}, None))
        self.tabs.setCurrentIndex(1)
        self.go(suggestion)

    def _reviewed(self, case: str, message: str) -> None:
        show_info(message)
        self.session.skip(QueryItem(case))
        self.refresh_suggestions()

    def _show_review(self) -> None:
        rows = self.session.quality_rows()
        fill_table(self.review_table, [(case, quality, prob) for case, quality, prob in rows],
                   [case for case, _q, _p in rows])
        if rows:
            self.review_note.setText("Accept stores the prediction as a pseudo-label; Edit opens it for "
                                     "correction; Reject keeps the case for the annotator.")
        elif self.session.project.granularity != "case":
            self.review_note.setText("Quality review rates whole 3D cases; this project annotates slices.")
        else:
            self.review_note.setText("No quality ratings yet: they appear after a retrain once enough "
                                     "predictions have a known Dice (validation cases, corrections).")

    def _show_effort(self) -> None:
        summary = self.session.effort_summary()
        rows = [(name, values["spent_mm"], values["spent_s"], values["remaining_mm"])
                for name, values in summary.items()]
        fill_table(self.effort_table, rows, [name for name, *_ in rows])
        self.curve.show_points(self.session.learning_curve())

    # ------------------------------------------------------------------ plumbing

    def _start(self, name: str, function, *, on_done, on_progress=None) -> BackgroundJob:
        """Run in a worker. Training and scoring are exclusive: Retrain waits until they end."""
        def done(result) -> None:
            self._finished(job)
            on_done(result)

        def failed(message: str) -> None:
            self._finished(job)
            self._end_progress()
            show_error(message)

        def cancelled(message: str) -> None:
            self._finished(job)
            self._end_progress()
            show_info(message)

        job = start_job(name, function, on_progress=on_progress, on_done=done, on_error=failed,
                        on_cancelled=cancelled)
        self.runtime.jobs.append(job)
        self._update_job_buttons()
        return job

    def _finished(self, job: BackgroundJob) -> None:
        if job in self.runtime.jobs:
            self.runtime.jobs.remove(job)
        self._update_job_buttons()

    def _update_job_buttons(self) -> None:
        names = {job.name for job in self.runtime.jobs}
        self.cancel_button.setEnabled(bool(names))
        self.retrain_button.setEnabled(self.session is not None and not names & EXCLUSIVE_JOBS)

    def _begin_progress(self, description: str, total: int) -> None:
        self._end_progress()
        self.job_progress.setMaximum(total)
        self.job_progress.setValue(0)
        self.progress_bar = napari_progress(total=total, desc=description)

    def _end_progress(self) -> None:
        self.job_label.setText("")
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None

    def _show_model(self) -> None:
        version = self.session.model_version
        if version is None:
            self.model_label.setText("No model yet.")
            return
        metrics = self.session.model_metrics()
        if "val_dice" not in metrics:  # e.g. an initial model from another project
            self.model_label.setText(f"Active model <b>{version}</b> · no validation Dice on this project yet")
            return
        per_class = [f"{k.removeprefix('val_dice_')} {v:.2f}" for k, v in metrics.items()
                     if k.startswith("val_dice_") and np.isfinite(v)]
        self.model_label.setText(f"Active model <b>{version}</b> · validation Dice "
                                 f"{metrics.get('val_dice', float('nan')):.3f}<br>{', '.join(per_class)}")

    def _enable(self, enabled: bool) -> None:
        for widget in (self.go_button, self.skip_button, self.next_button, self.submit_button,
                       self.draft_button, self.first_button, self.last_button, self.heat_check,
                       self.retrain_button, self.accept_button, self.edit_button, self.reject_button,
                       self.export_model_button):
            widget.setEnabled(enabled)

    def _say(self, message: str) -> None:
        self.status.setText(message)


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"


def _item_text(item: QueryItem, class_names) -> str:
    parts = [item.case]
    if item.slice_index is not None:
        parts.append(f"slice {item.slice_index}")
    if item.class_id is not None:
        parts.append(class_names[item.class_id])
    return " · ".join(parts)


def _quality_text(terms) -> str:
    from .quality import CLASS_NAMES

    quality = terms.get("quality_class", float("nan"))
    return CLASS_NAMES[int(quality)] if np.isfinite(quality) else ""


def _describe(suggestion: Suggestion, class_names) -> str:
    """The suggestion and the numbers behind it, for the annotator to judge."""
    terms = suggestion.terms
    lines = [f"<b>{_item_text(suggestion.item, class_names)}</b> — {suggestion.strategy}, "
             f"score {suggestion.score:.4g}"]
    shown = {"mc_top": "uncertainty (MC top 0.1 %)", "entropy": "entropy", "margin": "margin",
             "dice_gap": "Dice gap 1−D̃", "effort_px": "effort px", "effort_mm": "effort mm",
             "effort_s": "est. seconds", "quality_prob": "quality probability"}
    for key, label in shown.items():
        value = terms.get(key)
        if value is not None and np.isfinite(value):
            lines.append(f"{label}: {value:.3g}")
    quality = _quality_text(terms)
    if quality:
        lines.append(f"predicted quality: {quality}")
    if suggestion.message:
        lines.append(f"<i>{suggestion.message}</i>")
    return "<br>".join(lines)


def _prefill(labels: np.ndarray, prediction: np.ndarray, item: QueryItem) -> np.ndarray:
    """Labels with the prediction filled in where the item lies (keeping what is labelled)."""
    filled = labels.copy()
    if item.slice_index is None:
        filled[...] = prediction
    elif item.class_id is None:
        filled[item.slice_index] = prediction
    else:
        plane = filled[item.slice_index]
        plane[(prediction == item.class_id) & (plane == 0)] = item.class_id
    return filled
