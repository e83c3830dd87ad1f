"""The Project tab: open or create a project, models in and out, the loop's settings, classes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (QColorDialog, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QWidget)

from ..strategies import STRATEGIES
from .describe import count_text
from .settings import settings_events, settings_gui

if TYPE_CHECKING:
    from .controller import AlsegController

SAMPLE_PROJECTS = ("tumour-cases", "brain-stack")
MODEL_FILE_FILTER = "napari-alseg model (*.pt);;all files (*)"


class ProjectTab(QWidget):
    def __init__(self, controller: AlsegController) -> None:
        super().__init__()
        self.controller = controller
        form = QFormLayout(self)
        self.project_label = QLabel("no project open")
        self.project_label.setTextFormat(Qt.TextFormat.PlainText)  # the folder and the dataset's name
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
        form.addRow("Initial model (optional):", self._init_model_row())
        self.export_model_button = QPushButton("Export model…")
        self.export_model_button.clicked.connect(self._choose_and_export_model)
        self.export_model_button.setEnabled(False)
        form.addRow(self.export_model_button)
        sample_row = QHBoxLayout()
        self.sample_combo = QComboBox()
        self.sample_combo.addItems(SAMPLE_PROJECTS)
        self.sample_button = QPushButton("Open sample project")
        self.sample_button.clicked.connect(lambda: controller.open_sample_project(self.sample_combo.currentText()))
        sample_row.addWidget(self.sample_combo)
        sample_row.addWidget(self.sample_button)
        form.addRow("Sample:", sample_row)
        self.strategy_help = QLabel()
        self.strategy_help.setWordWrap(True)
        for setting in settings_gui(controller.loop):  # annotator, query engine, batch size, mode (bound to loop)
            form.addRow(setting.label, setting.native)
            if setting.name == "strategy":
                form.addRow(self.strategy_help)
        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["class (double-click to rename)", "colour"])
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.itemChanged.connect(self._class_renamed)
        self.class_table.cellDoubleClicked.connect(self._class_cell_clicked)
        form.addRow("Classes:", self.class_table)
        settings_events(controller.loop).strategy.connect(self._show_strategy_help)
        controller.project_opened.connect(self._show_project)
        controller.project_closed.connect(lambda: self.export_model_button.setEnabled(False))
        controller.classes_changed.connect(self._show_classes)
        self._show_strategy_help(controller.loop.strategy)

    def _init_model_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.init_model_edit = QLineEdit()
        self.init_model_edit.setPlaceholderText("none: new projects start untrained")
        self.init_model_edit.setToolTip("a model exported from another project (alseg model export); "
                                        "its channels and classes must match the new cases'")
        self.init_model_edit.textChanged.connect(self.controller.set_init_model)
        self.init_model_button = QPushButton("Choose…")
        self.init_model_button.clicked.connect(self._choose_init_model)
        row.addWidget(self.init_model_edit)
        row.addWidget(self.init_model_button)
        return row

    def _show_project(self) -> None:
        catalog = self.controller.session.catalog
        self.project_label.setText(f"{catalog.folder}\n{count_text(len(catalog.cases), 'case')} · "
                                   f"{catalog.granularity} granularity · {catalog.dataset_name}")
        self._show_classes()
        self.export_model_button.setEnabled(True)

    def _show_strategy_help(self, name: str) -> None:
        strategy = STRATEGIES[name]
        self.strategy_help.setText(f"<i>{strategy.description}</i> (granularity: {strategy.granularity})")

    def _show_classes(self) -> None:
        table = self.class_table
        table.blockSignals(True)
        classes = self.controller.session.catalog.classes[1:]
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
        if self.controller.session is None or cell.column() != 0:
            return
        self.controller.update_class(cell.data(Qt.ItemDataRole.UserRole), name=cell.text())

    def _class_cell_clicked(self, row: int, column: int) -> None:
        session = self.controller.session
        if session is None or column != 1:
            return
        class_id = self.class_table.item(row, 0).data(Qt.ItemDataRole.UserRole)
        current = session.catalog.classes[class_id].color or (128, 128, 128)
        chosen = QColorDialog.getColor(QColor(*current), self, "Class colour")
        if chosen.isValid():
            self.controller.update_class(class_id, color=(chosen.red(), chosen.green(), chosen.blue()))

    def _choose_and_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an annotation project")
        if folder:
            self.controller.open_project(Path(folder))

    def _choose_and_create(self) -> None:
        source = QFileDialog.getExistingDirectory(self, "Folder of NIfTI cases")
        if not source:
            return
        target = QFileDialog.getExistingDirectory(self, "Empty folder for the new project")
        if target:
            self.controller.create_project(Path(source), Path(target) / f"{Path(source).name}-project")

    def _choose_init_model(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Initial model for new projects", "",
                                                    MODEL_FILE_FILTER)
        if path:
            self.init_model_edit.setText(path)

    def _choose_and_export_model(self) -> None:
        session = self.controller.session
        suggested = str(Path.home() / f"{session.catalog.dataset_name}-{session.learner.model_version}.pt")
        path, _filter = QFileDialog.getSaveFileName(self, "Export the model", suggested, MODEL_FILE_FILTER)
        if path:
            self.controller.export_model(Path(path))
