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


def test_item_names_sort_by_their_numbers_not_as_text(qtbot):
    from qtpy.QtCore import Qt

    from napari_alseg._qt.tables import row_key

    table = make_table(["item", "score"])
    qtbot.addWidget(table)
    names = ["stack · slice 10 · cortex", "stack · slice 9 · cortex", "stack · slice 100 · WM", "stack · slice 9 · CSF"]
    fill_table(table, [(name, 0.5) for name in names], names)
    table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    assert [row_key(table, row) for row in range(4)] == [
        "stack · slice 9 · cortex", "stack · slice 9 · CSF", "stack · slice 10 · cortex", "stack · slice 100 · WM"]


def test_a_guessed_effort_says_it_is_a_guess():
    from napari_alseg.domain import QueryItem
    from napari_alseg._qt.describe import describe
    from napari_alseg.strategies import Suggestion

    terms = {"dice_gap": 1.0, "effort_mm": 1424.6, "effort_px": 712.3}
    names = ["background", "cortex", "thalamus"]
    guessed = describe(Suggestion(QueryItem("stack", 23, 2), 0.0007, "dice-per-effort", terms, None,
                                  effort_guess=True), names)
    assert "effort px: 712 <i>(a guess" in guessed and guessed.count("a guess") == 1  # once, on the first effort line
    known = describe(Suggestion(QueryItem("stack", 23, 1), 0.0007, "dice-per-effort", terms, None), names)
    assert "guess" not in known and "typical" not in known
    case = describe(Suggestion(QueryItem("case_000"), 0.0005, "mc-dropout-top", {"effort_mm": 32761.6}, None), names)
    assert "effort mm: 32,762 <i>(typical outlines of this data" in case  # not 3.28e+04
    margin = describe(Suggestion(QueryItem("case_000"), 0.5, "margins", {"margin": -0.434}, None), names)
    assert "top-two margin (small: unsure): 0.434" in margin  # the margin itself, not its negation


def test_the_heat_map_legend_reads_a_negligible_low_end_as_zero():
    import numpy as np

    from napari_alseg._qt.uncertainty_profile import legend_text
    from napari_alseg.session.focus import HeatMapScale

    profile = np.zeros(24)
    assert "Colours run 0 (clear) → 0.000433 (yellow)" in legend_text(HeatMapScale(2.9e-34, 4.33e-4, profile, 18))
    assert "Colours run 0.0001 (clear)" in legend_text(HeatMapScale(1e-4, 4.33e-4, profile, 18))
