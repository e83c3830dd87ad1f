"""The Medical Segmentation Decathlon / BraTS / nnU-Net layout, on small synthetic folders."""

import json

import nibabel as nib
import numpy as np
import pytest

from napari_alseg.cli import main
from napari_alseg.errors import AlsegError
from napari_alseg.store import Project

SPATIAL = (6, 5, 3)  # (i, j, k) as stored in the file; no axis of 4, so channels are unambiguous
MODALITIES = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
AFFINE = np.diag([1.0, 1.0, 1.5, 1.0])


def channels_of(case_index):
    """Four distinct (i, j, k) channel arrays of one case."""
    rng = np.random.default_rng(case_index)
    return [rng.random(SPATIAL).astype(np.float32) + 10 * c for c in range(len(MODALITIES))]


def label_of(case_index):
    return np.random.default_rng(100 + case_index).integers(0, 4, SPATIAL).astype(np.uint8)


def make_msd(root, *, train=("BRATS_001", "BRATS_002"), test=("BRATS_101",), channels_first=False,
             split=False, key="modality"):
    """``imagesTr/``, ``labelsTr/``, ``imagesTs/`` and ``dataset.json`` like Task01_BrainTumour."""
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(train + test):
        folder = root / ("imagesTr" if name in train else "imagesTs")
        channels = channels_of(index)
        if split:  # nnU-Net: one 3D file per channel, <case>_0000.nii.gz ...
            for c, channel in enumerate(channels):
                nib.save(nib.Nifti1Image(channel, AFFINE), str(folder / f"{name}_{c:04d}.nii.gz"))
        else:
            stacked = np.stack(channels, axis=0 if channels_first else -1)
            nib.save(nib.Nifti1Image(stacked, AFFINE), str(folder / f"{name}.nii.gz"))
        if name in train:
            nib.save(nib.Nifti1Image(label_of(index), AFFINE), str(root / "labelsTr" / f"{name}.nii.gz"))
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork, shipped in MSD tars")
    labels = LABELS if key == "modality" else {name: int(i) for i, name in LABELS.items()}
    (root / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "tensorImageSize": "4D", key: MODALITIES, "labels": labels,
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in train],
        "test": [f"./imagesTs/{n}.nii.gz" for n in test]}))
    return root


@pytest.mark.parametrize("layout", [
    {},  # MSD: 4D, channels last
    {"channels_first": True},
    {"split": True, "key": "channel_names"},  # nnU-Net v2
])
def test_an_msd_folder_becomes_a_project_with_named_channels_and_classes(tmp_path, layout):
    source = make_msd(tmp_path / "Task01_BrainTumour", **layout)
    with Project.create(tmp_path / "project", source, validation_fraction=0.0) as project:
        assert [case.name for case in project.cases] == ["BRATS_001", "BRATS_002", "BRATS_101"]
        assert project.cases[0].channel_names == ("FLAIR", "T1w", "t1gd", "T2w")
        assert project.class_names == ("background", "edema", "non-enhancing tumor", "enhancing tumour")
        assert project.case("BRATS_101").ground_truth_path is None  # imagesTs: the unlabelled pool
        assert project.case("BRATS_001").shape == SPATIAL[::-1]
        for index, name in enumerate(["BRATS_001", "BRATS_002", "BRATS_101"]):
            volumes = project.load_channels(name)
            for volume, expected in zip(volumes, channels_of(index)):
                np.testing.assert_array_equal(volume.data, expected.transpose(2, 1, 0))
        np.testing.assert_array_equal(project.ground_truth("BRATS_002"), label_of(1).transpose(2, 1, 0))
        assert project.case("BRATS_001").spacing == (1.5, 1.0, 1.0)
    with Project.open(tmp_path / "project") as reopened:  # the channel indices are stored
        assert reopened.load_channels("BRATS_002")[3].data.mean() > 30


def test_labels_written_for_an_msd_case_overlay_its_source(tmp_path):
    source = make_msd(tmp_path / "msd")
    with Project.create(tmp_path / "project", source, validation_fraction=0.0) as project:
        labels = np.zeros(SPATIAL[::-1], np.uint8)
        labels[1, 2, 3] = 2
        project.submit("BRATS_101", labels, kind="manual", annotator="a", seconds_active=1.0)
        written = project.export(tmp_path / "out")
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["cases"][0]["channel_indices"] == {"FLAIR": 0, "T1w": 1, "t1gd": 2, "T2w": 3}
    exported = nib.load(str(next(p for p in written if p.name == "BRATS_101_seg.nii.gz")))
    np.testing.assert_allclose(exported.affine, AFFINE)
    assert exported.get_fdata()[3, 2, 1] == 2


def test_status_lists_the_modality_names_and_classes(tmp_path, capsys):
    source = make_msd(tmp_path / "msd")
    assert main(["create", str(tmp_path / "project"), "--from", str(source)]) == 0
    assert "channels: FLAIR, T1w, t1gd, T2w" in capsys.readouterr().out
    assert main(["status", str(tmp_path / "project")]) == 0
    out = capsys.readouterr().out
    assert "channels:     FLAIR, T1w, t1gd, T2w" in out
    assert "classes:      0 background, 1 edema, 2 non-enhancing tumor, 3 enhancing tumour" in out


def test_a_case_with_the_wrong_channel_count_is_named_or_skipped(tmp_path, capsys):
    source = make_msd(tmp_path / "msd")
    nib.save(nib.Nifti1Image(np.zeros((*SPATIAL, 3), np.float32), AFFINE),
             str(source / "imagesTr" / "BRATS_002.nii.gz"))
    assert main(["create", str(tmp_path / "project"), "--from", str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "BRATS_002: BRATS_002.nii.gz: shape (6, 5, 3, 3) has no axis of 4 channels" in err
    assert not (tmp_path / "project").exists()
    with Project.create(tmp_path / "project", source, skip_bad_cases=True) as project:
        assert [case.name for case in project.cases] == ["BRATS_001", "BRATS_101"]
        assert [name for name, _ in project.skipped_cases] == ["BRATS_002"]


def test_a_label_without_an_image_and_a_missing_channel_list_are_explained(tmp_path):
    source = make_msd(tmp_path / "msd")
    nib.save(nib.Nifti1Image(label_of(0), AFFINE), str(source / "labelsTr" / "BRATS_009.nii.gz"))
    with pytest.raises(AlsegError, match="BRATS_009: labelsTr/BRATS_009.nii.gz has no image in imagesTr/"):
        Project.create(tmp_path / "project", source)
    (source / "dataset.json").write_text(json.dumps({"name": "BRATS"}))
    with pytest.raises(AlsegError, match="needs a dataset.json naming its channels"):
        Project.create(tmp_path / "project", source)


def test_the_napari_reader_opens_a_4d_msd_file_as_one_layer_per_named_channel(tmp_path):
    from napari_alseg._reader import read_nifti

    source = make_msd(tmp_path / "msd")
    layers = read_nifti(str(source / "imagesTr" / "BRATS_002.nii.gz"))
    assert [meta["name"] for _, meta, _ in layers] == [f"BRATS_002 · {name}" for name in MODALITIES.values()]
    assert [kind for _, _, kind in layers] == ["image"] * 4
    assert [meta["visible"] for _, meta, _ in layers] == [True, False, False, False]
    np.testing.assert_array_equal(layers[2][0], channels_of(1)[2].transpose(2, 1, 0))
    nib.save(nib.Nifti1Image(np.zeros((*SPATIAL, 2), np.float32), AFFINE), str(tmp_path / "two.nii.gz"))
    assert [meta["name"] for _, meta, _ in read_nifti(str(tmp_path / "two.nii.gz"))] == ["two · c0", "two · c1"]


def test_a_broken_link_in_a_case_folder_is_named(tmp_path):
    from test_store import make_source

    source = make_source(tmp_path / "source", n_cases=2, channels=("t1",))
    channel = source / "case_001" / "case_001_t1.nii.gz"
    channel.unlink()
    channel.symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(AlsegError, match="case_001: case_001_t1.nii.gz is a broken link"):
        Project.create(tmp_path / "project", source)
