"""Sample sets: layout, exact labels, determinism, caching, and one-line errors for bad input."""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.nifti import load_volume
from napari_alseg.plan import left_right_axis
from napari_alseg.samples import (
    SAMPLE_SETS,
    generate_sample,
    load_class_names,
    sample_dir,
)
from napari_alseg.samples import brain_stack, deform, tumour_anatomy, tumour_cases
from napari_alseg.samples.templates import load_colin_templates, load_mni_tissue_maps

TINY = {"n_cases": 2, "size": 32}
CHANNELS = ("t1c", "t2", "flair")


@pytest.fixture(scope="module")
def tiny_tumour_set(tmp_path_factory) -> Path:
    messages: list[str] = []
    folder = generate_sample("tumour-cases", tmp_path_factory.mktemp("samples"), seed=7,
                             progress=messages.append, **TINY)
    assert any("case 2/2" in message for message in messages)
    return folder


def _case_arrays(set_dir: Path, case_id: str) -> dict[str, np.ndarray]:
    names = (*CHANNELS, "seg")
    folder = set_dir / case_id
    return {name: load_volume(folder / f"{case_id}_{name}.nii.gz").data for name in names}


def test_tumour_cases_channels_and_labels_share_geometry(tiny_tumour_set):
    for case_id in ("case_000", "case_001"):
        volumes = [load_volume(tiny_tumour_set / case_id / f"{case_id}_{name}.nii.gz")
                   for name in (*CHANNELS, "seg")]
        assert volumes[-1].is_label and volumes[-1].data.dtype == np.uint8
        for volume in volumes[:-1]:
            assert not volume.is_label
            assert volume.shape == volumes[-1].shape
            np.testing.assert_allclose(volume.affine, volumes[-1].affine)
            assert volume.data[volumes[-1].data > 0].mean() > 0


def test_tumour_cases_labels_hold_exactly_the_four_classes(tiny_tumour_set):
    for case_id in ("case_000", "case_001"):
        seg = _case_arrays(tiny_tumour_set, case_id)["seg"]
        assert set(np.unique(seg)) == {0, 1, 2, 3}


def test_tumour_cases_metadata(tiny_tumour_set):
    info = json.loads((tiny_tumour_set / "dataset.json").read_text())
    assert info["name"] == "tumour-cases" and info["granularity"] == "case" and info["seed"] == 7
    assert info["channels"] == list(CHANNELS)
    assert load_class_names(tiny_tumour_set) == {
        0: "background", 1: "necrotic core", 2: "oedema", 3: "enhancing rim"}
    assert not [path for path in tiny_tumour_set.parent.iterdir() if path.name.startswith(".")]


def test_lesions_fall_in_both_hemispheres(tiny_tumour_set):
    cases = json.loads((tiny_tumour_set / "dataset.json").read_text())["cases"]
    assert cases[0]["centre_mm"][0] < 0 < cases[1]["centre_mm"][0]


def test_same_seed_gives_identical_arrays_and_other_seed_differs(tiny_tumour_set, tmp_path):
    again = generate_sample("tumour-cases", tmp_path / "again", seed=7, **TINY)
    first, second = _case_arrays(tiny_tumour_set, "case_001"), _case_arrays(again, "case_001")
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])

    maps = load_mni_tissue_maps()
    grid = tumour_anatomy.case_grid(maps, TINY["size"])
    alone = tumour_cases.generate_case(maps, grid, 7, 1)
    np.testing.assert_array_equal(alone.labels.transpose(2, 1, 0), first["seg"])
    other = tumour_cases.generate_case(maps, grid, 8, 1)
    assert not np.array_equal(other.labels, alone.labels)


def test_unknown_set_name_lists_valid_names(tmp_path):
    with pytest.raises(AlsegError, match="brain-stack, tumour-cases"):
        generate_sample("brains", tmp_path)
    with pytest.raises(AlsegError, match="brain-stack, tumour-cases"):
        sample_dir("brains")


@pytest.mark.parametrize("options, message", [
    ({"n_case": 2}, "unknown option"),
    ({"n_cases": 0}, "n_cases"),
    ({"size": 4}, "size"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(AlsegError, match=message) as caught:
        generate_sample("tumour-cases", tmp_path, **options)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "tumour-cases").exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "data.txt"
    a_file.write_text("not a folder")
    with pytest.raises(AlsegError, match="is a file"):
        generate_sample("tumour-cases", a_file, **TINY)
    with pytest.raises(AlsegError, match="cannot create"):
        generate_sample("tumour-cases", a_file / "below", **TINY)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_out_dir_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(AlsegError, match="not writable"):
        generate_sample("tumour-cases", locked, **TINY)


def _write_template_folder(folder: Path, t1: np.ndarray, aal: np.ndarray) -> Path:
    folder.mkdir()
    nib.save(nib.Nifti1Image(t1, np.eye(4)), str(folder / "ch2bet.nii.gz"))
    nib.save(nib.Nifti1Image(aal, np.eye(4)), str(folder / "aal.nii.gz"))
    (folder / "aal.nii.txt").write_text("1 Precentral_L 2001\n")
    return folder


def test_missing_mricron_templates_name_the_package(tmp_path):
    with pytest.raises(AlsegError, match="apt-get install -y mricron-data"):
        generate_sample("brain-stack", tmp_path / "out", mricron_dir=tmp_path)


def test_templates_on_different_grids_are_refused(tmp_path):
    folder = _write_template_folder(tmp_path / "templates", np.ones((6, 6, 6), np.float32),
                                    np.ones((6, 6, 7), np.uint8))
    with pytest.raises(AlsegError, match="aal.nii.gz: not on the same voxel grid"):
        load_colin_templates(folder)


def test_template_with_nans_is_refused(tmp_path):
    t1 = np.ones((6, 6, 6), np.float32)
    t1[2, 2, 2] = np.nan
    folder = _write_template_folder(tmp_path / "templates", t1, np.ones((6, 6, 6), np.uint8))
    with pytest.raises(AlsegError, match="ch2bet.nii.gz: template holds 1 NaN"):
        load_colin_templates(folder)


def test_brain_stack_slices(mricron_dir, tmp_path):
    folder = generate_sample("brain-stack", tmp_path, mricron_dir=mricron_dir)
    image = load_volume(folder / "stack" / "stack_t1.nii.gz")
    labels = load_volume(folder / "stack" / "stack_seg.nii.gz")
    assert 34 <= labels.shape[0] <= 40
    assert image.shape == labels.shape
    assert image.spacing == labels.spacing == (5.0, 1.0, 1.0)
    assert set(np.unique(labels.data)) == set(range(11))
    assert len(load_class_names(folder)) == 11
    info = json.loads((folder / "dataset.json").read_text())
    assert info["granularity"] == "slice" and len(info["slice_y_mm"]) == labels.shape[0]
    # Rows run inferior -> superior: the cerebellum sits in the lower half of its slices.
    rows_with_cerebellum = np.nonzero((labels.data == 10).any(axis=(0, 2)))[0]
    assert rows_with_cerebellum.mean() < labels.shape[1] / 2
    # The affine says so too: columns along world x (left-right), rows z, slices y.
    assert left_right_axis(labels.affine) == 2
    np.testing.assert_allclose(labels.affine[:3, :3], [[1, 0, 0], [0, 0, 5], [0, 1, 0]])


def test_slice_deformation_does_not_fold():
    rng = np.random.default_rng(0)
    coordinates = brain_stack.slice_deformation(rng, (120, 110))
    assert deform.jacobian_determinant(coordinates).min() > 0


def test_sample_dir_generates_once_and_replaces_incomplete_copies(mricron_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("ALSEG_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ALSEG_MRICRON_DIR", str(mricron_dir))
    stale = tmp_path / "cache" / "brain-stack"
    stale.mkdir(parents=True)
    (stale / "leftover.txt").write_text("half-written")

    folder = sample_dir("brain-stack")
    assert folder == stale and not (folder / "leftover.txt").exists()
    written = (folder / "dataset.json").stat().st_mtime_ns
    assert sample_dir("brain-stack") == folder
    assert (folder / "dataset.json").stat().st_mtime_ns == written
    assert [path.name for path in (tmp_path / "cache").iterdir()] == ["brain-stack"]


def test_sample_sets_constant():
    assert SAMPLE_SETS == ("brain-stack", "tumour-cases")


# ----------------------------------------------------------------- benchmark pools

GRADED = {"n_cases": 6, "size": 40, "variety": "graded"}


@pytest.fixture(scope="module")
def graded_set(tmp_path_factory) -> Path:
    return generate_sample("tumour-cases", tmp_path_factory.mktemp("graded"), seed=7, **GRADED)


def test_graded_cases_vary_in_lesion_count_size_contrast_and_noise(graded_set):
    cases = json.loads((graded_set / "dataset.json").read_text())["cases"]
    assert len(cases) == 6
    counts = [case["n_lesions"] for case in cases]
    assert set(counts) <= {1, 2, 3} and len(set(counts)) > 1
    assert len({case["lesion_voxels"] for case in cases}) == 6
    assert max(case["lesion_voxels"] for case in cases) > 2 * min(case["lesion_voxels"] for case in cases)
    for name in ("lesion_contrast", "noise_sd", "bias_sd"):
        values = [case[name] for case in cases]
        assert max(values) > 1.5 * min(values), name
    difficulty = [case["difficulty"] for case in cases]
    assert min(difficulty) < 0.25 and max(difficulty) > 0.75
    assert {case["brain"] for case in cases} == {"mni152", "colin27"}
    assert len({lesion["site"] for case in cases for lesion in case["lesions"]}) > 1


def test_graded_cases_measured_contrast_falls_with_difficulty(graded_set):
    cases = json.loads((graded_set / "dataset.json").read_text())["cases"]
    easiest, hardest = (min(cases, key=lambda c: c["difficulty"]), max(cases, key=lambda c: c["difficulty"]))

    def oedema_contrast(case):
        arrays = _case_arrays(graded_set, case["id"])
        healthy = (arrays["flair"] > 0) & (arrays["seg"] == 0)
        lesion, tissue = arrays["flair"][arrays["seg"] == 2].mean(), arrays["flair"][healthy].mean()
        return (lesion - tissue) / tissue

    assert oedema_contrast(easiest) > 1.3 * oedema_contrast(hardest) > 0


def test_graded_cases_hold_every_class_and_the_lesion_count_matches_the_labels(graded_set):
    from scipy import ndimage

    for case in json.loads((graded_set / "dataset.json").read_text())["cases"]:
        seg = _case_arrays(graded_set, case["id"])["seg"]
        assert set(np.unique(seg)) == {0, 1, 2, 3}
        _, n_tumours = ndimage.label(np.isin(seg, (1, 3)))
        assert n_tumours >= case["n_lesions"]  # lesions lie apart; a coarse grid may split one


def test_graded_case_depends_only_on_seed_and_index(graded_set):
    maps = load_mni_tissue_maps()
    colin = tumour_cases.colin_tissue_maps(load_colin_templates())
    grid = tumour_anatomy.case_grid([maps, colin], GRADED["size"])
    brains = [tumour_anatomy.base_brain(name, m, grid) for name, m in (("mni152", maps), ("colin27", colin))]
    alone = tumour_cases.generate_graded_case(brains, grid, 7, 3)
    np.testing.assert_array_equal(alone.labels.transpose(2, 1, 0), _case_arrays(graded_set, "case_003")["seg"])


def test_default_sample_stays_single_lesion(tiny_tumour_set):
    info = json.loads((tiny_tumour_set / "dataset.json").read_text())
    assert "variety" not in info["options"] and "n_lesions" not in info["cases"][0]


def test_benchmark_set_names_use_their_presets(tmp_path, monkeypatch):
    from napari_alseg.samples import BENCHMARK_SETS

    assert set(BENCHMARK_SETS) == {"brain-stack-72", "tumour-cases-60"}
    with pytest.raises(AlsegError, match="tumour-cases-60"):
        generate_sample("tumour-cases-6", tmp_path)
    folder = generate_sample("tumour-cases-60", tmp_path, n_cases=2, size=24)
    info = json.loads((folder / "dataset.json").read_text())
    assert folder.name == info["name"] == "tumour-cases-60" and info["seed"] == 2009
    assert info["options"] == {"n_cases": "2", "variety": "graded", "size": "24"}
    assert [case["id"] for case in info["cases"]] == ["case_000", "case_001"]


def test_bad_graded_options_are_one_line_errors(tmp_path):
    for options, message in (({"variety": "hard"}, "variety"), ({"brains": "colin27"}, "brains"),
                             ({"variety": "graded", "brains": "mni152+bert"}, "brains")):
        with pytest.raises(AlsegError, match=message) as caught:
            generate_sample("tumour-cases", tmp_path, n_cases=1, size=24, **options)
        assert "\n" not in str(caught.value)


def test_brain_stack_72_has_at_least_60_exact_slices(mricron_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ALSEG_MRICRON_DIR", str(mricron_dir))
    folder = generate_sample("brain-stack-72", tmp_path)
    labels = load_volume(folder / "stack" / "stack_seg.nii.gz")
    assert labels.shape[0] >= 60 and labels.spacing[0] == 2.5
    y_mm = json.loads((folder / "dataset.json").read_text())["slice_y_mm"]
    assert len(y_mm) == labels.shape[0] and set(np.diff(y_mm)) == {2.0, 3.0}
    assert set(np.unique(labels.data)) == set(range(11))
