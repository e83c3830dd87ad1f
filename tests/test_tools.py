"""The tools that cut tracing (fill between slices, the model's outline) and undo, headless.

Each is a session verb; what it set is recorded as an event of its own kind with the voxels
kept, and its outline is not charged as traced boundary.
"""

import sqlite3

import numpy as np
import pytest

import synthetic_cases
from napari_alseg.domain import INTERPOLATED, MANUAL, OUTLINE_ACCEPTED, UNDO
from napari_alseg.errors import AlsegError
from napari_alseg.session import Session
from napari_alseg.store import DB_NAME, Project
from napari_alseg.store.database import Database
from napari_alseg.store.schema import MIGRATIONS

SHAPE = (12, 32, 32)


@pytest.fixture
def case_session(tmp_path):
    source = synthetic_cases.make_source(tmp_path / "source", granularity="case", n_cases=2, shape=SHAPE,
                                         classes=synthetic_cases.BLOB_CLASSES)
    project = Project.create(tmp_path / "project", source, annotator="dr-a", validation_fraction=0.0)
    with Session(project, annotator="dr-a") as session:
        yield session


def disc(radius, centre=(16, 16), shape=SHAPE[1:]):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def traced_two_slices():
    labels = np.zeros(SHAPE, np.uint8)
    labels[2][disc(4)] = 1
    labels[8][disc(10)] = 1
    return labels


def test_fill_between_interpolates_a_known_shape_and_is_recorded_as_interpolated(case_session):
    labels = traced_two_slices()
    result = case_session.fill_between("case_000", labels, 1, 2, 8)
    for k in range(3, 8):  # radius 4 -> 10 over six steps: one pixel per slice
        expected = disc(4 + (k - 2))
        assert abs(int((result.labels[k] == 1).sum()) - int(expected.sum())) <= 0.1 * expected.sum()
    assert (result.labels[[0, 1, 9, 10, 11]] == 0).all() and (labels[3:8] == 0).all()  # input kept
    assert result.edit.kind == INTERPOLATED and result.edit.voxels == int((result.labels != labels).sum())

    traced_only = case_session.accounting.boundary_effort("case_000", labels)
    whole = case_session.accounting.boundary_effort("case_000", result.labels)
    case_session.submit("case_000", result.labels, seconds_active=30, tools=[result.edit])
    manual, interpolated = case_session.catalog.events()
    assert manual.kind == MANUAL and interpolated.kind == INTERPOLATED
    assert manual.boundary_mm == pytest.approx(traced_only.mm) and manual.boundary_mm < whole.mm / 2
    assert interpolated.voxels == result.edit.voxels and interpolated.class_id == 1
    assert interpolated.label_version == manual.label_version and interpolated.seconds_active == 0
    assert (case_session.catalog.current_labels("case_000").data == result.labels).all()


def test_what_the_annotator_changes_of_a_fill_is_charged_and_what_is_erased_not_kept(case_session):
    result = case_session.fill_between("case_000", traced_two_slices(), 1, 2, 8)
    fixed = result.labels.copy()
    fixed[5][:, :16][fixed[5][:, :16] == 1] = 0  # half of slice 5 erased, its cut traced
    case_session.submit("case_000", fixed, seconds_active=30, tools=[result.edit])
    manual, interpolated = case_session.catalog.events()
    assert manual.boundary_mm > case_session.accounting.boundary_effort("case_000", traced_two_slices()).mm
    assert interpolated.voxels == result.edit.voxels - int((result.labels[5] != fixed[5]).sum())


def test_fill_between_says_what_is_wrong_in_one_line(case_session):
    with pytest.raises(AlsegError, match="not traced on slice 8"):
        case_session.fill_between("case_000", np.where(traced_two_slices() == 1, 0, 0).astype(np.uint8)
                                  + (np.arange(12)[:, None, None] == 2) * disc(3), 1, 2, 8)
    with pytest.raises(AlsegError, match="shape"):
        case_session.fill_between("case_000", traced_two_slices()[:5], 1, 2, 4)


def test_accept_outline_copies_one_class_on_one_slice_where_background(case_session):
    labels = traced_two_slices()
    prediction = np.zeros(SHAPE[1:], np.uint8)
    prediction[disc(6, centre=(10, 10))] = 2
    prediction[disc(3, centre=(25, 25))] = 1  # another class: not taken
    labels[4][10, 10] = 1  # already labelled: kept
    result = case_session.accept_outline("case_000", labels, 4, 2, prediction)
    assert result.edit.kind == OUTLINE_ACCEPTED and result.edit.slice_index == 4
    assert result.labels[4][10, 10] == 1 and (result.labels[4] == 2).sum() == disc(6, (10, 10)).sum() - 1
    assert (result.labels[4] == 1).sum() == 1 and (np.delete(result.labels, 4, 0) == np.delete(labels, 4, 0)).all()
    case_session.submit("case_000", result.labels, seconds_active=20, tools=[result.edit])
    manual, accepted = case_session.catalog.events()
    assert accepted.kind == OUTLINE_ACCEPTED and accepted.slice_index == 4 and accepted.class_id == 2
    assert accepted.voxels == result.edit.voxels
    assert manual.boundary_mm == pytest.approx(case_session.accounting.boundary_effort("case_000", labels).mm)
    with pytest.raises(AlsegError, match="nothing to accept"):
        case_session.accept_outline("case_000", result.labels, 4, 2, prediction)


def test_undo_restores_the_previous_version_exactly(case_session):
    catalog = case_session.catalog
    first = traced_two_slices()
    case_session.submit("case_000", first, seconds_active=10)
    before = catalog.current_labels("case_000")
    second = first.copy()
    second[5][disc(5)] = 2
    case_session.submit("case_000", second, seconds_active=10)
    assert catalog.current_labels("case_000").version == 2

    case_session.undo_submit("case_000")
    restored = catalog.current_labels("case_000")
    assert restored.version == 3 and (restored.data == before.data).all()
    assert (restored.labelled == before.labelled).all()
    events = catalog.events()
    assert events[-1].kind == UNDO and events[-1].label_version == 3
    assert events[1].undone_in_version == 3 and events[0].undone_in_version is None
    assert (catalog.labels_at("case_000", 2).data == second).all()  # the history is kept

    case_session.undo_submit("case_000")  # the first submit too: the case is unlabelled again
    assert catalog.current_labels("case_000") is None
    assert (catalog.labels_at("case_000", 4).data == 0).all() and catalog.labels_at("case_000", 1) is not None
    assert all(event.undone_in_version is not None for event in catalog.events() if event.kind == "manual")
    assert "case_000" not in {item.case for item in case_session.view.training_items()}
    with pytest.raises(AlsegError, match=r"^case case_000: nothing submitted to undo$"):
        case_session.undo_submit("case_000")
    with pytest.raises(AlsegError, match=r"^case case_001: nothing submitted to undo$"):
        case_session.undo_submit("case_001")
    case_session.submit("case_000", first, seconds_active=5)  # labelled again: a new version on top
    assert catalog.current_labels("case_000").version == 5


def test_an_undone_submit_leaves_its_slices_unlabelled_for_training(case_session):
    catalog = case_session.catalog
    case_session.submit("case_000", traced_two_slices()[2], slice_index=2, seconds_active=5)
    case_session.submit("case_000", traced_two_slices()[8], slice_index=8, seconds_active=5)
    case_session.undo_submit("case_000")
    assert set(case_session.view.delineated_classes("case_000")) == {2}
    assert not catalog.current_labels("case_000").labelled[8].any()


def test_events_of_an_older_project_survive_the_tools_migration(tmp_path, case_session):
    case_session.submit("case_000", traced_two_slices(), seconds_active=7)
    case_session.close()
    db_path = tmp_path / "project" / DB_NAME
    older = sqlite3.connect(db_path)
    older.execute("PRAGMA user_version = 3")  # the v4 table accepts v3's rows: run v4 again on a copy
    older.execute("CREATE TABLE events_v3 AS SELECT id, case_id, slice_index, class_id, kind, annotator, "
                  "started_at, ended_at, seconds_active, boundary_px, boundary_mm, label_version, "
                  "original_path, dice_original_final, model_version FROM events")
    older.execute("DROP TABLE events")
    older.execute("ALTER TABLE events_v3 RENAME TO events")
    older.commit()
    older.close()
    Database(db_path, MIGRATIONS).close()
    with Project.open(tmp_path / "project") as reopened:
        (event,) = reopened.events()
        assert event.kind == MANUAL and event.seconds_active == 7 and event.voxels is None
        reopened.submit("case_000", traced_two_slices(), kind=MANUAL, annotator="a", seconds_active=1)
        assert [e.id for e in reopened.events()] == [1, 2]
