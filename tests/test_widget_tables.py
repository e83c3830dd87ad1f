"""Tables of the dock: numbers readable in a narrow column."""

import pytest

from napari_alseg._qt.tables import fill_table, make_table

pytestmark = pytest.mark.gui


def test_small_scores_keep_three_significant_figures_and_large_ones_three_decimals(qtbot):
    table = make_table(["score", "mm"])
    qtbot.addWidget(table)
    fill_table(table, [(0.000426, 36392.4)], ["a"])
    assert table.item(0, 0).text() == "0.000426" and table.item(0, 1).text() == "36392.4"
    fill_table(table, [(float("nan"), 12.3456)], ["b"])
    assert table.item(0, 0).text() == "" and table.item(0, 1).text() == "12.346"
