"""Labels a user already has (MSD ``labelsTr/``, ``*_seg`` files) become annotations of kind
``imported`` at creation, unless they are held back as ground truth for simulation (issue 22)."""

import sqlite3

import nibabel as nib
import numpy as np
import pytest

from napari_alseg._reader import read_nifti
from napari_alseg.cli import main
from napari_alseg.domain import IMPORTED, LABELS_AS_ANNOTATIONS, LABELS_AS_GROUND_TRUTH, MANUAL
from napari_alseg.errors import AlsegError
from napari_alseg.session import Session
from napari_alseg.store import DB_NAME, Project
from napari_alseg.store.database import Database
from napari_alseg.store.schema import _VERSION_5, MIGRATIONS
from test_msd_ingest import AFFINE, SPATIAL, label_of, make_msd
from test_store import EVENT_COLUMNS_V4, events_as_in_version

TRAIN = ("BRATS_001", "BRATS_002", "BRATS_003")
TEST = ("BRATS_101", "BRATS_102")


@pytest.fixture
def msd(tmp_path):
    return make_msd(tmp_path / "msd", train=TRAIN, test=TEST)


def create(tmp_path, msd, *options):
    project = tmp_path / "project"
    assert main(["create", str(project), "--from", str(msd), *options]) == 0
    return project


def test_cli_create_imports_labels_as_annotations_counted_by_status(tmp_path, msd, capsys):
    project = create(tmp_path, msd)
    assert "labels: imported for 3 cases" in capsys.readouterr().out
    assert main(["status", str(project)]) == 0
    out = capsys.readouterr().out
    assert "cases:        5 (3 with labels: 3 imported, 0 annotated; 1 validation items)" in out
    assert "ground truth" not in out
    with Project.open(project) as opened:
        assert all(case.ground_truth_path is None for case in opened.cases)
        events = opened.events()
        assert [(e.case, e.kind, e.label_version, e.seconds_active, e.boundary_px, e.started_at)
                for e in events] == [(name, IMPORTED, 1, 0.0, None, None) for name in TRAIN]
        np.testing.assert_array_equal(opened.current_labels("BRATS_002").data, label_of(1).transpose(2, 1, 0))
        assert opened.current_labels("BRATS_002").labelled.all()
        assert opened.current_labels("BRATS_101") is None


def test_imported_labels_are_trainable_and_never_suggested(tmp_path, msd, capsys):
    project = create(tmp_path, msd)
    with Session.open(project, annotator="dr-c") as session:
        held_out = {case for case, _ in session.catalog.validation_items()}
        trained = {item.case for item, _ in session.view.keyed_training_items()}
        assert trained == set(TRAIN) - held_out and trained
        suggested = {s.item.case for s in session.suggest(5)}
    assert suggested and suggested.isdisjoint(TRAIN)
    capsys.readouterr()
    assert main(["suggest", str(project), "-k", "5"]) == 0
    assert not any(name in capsys.readouterr().out for name in TRAIN)


def test_an_annotated_case_is_counted_apart_from_imported_ones(tmp_path, msd, capsys):
    project = create(tmp_path, msd, "--annotator", "dr-c")
    with Project.open(project) as opened:
        opened.submit("BRATS_001", np.zeros(SPATIAL[::-1], np.uint8), kind=MANUAL, annotator="dr-c",
                      seconds_active=5)
        opened.submit("BRATS_101", np.zeros(SPATIAL[::-1], np.uint8), kind=MANUAL, annotator="dr-c",
                      seconds_active=5)
    capsys.readouterr()
    assert main(["status", str(project)]) == 0
    assert "(4 with labels: 2 imported, 2 annotated;" in capsys.readouterr().out


def test_labels_as_ground_truth_keeps_them_for_the_simulation(tmp_path, msd, capsys):
    project = create(tmp_path, msd, "--labels-as", LABELS_AS_GROUND_TRUTH)
    assert "labels: held back as ground truth for simulation in 3 cases" in capsys.readouterr().out
    assert main(["status", str(project)]) == 0
    out = capsys.readouterr().out
    assert "(0 with labels: 0 imported, 0 annotated; 1 validation items)" in out
    assert "ground truth: held back for simulation in 3 cases" in out
    assert main(["retrain", str(project)]) == 2
    assert "no labelled data yet" in capsys.readouterr().err
    with Project.open(project) as opened:
        assert opened.events() == []
        np.testing.assert_array_equal(opened.ground_truth("BRATS_002"), label_of(1).transpose(2, 1, 0))


def test_the_python_api_keeps_ground_truth_by_default(tmp_path, msd):
    with Project.create(tmp_path / "default", msd) as project:
        assert project.events() == [] and project.case("BRATS_001").ground_truth_path is not None
    with Project.create(tmp_path / "imported", msd, labels_as=LABELS_AS_ANNOTATIONS) as project:
        assert len(project.events()) == len(TRAIN)
    with pytest.raises(AlsegError, match="labels_as must be one of"):
        Project.create(tmp_path / "bad", msd, labels_as="both")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_import_leaves_no_project(tmp_path, msd, monkeypatch, existed):
    def fail(*args, **kwargs):
        raise AlsegError("disk full")

    if existed:
        (tmp_path / "project").mkdir()
    monkeypatch.setattr(Project, "submit", fail)
    with pytest.raises(AlsegError, match="disk full"):
        Project.create(tmp_path / "project", msd, labels_as=LABELS_AS_ANNOTATIONS)
    assert (tmp_path / "project").exists() == existed and not (tmp_path / "project" / DB_NAME).exists()


def test_undo_after_an_import_restores_the_imported_labels_and_then_takes_the_import_back(tmp_path, msd):
    with Project.create(tmp_path / "project", msd, labels_as=LABELS_AS_ANNOTATIONS) as project:
        imported = project.current_labels("BRATS_001").data
        project.submit("BRATS_001", np.zeros(SPATIAL[::-1], np.uint8), kind=MANUAL, annotator="dr-c",
                       seconds_active=1)
        project.undo_submit("BRATS_001", annotator="dr-c")
        np.testing.assert_array_equal(project.current_labels("BRATS_001").data, imported)
        project.undo_submit("BRATS_001", annotator="dr-c")  # the import itself: the case is unlabelled
        assert project.current_labels("BRATS_001") is None
        np.testing.assert_array_equal(project.labels_at("BRATS_001", 1).data, imported)  # kept in history


def test_a_version_5_project_migrates_and_keeps_its_events(tmp_path, msd):
    with Project.create(tmp_path / "project", msd) as project:
        project.submit("BRATS_001", np.zeros(SPATIAL[::-1], np.uint8), kind=MANUAL, annotator="dr-c",
                       seconds_active=7)
    db_path = tmp_path / "project" / DB_NAME
    older = events_as_in_version(db_path, 5, _VERSION_5[0], EVENT_COLUMNS_V4 + ", clicks")
    with pytest.raises(sqlite3.IntegrityError):
        older.execute("INSERT INTO events (case_id, kind, annotator, ended_at, seconds_active) "
                      "VALUES (1, 'imported', 'a', 'now', 0)")
    older.close()
    Database(db_path, MIGRATIONS).close()
    with Project.open(tmp_path / "project") as reopened:
        (manual,) = reopened.events()
        assert (manual.kind, manual.annotator, manual.seconds_active, manual.label_version) == (MANUAL, "dr-c", 7, 1)
        reopened.submit("BRATS_002", np.zeros(SPATIAL[::-1], np.uint8), kind=IMPORTED, annotator="unknown",
                        seconds_active=0)
        assert [e.kind for e in reopened.events()] == [MANUAL, IMPORTED]


@pytest.mark.parametrize("relative", ["labelsTr/case.nii.gz", "labels/case.nii.gz", "case_seg.nii.gz",
                                      "case_label.nii.gz"])
def test_the_reader_opens_an_integer_label_file_as_labels(tmp_path, relative):
    path = tmp_path / relative
    path.parent.mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(label_of(0), AFFINE), str(path))  # uint8, no label intent
    ((data, _, kind),) = read_nifti(str(path))
    assert kind == "labels" and np.issubdtype(data.dtype, np.integer)


def test_the_reader_keeps_a_float_image_in_a_labels_folder_an_image(tmp_path):
    path = tmp_path / "labels" / "case.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(SPATIAL).astype(np.float32), AFFINE), str(path))
    ((_, _, kind),) = read_nifti(str(path))
    assert kind == "image"
