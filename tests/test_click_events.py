"""Segment with clicks as a tool that cuts tracing: the session verb, its events (kind
``clicked`` with the clicks), the v4 -> v5 migration and the seconds model's per-click cost."""

import csv

import numpy as np
import pytest

import synthetic_cases
from napari_alseg.clicks import Click
from napari_alseg.domain import CLICKED, EVENT_KINDS, INTERPOLATED, MANUAL, TOOL_KINDS
from napari_alseg.effort.seconds import CLICK_SECONDS_PRIOR, SecondsModel
from napari_alseg.errors import AlsegError
from napari_alseg.session import Session
from napari_alseg.session import facade
from napari_alseg.session.learner import Learner
from napari_alseg.session.tools import ToolEdit, tool_uses
from napari_alseg.store import DB_NAME, Project, ToolUse
from napari_alseg.store.database import Database
from napari_alseg.store.schema import _VERSION_4, MIGRATIONS
from test_store import EVENT_COLUMNS_V4, events_as_in_version

SHAPE = (12, 32, 32)


def session_of(tmp_path, granularity):
    source = synthetic_cases.make_source(tmp_path / "source", granularity=granularity, n_cases=1, shape=SHAPE,
                                         classes=synthetic_cases.BLOB_CLASSES)
    project = Project.create(tmp_path / "project", source, annotator="dr-c", validation_fraction=0.0)
    return Session(project, annotator="dr-c")


@pytest.fixture
def case_session(tmp_path):
    with session_of(tmp_path, "case") as session:
        yield session


@pytest.fixture
def slice_session(tmp_path):
    with session_of(tmp_path, "slice") as session:
        yield session


def truth():
    return synthetic_cases.blob_case(0, SHAPE)[1]


def core_click(slice_index=5, positive=True):
    centre = np.argwhere(truth()[slice_index] == 1).mean(axis=0).round().astype(int)
    return Click((slice_index, int(centre[0]), int(centre[1])), positive)


def test_the_click_kind_is_a_tool_and_an_event():
    assert CLICKED == "clicked" and CLICKED in TOOL_KINDS and CLICKED in EVENT_KINDS


def test_click_segment_changes_only_the_chosen_class_and_returns_a_clicked_edit(case_session):
    labels = np.where(truth() == 2, 2, 0).astype(np.uint8)  # the rim traced already
    clicks = [core_click(5), core_click(8)]
    result = case_session.click_segment("case_000", labels, 1, clicks)
    assert result.edit.kind == CLICKED and result.edit.clicks == 2 and result.edit.class_id == 1
    assert result.edit.slice_index is None
    changed = result.labels != labels
    assert set(np.unique(labels[changed])) <= {0, 1} and set(np.unique(result.labels[changed])) <= {0, 1}
    assert ((result.labels == 2) == (labels == 2)).all() and (labels == np.where(truth() == 2, 2, 0)).all()
    core = truth() == 1
    found = result.labels == 1
    assert (found & core).sum() >= 0.95 * found.sum() and (found & core).sum() > 0.5 * core.sum()
    assert (result.edit.mask == found).all() and result.edit.voxels == int(found.sum())


def test_a_submit_records_a_clicked_event_with_its_clicks_and_kept_voxels(case_session):
    labels = np.zeros(SHAPE, np.uint8)
    result = case_session.click_segment("case_000", labels, 1, [core_click(5), core_click(6), core_click(7)])
    final = result.labels.copy()
    final[0][final[0] == 1] = 0  # the annotator erases one slice of it
    case_session.submit("case_000", final, seconds_active=20, tools=[result.edit])
    manual, clicked = case_session.catalog.events()
    assert manual.kind == MANUAL and manual.clicks is None
    assert clicked.kind == CLICKED and clicked.clicks == 3 and clicked.class_id == 1
    assert clicked.voxels == result.edit.voxels - int((result.labels[0] == 1).sum())
    assert clicked.label_version == manual.label_version and clicked.seconds_active == 0
    # its outline is not charged (nothing was traced by hand)
    assert case_session.accounting.boundary_effort("case_000", final).mm > 100 and manual.boundary_mm == pytest.approx(0)


def test_a_clicked_edit_erased_by_the_annotator_is_still_recorded_for_its_clicks():
    mask = np.zeros(SHAPE, bool)
    mask[3, 10:14, 10:14] = True
    edits = [ToolEdit(CLICKED, 1, 3, mask, clicks=2), ToolEdit(INTERPOLATED, 1, None, mask)]
    (use,) = tool_uses(edits, np.zeros(SHAPE, np.uint8), None)
    assert use == ToolUse(CLICKED, 3, 1, 0, clicks=2)
    assert tool_uses(edits, np.zeros(SHAPE[1:], np.uint8), 3) == [ToolUse(CLICKED, 3, 1, 0, clicks=2)]


def test_a_slice_project_needs_the_slice_to_click_on(slice_session):
    labels = np.zeros(SHAPE, np.uint8)
    with pytest.raises(AlsegError, match=r"^[^\n]*slice[^\n]*$"):
        slice_session.click_segment("case_000", labels, 1, [core_click(5)])


def test_a_slice_project_clicks_one_slice_with_the_model_as_a_prior(slice_session, monkeypatch):
    n_classes = slice_session.catalog.n_classes
    probabilities = np.full((n_classes,) + SHAPE[1:], 1.0 / n_classes, np.float32)
    probabilities[1][truth()[5] == 1] = 0.95
    monkeypatch.setattr(Learner, "model_version", property(lambda self: "fake"))
    monkeypatch.setattr(slice_session.learner, "predict_probabilities",
                        lambda case, slice_index=None: probabilities)
    priors = []
    real = facade.segment_with_clicks

    def recording(*args, prior=None, **options):
        priors.append(prior)
        return real(*args, prior=prior, **options)

    monkeypatch.setattr(facade, "segment_with_clicks", recording)
    labels = np.zeros(SHAPE, np.uint8)
    result = slice_session.click_segment("case_000", labels, 1, [core_click(5)], slice_index=5)
    (prior,) = priors
    assert prior.shape == SHAPE and prior.dtype == np.float32
    assert (np.delete(prior, 5, axis=0) == 0.5).all() and (prior[5] == probabilities[1]).all()
    assert result.edit.slice_index == 5 and result.edit.clicks == 1
    assert (np.delete(result.labels, 5, axis=0) == 0).all() and (result.labels[5] == 1).any()
    slice_session.click_segment("case_000", labels, 1, [core_click(5)], slice_index=5, use_model=False)
    assert priors[-1] is None


def test_a_version_4_project_migrates_and_keeps_its_events(tmp_path, case_session):
    mask = np.zeros(SHAPE, bool)
    mask[4, 10:14, 10:14] = True
    labels = np.where(mask, 1, 0).astype(np.uint8)
    case_session.submit("case_000", labels, seconds_active=7,
                        tools=[ToolEdit(INTERPOLATED, 1, None, mask)])
    case_session.close()
    db_path = tmp_path / "project" / DB_NAME
    older = events_as_in_version(db_path, 4, _VERSION_4[0], EVENT_COLUMNS_V4)
    assert "clicks" not in [row[1] for row in older.execute("PRAGMA table_info(events)")]
    older.close()
    Database(db_path, MIGRATIONS).close()
    with Project.open(tmp_path / "project") as reopened:
        manual, interpolated = reopened.events()
        assert manual.kind == MANUAL and manual.seconds_active == 7 and manual.clicks is None
        assert interpolated.kind == INTERPOLATED and interpolated.voxels == 16 and interpolated.clicks is None
        reopened.submit("case_000", labels, kind=MANUAL, annotator="a", seconds_active=1,
                        tools=[ToolUse(CLICKED, 4, 1, 16, clicks=2)])
        assert [(e.id, e.kind, e.clicks) for e in reopened.events()][2:] == [(3, MANUAL, None), (4, CLICKED, 2)]


def test_a_tool_use_with_negative_clicks_is_refused_in_one_line(case_session):
    with pytest.raises(AlsegError, match=r"^[^\n]*clicks[^\n]*$"):
        case_session._project.submit("case_000", np.zeros(SHAPE, np.uint8), kind=MANUAL, annotator="a",
                                    seconds_active=1, tools=[ToolUse(CLICKED, None, 1, 0, clicks=-1)])


# ------------------------------------------------------------------ seconds per click

def timed(px, clicks):
    return 10.0 + 0.1 * px + 4.0 * clicks


def test_the_seconds_model_uses_the_prior_per_click_until_three_click_submits():
    px = [100, 200, 300, 400, 150]
    clicks = [0, 0, 0, 2, 5]
    model = SecondsModel.fit([1] * 5, px, [timed(p, n) for p, n in zip(px, clicks)], clicks)
    assert model.click_seconds == CLICK_SECONDS_PRIOR == 3.0 and not model.click_seconds_fitted
    assert model.predict(1, 100, clicks=2) == pytest.approx(model.predict(1, 100) + 2 * CLICK_SECONDS_PRIOR)


def test_the_seconds_model_fits_the_cost_of_a_click_from_three_click_submits():
    px = [100, 200, 300, 400, 150, 250]
    clicks = [0, 0, 0, 2, 5, 1]
    model = SecondsModel.fit([1] * 6, px, [timed(p, n) for p, n in zip(px, clicks)], clicks)
    assert model.click_seconds_fitted and model.click_seconds == pytest.approx(4.0)
    assert model.predict(1, 500) == pytest.approx(timed(500, 0))
    assert model.predict(1, 500, clicks=3) == pytest.approx(timed(500, 3))
    only_clicks = SecondsModel.fit([2] * 4, [0, 0, 0, 0], [timed(0, n) for n in (1, 2, 4, 6)], [1, 2, 4, 6])
    assert only_clicks.click_seconds == pytest.approx(4.0) and only_clicks.predict(2, 0) == pytest.approx(10)
    faster_than_free = SecondsModel.fit([1] * 5, [100, 200, 100, 200, 150], [30, 40, 20, 10, 25], [0, 0, 5, 9, 3])
    assert faster_than_free.click_seconds == 0.0 and faster_than_free.click_seconds_fitted


def test_the_session_fits_seconds_per_click_from_the_clicked_events_of_each_submit(case_session):
    project = case_session._project
    labels = np.zeros(SHAPE, np.uint8)
    labels[4, 10:14, 10:14] = 1
    for px, clicks in ((100, 0), (200, 0), (300, 0), (150, 3), (250, 5), (120, 4)):
        split = [ToolUse(CLICKED, 4, 1, 8, clicks=clicks // 2), ToolUse(CLICKED, 4, 1, 8, clicks=clicks - clicks // 2)]
        project.submit("case_000", labels, kind=MANUAL, annotator="a", seconds_active=timed(px, clicks),
                       boundary_px=px, tools=split if clicks else [])
        if px == 150:
            assert not case_session.accounting.seconds_model().click_seconds_fitted
    model = case_session.accounting.seconds_model()
    assert model.click_seconds_fitted and model.click_seconds == pytest.approx(4.0)
    assert model.predict(1, 100, clicks=2) == pytest.approx(timed(100, 2))


def test_a_submit_made_only_of_clicks_is_timed(case_session):
    project = case_session._project
    labels = np.zeros(SHAPE, np.uint8)
    for clicks in (2, 3, 6):
        project.submit("case_000", labels, kind=MANUAL, annotator="a", seconds_active=timed(0, clicks),
                       boundary_px=0.0, tools=[ToolUse(CLICKED, None, 1, 0, clicks=clicks)])
    model = case_session.accounting.seconds_model()
    assert model.click_seconds_fitted and model.predict(1, 0, clicks=1) == pytest.approx(timed(0, 1))


def test_the_provenance_export_carries_the_clicks(tmp_path, case_session):
    case_session._project.submit("case_000", np.zeros(SHAPE, np.uint8), kind=MANUAL, annotator="a",
                                seconds_active=5, tools=[ToolUse(CLICKED, 4, 1, 0, clicks=3)])
    case_session.export(tmp_path / "export")
    rows = list(csv.DictReader(open(tmp_path / "export" / "provenance.csv", encoding="utf-8")))
    assert [(row["kind"], row["clicks"]) for row in rows] == [(MANUAL, ""), (CLICKED, "3")]
