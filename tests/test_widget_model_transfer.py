"""The Project tab's model export and initial-model choice, in a headless napari viewer."""

import pytest

from napari_alseg.domain import LABELS_AS_GROUND_TRUTH
from test_model_transfer import give_model
from test_store import make_source

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(make_napari_viewer_proxy, qtbot, monkeypatch):
    from napari_alseg import _widget

    shown = []
    for kind in ("error", "info", "warning"):
        monkeypatch.setattr(_widget, f"show_{kind}", lambda message, kind=kind: shown.append((kind, message)))
    widget = _widget.AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(widget)
    widget.shown = shown
    yield widget
    qtbot.waitUntil(lambda: not widget.controller.running_jobs, timeout=120_000)
    widget.controller.close_project()


def test_export_a_model_then_start_a_project_from_it(dock, qtbot, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    source = make_source(tmp_path / "source", n_cases=3)
    dock.controller.create_project(source, tmp_path / "first", labels_as=LABELS_AS_GROUND_TRUTH)
    qtbot.waitUntil(lambda: not dock.controller.running_jobs, timeout=120_000)  # the first suggestion is on screen
    give_model(dock.controller.session)
    model_path = tmp_path / "shared" / "model.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(model_path), ""))
    dock.project_tab.export_model_button.click()
    assert model_path.is_file() and dock.shown[-1] == ("info", f"model v0001 exported to {model_path}")
    dock.controller.close_project()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(model_path), ""))
    dock.project_tab.init_model_button.click()
    assert dock.project_tab.init_model_edit.text() == str(model_path)
    dock.controller.create_project(source, tmp_path / "second", labels_as=LABELS_AS_GROUND_TRUTH)
    session = dock.controller.session
    assert session.catalog.folder == tmp_path / "second" and session.learner.model_version == "v0001"
    qtbot.waitUntil(lambda: not dock.controller.running_jobs, timeout=120_000)
    assert "scored with model v0001" in dock.status.text()
    assert "no validation Dice on this project yet" in dock.annotate_tab.model_box.model_label.text()


def test_an_initial_model_that_does_not_fit_is_one_notification(dock, tmp_path):
    from napari_alseg.session import Session
    from napari_alseg.store import Project

    with Session(Project.create(tmp_path / "trained", make_source(tmp_path / "source", n_cases=3)),
                 annotator="a") as session:
        give_model(session)
        model_path = session.export_model(tmp_path / "model.pt")
    dock.project_tab.init_model_edit.setText(str(model_path))
    dock.controller.create_project(make_source(tmp_path / "other", n_cases=3, channels=("t2",)), tmp_path / "new")
    kind, message = dock.shown[-1]
    assert kind == "error" and "\n" not in message and "the model has 2 channels, these cases 1" in message
    assert dock.controller.session is None and not (tmp_path / "new").exists()

