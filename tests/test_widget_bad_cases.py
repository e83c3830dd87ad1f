"""Creating a project in the widget from a folder with unusable cases: named, then asked."""

import pytest

from test_store import make_source

pytestmark = pytest.mark.gui


@pytest.fixture
def bad_source(tmp_path):
    source = make_source(tmp_path / "source", n_cases=3, channels=("t1",))
    channel = source / "case_001" / "case_001_t1.nii.gz"
    channel.unlink()
    channel.mkdir()  # a folder named like the channel file
    return source


@pytest.mark.parametrize("answer", [True, False])
def test_unusable_cases_are_named_and_skipped_only_when_the_user_agrees(
        make_napari_viewer_proxy, qtbot, tmp_path, monkeypatch, bad_source, answer):
    from napari_alseg import _widget

    shown, asked = [], []
    monkeypatch.setattr(_widget, "show_error", lambda message: shown.append(("error", message)))
    monkeypatch.setattr(_widget, "show_warning", lambda message: shown.append(("warning", message)))
    dock = _widget.AlsegWidget(make_napari_viewer_proxy())
    qtbot.addWidget(dock)
    monkeypatch.setattr(dock, "confirm", lambda question: asked.append(question) or answer)
    dock.controller.create_project(bad_source, tmp_path / "project")
    assert len(asked) == 1 and "case_001: case_001_t1.nii.gz is a folder, not a NIfTI file" in asked[0]
    if answer:
        assert [case.name for case in dock.controller.session.catalog.cases] == ["case_000", "case_002"]
        assert shown[-1] == ("warning", "created without 1 case(s): case_001")
        dock.controller.close_project()
    else:
        assert dock.controller.session is None and not (tmp_path / "project").exists()
        assert shown[-1][0] == "error" and "\n" not in shown[-1][1]
