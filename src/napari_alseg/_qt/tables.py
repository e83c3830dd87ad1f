"""Small table and plot helpers for the dock widget (no state of their own)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem


def make_table(headers: Sequence[str], *, sortable: bool = True) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().setVisible(False)
    table.setSortingEnabled(sortable)
    table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    return table


def fill_table(table: QTableWidget, rows: Sequence[Sequence[object]], keys: Sequence[object],
               tooltips: Sequence[str] | None = None) -> None:
    """Replace the rows; each row's first cell keeps ``keys[i]`` (UserRole) to find it after sorting.

    Numbers are stored as numbers so that sorting a column sorts by value. ``tooltips[i]``
    (rich text) is shown over every cell of row ``i``: the details a narrow dock leaves out.
    """
    sorting = table.isSortingEnabled()
    table.setSortingEnabled(False)
    table.setRowCount(len(rows))
    for row_index, (row, key) in enumerate(zip(rows, keys)):
        tooltip = tooltips[row_index] if tooltips is not None else None
        for column, value in enumerate(row):
            cell = QTableWidgetItem()
            if isinstance(value, float):
                cell.setData(Qt.ItemDataRole.DisplayRole, _shown(value) if math.isfinite(value) else None)
            elif isinstance(value, int):
                cell.setData(Qt.ItemDataRole.DisplayRole, value)
            else:
                cell = _TextCell("" if value is None else str(value))
            if column == 0:
                cell.setData(Qt.ItemDataRole.UserRole, key)
            if tooltip:
                cell.setToolTip(tooltip)
            table.setItem(row_index, column, cell)
    table.setSortingEnabled(sorting)


class _TextCell(QTableWidgetItem):
    """Text that sorts as a person reads it: "slice 9" before "slice 10" (numbers by value)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.sort_key = natural_key(text)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _TextCell):
            return self.sort_key < other.sort_key
        return super().__lt__(other)


def natural_key(text: str) -> tuple:
    """``"case_2 · slice 10"`` -> ``("case_", 2, " · slice ", 10, "")``: digit runs compare as numbers."""
    return tuple(int(part) if index % 2 else part.casefold()
                 for index, part in enumerate(re.split(r"(\d+)", text)))


def selected_key(table: QTableWidget) -> object | None:
    rows = table.selectionModel().selectedRows()
    if not rows:
        return None
    return table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)


def row_key(table: QTableWidget, row: int) -> object | None:
    cell = table.item(row, 0)
    return None if cell is None else cell.data(Qt.ItemDataRole.UserRole)


def fit_to_width(table: QTableWidget, stretch_column: int) -> None:
    """Columns that fit the dock: ``stretch_column`` takes the width left (eliding its text),
    the others their contents; no horizontal scroll bar."""
    header = table.horizontalHeader()
    for column in range(table.columnCount()):
        mode = QHeaderView.ResizeMode.Stretch if column == stretch_column else QHeaderView.ResizeMode.ResizeToContents
        header.setSectionResizeMode(column, mode)
    header.setMinimumSectionSize(24)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setTextElideMode(Qt.TextElideMode.ElideRight)  # "stack · s23 · hippoc…": the slice stays readable
    table.setWordWrap(False)


def _shown(value: float) -> float:
    """Three decimals, but three significant figures below 1: a score of 4e-4 is not "0"."""
    return round(value, 3) if abs(value) >= 1 else float(f"{value:.3g}")
