"""The Review tab after one retrain: predicted Dice, its interval, the class and the examples they rest on."""

import pytest

from napari_alseg.domain import LABELS_AS_GROUND_TRUTH, QUALITY_CLASS_NAMES
from napari_alseg.samples import generate_sample
from synthetic_cases import validation_cases

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer_proxy, qtbot, tmp_path, monkeypatch):
    from napari_alseg._widget import AlsegWidget
    from napari_alseg.model import TrainConfig

    source = generate_sample("tumour-cases", tmp_path / "data", n_cases=9, size=32)
    monkeypatch.setenv("ALSEG_PROJECTS_DIR", str(tmp_path / "projects"))
    dock = AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(dock)
    dock.controller.create_project(source, tmp_path / "project", labels_as=LABELS_AS_GROUND_TRUTH)
    dock.controller.session.settings.train_config = TrainConfig(steps=2, batch_size=1, patch_size=(32, 32, 32),
                                                                augment=False)
    yield dock
    dock.controller.close_project()


def test_review_shows_ratings_and_their_basis_after_the_first_retrain(widget, qtbot):
    controller, tab = widget.controller, widget.review_tab
    session = controller.session
    qtbot.waitUntil(lambda: not controller.running_jobs, timeout=120_000)
    controller.refresh_suggestions()
    assert tab.review_table.rowCount() == 0 and "No quality ratings yet" in tab.review_note.text()
    validation = validation_cases(session.catalog)
    training = [c.name for c in session.catalog.cases if c.name not in validation]
    for case in training[:5]:
        session.submit(case, session.catalog.ground_truth(case), seconds_active=10)
    session.retrain()
    session.rescore()
    controller.refresh_suggestions()
    qtbot.waitUntil(lambda: not controller.running_jobs, timeout=120_000)
    table = tab.review_table
    rated = sorted(table.item(row, 0).text() for row in range(table.rowCount()))
    assert rated == sorted(training[5:])
    assert all(table.item(row, 1).text() in QUALITY_CLASS_NAMES for row in range(table.rowCount()))
    predicted = [float(table.item(row, 2).text()) for row in range(table.rowCount())]
    assert all(0.0 <= d <= 1.0 for d in predicted) and predicted == sorted(predicted, reverse=True)
    low, high = (float(x) for x in table.item(0, 3).text().split("–"))
    assert low <= predicted[0] <= high
    n_examples = 5 + len(validation)
    assert f"Rated from {n_examples} predictions of known Dice" in tab.basis_label.text()
    assert tab.accept_button.isEnabled() and tab.edit_button.isEnabled()
    from napari_alseg._qt.describe import describe

    suggestion = controller.suggestions[0]
    assert f"from {n_examples} rated predictions" in describe(suggestion, [c.name for c in session.catalog.classes])
