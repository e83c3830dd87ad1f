"""Issue 23 item 7: a ground-truth file marked as labels only by its NIfTI header intent
(``intent label``, no ``_seg`` in its name) is taken as the case's labels, never as a channel.
"""

import json

import numpy as np
import pytest

from napari_alseg.cli import main
from napari_alseg.nifti import is_label_file, save_volume
from napari_alseg.store import Project, discover_cases
from test_store import AFFINE, CLASSES, SHAPE, make_source, synthetic_labels


def _intent_only_truth(path):
    """Integer labels whose file name carries no label token: only the header says labels."""
    return save_volume(path, synthetic_labels(1, SHAPE), AFFINE, is_label=True)


def test_the_header_intent_alone_marks_a_label_file(tmp_path):
    truth = _intent_only_truth(tmp_path / "case_000_manual.nii.gz")
    image = save_volume(tmp_path / "case_000_t2.nii.gz", np.ones(SHAPE, np.float32), AFFINE)
    named = save_volume(tmp_path / "case_000_seg.nii.gz", synthetic_labels(1, SHAPE), AFFINE)  # no intent
    assert is_label_file(truth) and is_label_file(named) and not is_label_file(image)
    broken = tmp_path / "case_000_t1.nii.gz"
    broken.write_bytes(b"\x1f\x8b not gzip")
    assert not is_label_file(broken)  # unreadable: decided later, where it is read and reported


def test_case_folders_take_an_intent_label_as_ground_truth(tmp_path):
    source = make_source(tmp_path / "source", n_cases=2, truth=False)
    for case in ("case_000", "case_001"):
        _intent_only_truth(source / case / f"{case}_manual.nii.gz")
    cases = discover_cases(source, ["t2", "t1c"])
    assert [[name for name, _path in c.channels] for c in cases] == [["t2", "t1c"]] * 2
    assert [c.ground_truth.name for c in cases] == ["case_000_manual.nii.gz", "case_001_manual.nii.gz"]


@pytest.mark.parametrize("truth_name", ["{case}_manual.nii.gz", "{case}.nii.gz"])
def test_flat_files_take_an_intent_label_as_ground_truth(tmp_path, truth_name):
    source = make_source(tmp_path / "source", n_cases=2, truth=False, flat=True)
    for case in ("case_000", "case_001"):
        _intent_only_truth(source / truth_name.format(case=case))
    cases = discover_cases(source, ["t2", "t1c"])
    assert [c.name for c in cases] == ["case_000", "case_001"]
    assert [[name for name, _path in c.channels] for c in cases] == [["t2", "t1c"]] * 2
    assert [c.ground_truth.name for c in cases] == [truth_name.format(case=c) for c in ("case_000", "case_001")]


def test_alseg_create_imports_an_intent_label_as_labels_not_a_channel(tmp_path, capsys):
    source = make_source(tmp_path / "source", n_cases=2, truth=False)
    dataset = json.loads((source / "dataset.json").read_text())
    del dataset["channels"]  # nothing to catch a third channel by
    (source / "dataset.json").write_text(json.dumps(dataset))
    for case in ("case_000", "case_001"):
        _intent_only_truth(source / case / f"{case}_expert.nii.gz")
    assert main(["create", str(tmp_path / "project"), "--from", str(source)]) == 0
    with Project.open(tmp_path / "project") as project:
        assert [c.channel_names for c in project.cases] == [("t1c", "t2")] * 2
        assert [e.kind for e in project.events()] == ["imported", "imported"]
        assert np.array_equal(project.current_labels("case_000").data, synthetic_labels(1, SHAPE))
        assert len(project.classes) == len(CLASSES)
