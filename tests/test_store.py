"""The project store: creation from sample layouts, label versions, records, export."""

import csv
import json
import sqlite3
import zlib

import nibabel as nib
import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.metrics import VAL_DICE_PER_CLASS, per_class
from napari_alseg.nifti import load_volume, save_volume
from napari_alseg.store import DB_NAME, SCHEMA_VERSION, Project, ScoredItem
from napari_alseg.store.database import Database
from napari_alseg.store.schema import MIGRATIONS
from synthetic_cases import validation_cases

SHAPE = (4, 6, 5)  # (k, j, i): 4 slices of 6 x 5 voxels
CLASSES = {"0": {"name": "background", "color": [0, 0, 0]},
           "1": {"name": "tumour", "color": [255, 0, 0]},
           "2": {"name": "edema", "color": [0, 255, 0]}}
AFFINE = np.array([[0.9, 0, 0, -10.0], [0, 1.1, 0, 5.0], [0, 0, 3.0, 2.0], [0, 0, 0, 1]])


EVENT_COLUMNS_V4 = ("id, case_id, slice_index, class_id, kind, annotator, started_at, ended_at, seconds_active, "
                    "boundary_px, boundary_mm, label_version, original_path, dice_original_final, model_version, "
                    "voxels, undone_in_version")


def events_as_in_version(db_path, version: int, create_table: str, columns: str) -> sqlite3.Connection:
    """An open connection to ``db_path`` whose events table is rebuilt as schema ``version``
    built it (``create_table``: that migration's ``CREATE TABLE events_v<version>``, holding
    ``columns``), committed: an older project, for a migration test to bring up to date."""
    older = sqlite3.connect(db_path)
    older.execute(create_table)
    older.execute(f"INSERT INTO events_v{version} ({columns}) SELECT {columns} FROM events")
    older.execute("DROP TABLE events")
    older.execute(f"ALTER TABLE events_v{version} RENAME TO events")
    older.execute(f"PRAGMA user_version = {version}")
    older.commit()
    return older


def synthetic_labels(seed, shape=SHAPE, n_classes=3):
    return np.random.default_rng(seed).integers(0, n_classes, size=shape).astype(np.uint8)


def write_case(folder, name, *, channels=("t2", "t1c"), shape=SHAPE, affine=AFFINE,
               truth=True, flat=False):
    """One synthetic case: ``<folder>/<name>/<name>_<channel>.nii.gz`` (+ ``_seg``)."""
    case_dir = folder if flat else folder / name
    case_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for channel in channels:
        save_volume(case_dir / f"{name}_{channel}.nii.gz", rng.random(shape).astype(np.float32), affine)
    if truth:
        save_volume(case_dir / f"{name}_seg.nii.gz", synthetic_labels(1, shape), affine, is_label=True)
    return case_dir


def make_source(root, n_cases=3, *, classes=CLASSES, granularity="case", **case_options):
    """A sample-generator-like set: case folders, classes.json and dataset.json."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(n_cases):
        write_case(root, f"case_{index:03d}", **case_options)
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    channels = list(case_options.get("channels", ("t2", "t1c")))
    (root / "dataset.json").write_text(json.dumps(
        {"name": "synthetic", "granularity": granularity, "channels": channels}))
    return root


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "project", make_source(tmp_path / "source"),
                        annotator="tester", validation_fraction=0.34, seed=3) as opened:
        yield opened


def submit_slice(project, case="case_000", slice_index=1, seed=0, **options):
    labels = synthetic_labels(seed, SHAPE[1:])
    options = {"kind": "manual", "annotator": "ann", "seconds_active": 12.5, **options}
    return project.submit(case, labels, slice_index=slice_index, **options), labels


# --------------------------------------------------------------------------- creation


def test_create_reads_cases_channels_classes_and_paths(tmp_path, project):
    assert [case.name for case in project.cases] == ["case_000", "case_001", "case_002"]
    case = project.case("case_001")
    assert case.channel_names == ("t2", "t1c")  # dataset.json's order: the model's input order
    assert [p.name for p in case.channel_paths] == ["case_001_t2.nii.gz", "case_001_t1c.nii.gz"]
    assert all(p.is_absolute() and p.exists() for p in case.channel_paths)
    assert case.ground_truth_path.name == "case_001_seg.nii.gz"
    assert case.shape == SHAPE and case.spacing == pytest.approx((3.0, 1.1, 0.9))
    np.testing.assert_allclose(case.source_affine, AFFINE)
    assert project.class_names == ("background", "tumour", "edema")
    assert project.classes[1].color == (255, 0, 0)
    assert project.dataset_name == "synthetic" and project.granularity == "case"
    channels = project.load_channels("case_001")
    assert [v.shape for v in channels] == [SHAPE, SHAPE]
    np.testing.assert_array_equal(project.ground_truth("case_001"), synthetic_labels(1))
    stored = sqlite3.connect(tmp_path / "project" / DB_NAME).execute(
        "SELECT channel_paths FROM cases WHERE name = 'case_001'").fetchone()[0]
    assert json.loads(stored) == ["case_001/case_001_t2.nii.gz", "case_001/case_001_t1c.nii.gz"]


def test_validation_split_is_seeded_fixed_and_survives_reopen(tmp_path, project):
    held_out = validation_cases(project)
    assert len(held_out) == 1
    project.close()
    with Project.open(project.folder) as reopened:
        assert validation_cases(reopened) == held_out
    again = Project.create(tmp_path / "other", tmp_path / "source", validation_fraction=0.34, seed=3)
    assert validation_cases(again) == held_out
    again.close()


def test_flat_files_are_grouped_by_case_id(tmp_path):
    source = tmp_path / "flat"
    for name in ("sub_01", "sub_02"):
        write_case(source, name, channels=("t1", "flair"), flat=True)
    with Project.create(tmp_path / "project", source, class_names=["bg", "a", "b"]) as project:
        assert [c.name for c in project.cases] == ["sub_01", "sub_02"]
        assert project.case("sub_02").channel_names == ("flair", "t1")
        assert project.case("sub_02").ground_truth_path.name == "sub_02_seg.nii.gz"


def test_a_2d_stack_is_one_case_with_a_slice_validation_split(tmp_path):
    source = tmp_path / "brain-stack"
    stack = source / "stack"
    stack.mkdir(parents=True)
    save_volume(stack / "stack_t1.nii.gz", np.ones((10, 8, 8), np.float32), np.eye(4))
    save_volume(stack / "stack_seg.nii.gz", np.ones((10, 8, 8), np.uint8), np.eye(4), is_label=True)
    with Project.create(tmp_path / "project", source, validation_fraction=0.2) as project:
        assert [c.name for c in project.cases] == ["stack"]
        assert project.case("stack").channel_names == ("t1",)
        assert project.class_names == ("background", "class_1")  # from the ground truth
        assert project.granularity == "slice"
        assert validation_cases(project) == []
        assert [case for case, _ in project.validation_items()] == ["stack", "stack"]


# --------------------------------------------------------------------------- bad input on create


def _shape_mismatch(source):
    save_volume(source / "case_001" / "case_001_t1c.nii.gz", np.zeros((4, 6, 6), np.float32), AFFINE)


def _affine_mismatch(source):
    shifted = AFFINE.copy()
    shifted[0, 3] += 5.0
    save_volume(source / "case_001" / "case_001_t1c.nii.gz", np.zeros(SHAPE, np.float32), shifted)


def _truth_shape(source):
    save_volume(source / "case_002" / "case_002_seg.nii.gz", np.zeros((3, 6, 5), np.uint8), AFFINE,
                is_label=True)


def _truth_not_integer(source):
    image = nib.Nifti1Image(np.full(SHAPE[::-1], 0.5, np.float32), AFFINE)
    nib.save(image, str(source / "case_002" / "case_002_seg.nii.gz"))


def _truth_out_of_range(source):
    save_volume(source / "case_002" / "case_002_seg.nii.gz", np.full(SHAPE, 7, np.uint8), AFFINE,
                is_label=True)


def _truncated(source):
    path = source / "case_001" / "case_001_t1c.nii.gz"
    path.write_bytes(path.read_bytes()[:60])


def _channel_missing(source):
    (source / "case_001" / "case_001_t1c.nii.gz").unlink()


def _dataset_channels_differ(source):
    (source / "dataset.json").write_text(json.dumps({"channels": ["t2", "flair"]}))


def _bad_classes_json(source):
    (source / "classes.json").write_text("{not json")


@pytest.mark.parametrize("damage, expected", [
    (_shape_mismatch, "case_001_t1c.nii.gz: shape"),
    (_affine_mismatch, "case_001_t1c.nii.gz: affine differs"),
    (_truth_shape, "case_002_seg.nii.gz: shape"),
    (_truth_not_integer, "case_002_seg.nii.gz: label volume holds non-integer"),
    (_truth_out_of_range, "case_002_seg.nii.gz: label id 7 is out of range"),
    (_truncated, "case_001_t1c.nii.gz"),
    (_channel_missing, "case 'case_001' has channels ['t2']"),
    (_dataset_channels_differ, "dataset.json: lists channels ['t2', 'flair']"),
    (_bad_classes_json, "classes.json: not readable JSON"),
])
def test_bad_source_is_refused_and_nothing_is_written(tmp_path, damage, expected):
    source = make_source(tmp_path / "source")
    damage(source)
    with pytest.raises(AlsegError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        Project.create(tmp_path / "project", source)
    assert not (tmp_path / "project").exists()


def test_empty_or_missing_source_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlsegError, match="empty: no NIfTI cases found"):
        Project.create(tmp_path / "project", tmp_path / "empty")
    with pytest.raises(AlsegError, match="nowhere: source folder not found"):
        Project.create(tmp_path / "project", tmp_path / "nowhere")


def test_create_refuses_a_folder_that_holds_a_project(tmp_path, project):
    project.close()
    with pytest.raises(AlsegError, match=f"project: already holds a project \\({DB_NAME}\\)"):
        Project.create(project.folder, tmp_path / "source")


def test_open_refuses_a_newer_schema_naming_both_versions(project):
    project.close()
    db = project.folder / DB_NAME
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(AlsegError, match=(f"{DB_NAME}: project schema version {SCHEMA_VERSION + 5} "
                                          f"is newer than .* \\(version {SCHEMA_VERSION}\\)")):
        Project.open(project.folder)
    with pytest.raises(AlsegError, match="not a project folder"):
        Project.open(project.folder / "labels")


def test_migrations_apply_in_order_and_only_once(project):
    project.close()
    db_path = project.folder / DB_NAME
    extra = (("ALTER TABLE events ADD COLUMN note TEXT",), ("UPDATE meta SET value = 'v3' WHERE key = 'dataset_name'",))
    for _ in range(2):  # a second open must not re-run them
        database = Database(db_path, MIGRATIONS + extra)
        database.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 2
    assert conn.execute("SELECT value FROM meta WHERE key = 'dataset_name'").fetchone()[0] == "v3"


def test_a_version_6_project_keeps_its_per_class_dice_by_class_id(project):
    """Schema v7: a checkpoint's per-class Dice keyed by class name (``val_dice_<name>``, which a
    class called ``x_y`` or renamed since broke) becomes one list by class id."""
    project.update_class(1, name="x_y")
    project.models_dir.mkdir()
    for version in ("v0001", "v0002"):
        (project.models_dir / f"{version}.pt").write_bytes(b"weights")
    project.record_checkpoint("v0001", project.models_dir / "v0001.pt", metrics={
        "val_dice": 0.6, "val_dice_x_y": 0.7, "val_dice_edema": float("nan"), "label_dice_x_y": 0.5,
        "val_dice_tumour": 0.2, "n_items": 4})  # tumour: class 1's name when this model was validated
    project.record_checkpoint("v0002", project.models_dir / "v0002.pt")  # no metrics (an imported model)
    project.close()
    with sqlite3.connect(project.folder / DB_NAME) as older:
        older.execute("PRAGMA user_version = 6")
    with Project.open(project.folder) as reopened:
        first, second = (checkpoint.metrics for checkpoint in reopened.checkpoints())
        assert sorted(first) == ["label_dice_per_class", "n_items", "val_dice", "val_dice_per_class",
                                 "val_dice_tumour"]  # a key of a class renamed since matches no class: kept
        assert first["val_dice_per_class"][:2] == [None, 0.7] and np.isnan(first["val_dice_per_class"][2])
        assert first["label_dice_per_class"] == [None, 0.5, None]  # edema: not measured on the labels
        np.testing.assert_array_equal(per_class(first, VAL_DICE_PER_CLASS, 3), [0.7, np.nan])
        assert second == {}
    with sqlite3.connect(project.folder / DB_NAME) as migrated:
        assert migrated.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --------------------------------------------------------------------------- labels


def test_slice_submits_append_versions_and_merge_into_the_latest(project):
    assert project.current_labels("case_000") is None
    first, labels_1 = submit_slice(project, slice_index=np.int64(1), seed=1)  # numpy ids bind too
    second, labels_2 = submit_slice(project, slice_index=3, seed=2)
    snapshot = project.current_labels("case_000")
    assert snapshot.version == 2
    np.testing.assert_array_equal(snapshot.data[1], labels_1)
    np.testing.assert_array_equal(snapshot.data[3], labels_2)
    assert snapshot.labelled[[1, 3]].all() and not snapshot.labelled[[0, 2]].any()
    assert not snapshot.data.flags.writeable
    old = project.labels_at("case_000", 1)
    assert old.data[3].sum() == 0 and not old.labelled[3].any()
    folder = project.folder / "labels" / "case_000"
    assert sorted(p.name for p in folder.iterdir()) == ["v0001.json", "v0001.nii.gz", "v0002.json", "v0002.nii.gz"]
    assert [e.id for e in project.events("case_000")] == [first, second]
    assert project.events("case_000")[1].label_version == 2


def test_a_single_class_submit_changes_only_that_class(project):
    project.submit("case_000", np.full(SHAPE[1:], 2, np.uint8), kind="manual", slice_index=0,
                   annotator="ann", seconds_active=1)
    roi = np.zeros(SHAPE[1:], np.uint8)
    roi[1:3, 1:3] = 1
    project.submit("case_000", roi, kind="manual", slice_index=2, class_id=1, annotator="ann",
                   seconds_active=3, boundary_px=8.0, boundary_mm=8.0)
    snapshot = project.current_labels("case_000")
    np.testing.assert_array_equal(snapshot.data[2], roi)
    # slice 2: only the ROI is labelled (the rest may still be any other class)
    np.testing.assert_array_equal(snapshot.labelled[2], roi == 1)
    assert snapshot.labelled[0].all()
    smaller = np.zeros(SHAPE[1:], np.uint8)
    smaller[1, 1] = 1
    project.submit("case_000", smaller, kind="corrected", slice_index=2, class_id=1,
                   annotator="ann", seconds_active=2)
    np.testing.assert_array_equal(project.current_labels("case_000").labelled[2], smaller == 1)
    items = project.labelled_items("case_000")
    assert [(i.slice_index, i.class_id) for i in items] == [(0, None), (2, 1), (2, 1)]


def test_original_prediction_is_kept_with_dice_against_the_final(project):
    prediction = np.zeros(SHAPE[1:], np.uint8)
    prediction[0:4, 0:2] = 1
    final = np.zeros(SHAPE[1:], np.uint8)
    final[0:2, 0:2] = 1
    event_id = project.submit("case_001", final, kind="corrected", slice_index=3, annotator="ann",
                              seconds_active=4, original=prediction, model_version="m1")
    event = project.events("case_001")[0]
    assert event.dice_original_final == pytest.approx(2 * 4 / (8 + 4))
    assert event.model_version == "m1" and event.kind == "corrected"
    np.testing.assert_array_equal(project.original_labels(event_id), prediction)
    placed = nib.load(str(event.original_path))
    case = project.case("case_001")
    np.testing.assert_allclose(placed.affine[:3, 3], (case.affine @ [0, 0, 3, 1])[:3])


def test_pseudo_accept_and_reject(project):
    prediction = synthetic_labels(5)
    accepted = project.accept_pseudo("case_002", prediction, annotator="ann", model_version="m2")
    rejected = project.reject_pseudo("case_002", slice_index=1, annotator="ann",
                                     prediction=prediction[1], seconds_active=2)
    events = {e.id: e for e in project.events("case_002")}
    assert events[accepted].kind == "pseudo-accepted" and events[accepted].label_version == 1
    assert events[rejected].kind == "pseudo-rejected" and events[rejected].label_version is None
    assert project.current_labels("case_002").version == 1
    assert project.current_labels("case_002").labelled.all()
    np.testing.assert_array_equal(project.original_labels(rejected), prediction[1])


def test_drafts_are_saved_loaded_and_cleared_by_a_whole_volume_submit(project):
    assert project.load_draft("case_000") is None
    draft = synthetic_labels(9)
    project.save_draft("case_000", synthetic_labels(8))
    project.save_draft("case_000", draft)  # autosave overwrites in place
    np.testing.assert_array_equal(project.load_draft("case_000"), draft)
    submit_slice(project, slice_index=0)  # strokes on other slices are still unsubmitted
    np.testing.assert_array_equal(project.load_draft("case_000"), draft)
    project.submit("case_000", draft, kind="manual", annotator="ann", seconds_active=60)
    assert project.load_draft("case_000") is None
    assert not (project.folder / "labels" / "case_000" / "draft.nii.gz").exists()


@pytest.mark.parametrize("labels, options, expected", [
    (np.zeros((6, 6), np.uint8), {"slice_index": 1}, r"case case_000 slice 1 labels: shape \(6, 6\)"),
    (np.zeros((6, 5), np.uint8), {}, r"case case_000 labels: shape \(6, 5\) does not match"),
    (np.full((6, 5), 0.5), {"slice_index": 1}, "holds non-integer values"),
    (np.full((6, 5), 3, np.uint8), {"slice_index": 1}, r"class id 3 is out of range;.*\(0..2\)"),
    (np.full((6, 5), -1), {"slice_index": 1}, "class id -1 is out of range"),
    (np.zeros((6, 5), np.uint8), {"slice_index": 4}, r"slice 4 is out of range \(0..3\)"),
    (np.zeros((6, 5), np.uint8), {"slice_index": 1, "class_id": 5}, "class id 5 is out of range"),
    (np.zeros((6, 5), np.uint8), {"slice_index": 1, "kind": "guess"}, "submit kind must be one of"),
    (np.zeros((6, 5), np.uint8), {"slice_index": 1, "seconds_active": -1}, "seconds_active"),
    (np.zeros((6, 5), np.uint8), {"slice_index": 1, "original": np.zeros((2, 2))}, "original: shape"),
])
def test_bad_submits_are_refused_and_write_nothing(project, labels, options, expected):
    options = {"kind": "manual", "annotator": "ann", "seconds_active": 1.0, **options}
    with pytest.raises(AlsegError, match=expected):
        project.submit("case_000", labels, **options)
    assert project.events() == [] and project.current_labels("case_000") is None
    assert not (project.folder / "labels").exists()


def test_unknown_case_is_named(project):
    with pytest.raises(AlsegError, match="no case named 'nope'"):
        project.current_labels("nope")


# --------------------------------------------------------------------------- records


def test_weak_annotations_rounds_checkpoints_and_scores(project):
    project.add_weak_annotation("case_000", 1, 1, 2, annotator="ann")
    project.add_weak_annotation("case_000", 1, 0, 3, annotator="ann")
    assert (project.weak_annotations("case_000")[1].first_slice,
            project.weak_annotations("case_000")[1].last_slice) == (0, 3)
    with pytest.raises(AlsegError, match=r"slices 2..9 must satisfy"):
        project.add_weak_annotation("case_000", 2, 2, 9, annotator="ann")

    items = [ScoredItem("case_000", 1, None, 0.2, {"entropy": 0.2}),
             ScoredItem("case_001", 2, None, 0.9, {"entropy": 0.9}),
             ScoredItem("case_002", None, 1, 0.5)]
    assert not project.has_scores("m1")
    project.store_scores("m1", items)
    project.store_scores("m1", [ScoredItem("case_000", 1, None, 0.95, {"entropy": 0.95})])
    ranked = project.latest_scores()
    assert [(s.case, s.score) for s in ranked] == [("case_000", 0.95), ("case_001", 0.9), ("case_002", 0.5)]
    assert ranked[0].terms == {"entropy": 0.95} and project.has_scores("m1")

    round_id = project.record_round("entropy", ranked[:2], model_version="m1")
    assert project.rounds()[0].strategy == "entropy"
    assert project.round_suggestions(round_id) == ranked[:2]

    checkpoint = project.models_dir / "m1.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    project.record_checkpoint("m1", checkpoint, round_id=round_id, metrics={"dice": 0.81})
    assert project.checkpoints()[0].path == checkpoint
    assert project.checkpoints()[0].metrics == {"dice": 0.81}
    with pytest.raises(AlsegError, match="model version 'm1' is already recorded"):
        project.record_checkpoint("m1", checkpoint)
    with pytest.raises(AlsegError, match="missing.pt: checkpoint file not found"):
        project.record_checkpoint("m2", project.models_dir / "missing.pt")


def test_reopen_resumes_records_and_labels_exactly(project):
    event_id, _ = submit_slice(project, seed=4, kind="corrected", original=synthetic_labels(3, SHAPE[1:]))
    project.add_weak_annotation("case_000", 2, 0, 1, annotator="ann")
    project.store_scores("m1", [ScoredItem("case_001", 0, None, 0.3)])
    project.save_draft("case_001", synthetic_labels(6))
    before = (project.events(), project.current_labels("case_000"), project.latest_scores())
    project.close()
    with Project.open(project.folder) as reopened:
        after = (reopened.events(), reopened.current_labels("case_000"), reopened.latest_scores())
        assert after[0] == before[0] and after[2] == before[2]
        np.testing.assert_array_equal(after[1].data, before[1].data)
        np.testing.assert_array_equal(after[1].labelled, before[1].labelled)
        assert reopened.weak_annotations("case_000")[2].last_slice == 1
        np.testing.assert_array_equal(reopened.load_draft("case_001"), synthetic_labels(6))
        np.testing.assert_array_equal(reopened.original_labels(event_id), synthetic_labels(3, SHAPE[1:]))


def test_a_label_file_changed_on_disk_is_detected(project):
    submit_slice(project)
    project.close()
    path = project.folder / "labels" / "case_000" / "v0001.nii.gz"
    save_volume(path, np.zeros(SHAPE, np.uint8), AFFINE, is_label=True)
    with Project.open(project.folder) as reopened:
        with pytest.raises(AlsegError, match=r"case case_000 label version 1 \(labels/case_000/v0001.nii.gz\): contents differ from the checksum"):
            reopened.current_labels("case_000")


# --------------------------------------------------------------------------- export


def test_export_keeps_the_source_affine_and_lists_every_event(tmp_path):
    las = np.array([[-1.0, 0, 0, 20.0], [0, 1.0, 0, -3.0], [0, 0, 2.0, 1.0], [0, 0, 0, 1]])
    source = make_source(tmp_path / "source", n_cases=2, affine=las)
    with Project.create(tmp_path / "project", source, validation_fraction=0) as project:
        volume = synthetic_labels(7)
        project.submit("case_000", volume, kind="manual", annotator="ann", seconds_active=30)
        submit_slice(project, case="case_000", slice_index=2, seed=8, class_id=2)
        project.reject_pseudo("case_001", annotator="ann")
        written = project.export(tmp_path / "export")
        expected = project.current_labels("case_000").data
    names = sorted(p.name for p in written)
    assert names == ["case_000_seg.nii.gz", "provenance.csv", "provenance.json", "rounds.csv", "scores.csv"]
    exported = nib.load(str(tmp_path / "export" / "case_000_seg.nii.gz"))
    source_image = nib.load(str(source / "case_000" / "case_000_t1c.nii.gz"))
    np.testing.assert_array_equal(exported.affine, source_image.affine)
    assert exported.shape == source_image.shape
    np.testing.assert_array_equal(load_volume(tmp_path / "export" / "case_000_seg.nii.gz").data, expected)
    # every version on disk overlays the source too
    version = nib.load(str(tmp_path / "project" / "labels" / "case_000" / "v0001.nii.gz"))
    np.testing.assert_array_equal(version.affine, source_image.affine)
    with open(tmp_path / "export" / "provenance.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["kind"], r["slice_index"], r["class_name"]) for r in rows] == [
        ("case_000", "manual", "", ""), ("case_000", "manual", "2", "edema"),
        ("case_001", "pseudo-rejected", "", "")]
    provenance = json.loads((tmp_path / "export" / "provenance.json").read_text())
    assert len(provenance["events"]) == 3
    assert [c["label_file"] for c in provenance["cases"]] == ["case_000_seg.nii.gz", None]


def test_export_writes_the_rounds_served_and_the_scores_with_a_column_per_term(project, tmp_path):
    project.store_scores("v0001", [ScoredItem("case_001", 2, None, 0.9, {"entropy": 0.9, "mc_top": 0.01}),
                                   ScoredItem("case_002", None, 1, 0.5, {"entropy": 0.5})])
    served = project.latest_scores("v0001")
    round_id = project.record_round("entropy", served, model_version="v0001")
    project.export(tmp_path / "export")
    with open(tmp_path / "export" / "rounds.csv", newline="") as handle:
        rounds = list(csv.DictReader(handle))
    assert [(r["round_id"], r["strategy"], r["model_version"], r["rank"], r["case"], r["slice_index"], r["entropy"])
            for r in rounds] == [(str(round_id), "entropy", "v0001", "0", "case_001", "2", "0.9"),
                                 (str(round_id), "entropy", "v0001", "1", "case_002", "", "0.5")]
    with open(tmp_path / "export" / "scores.csv", newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert [(s["model_version"], s["case"], s["class_name"], s["score"], s["mc_top"]) for s in scores] == [
        ("v0001", "case_001", "", "0.9", "0.01"), ("v0001", "case_002", "tumour", "0.5", "")]


def test_classes_can_be_renamed_and_recoloured_and_stay_so(tmp_path):
    folder = tmp_path / "project"
    with Project.create(folder, make_source(tmp_path / "source")) as project:
        updated = project.update_class(2, name="oedema", color=(10, 20, 30))
        assert updated.name == "oedema" and project.class_names[2] == "oedema"
        with pytest.raises(AlsegError, match="already used"):
            project.update_class(1, name="oedema")
        with pytest.raises(AlsegError, match="0-255"):
            project.update_class(1, color=(300, 0, 0))
        with pytest.raises(AlsegError, match="empty"):
            project.update_class(1, name="  ")
    with Project.open(folder) as reopened:
        assert reopened.classes[2].name == "oedema" and reopened.classes[2].color == (10, 20, 30)
