"""Evaluation sets (benchmarks/eval_sets.py): accepted as projects, classes present, cases vary."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_alseg.errors import AlsegError
from napari_alseg.nifti import load_volume
from napari_alseg.plan import left_right_axis
from napari_alseg.samples.templates import load_mni_tissue_maps
from napari_alseg.store import Project
from synthetic_cases import validation_cases

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import eval_sets  # noqa: E402  (benchmarks/ is not a package)

TINY_LESIONS = {"n_cases": 4, "size": 48}
SPARSE_SAGITTAL = {"slice_step_mm": 9.0}


@pytest.fixture(scope="module")
def wm_lesion_set(tmp_path_factory) -> Path:
    return eval_sets.write_eval_set("wm-lesions", tmp_path_factory.mktemp("eval"), seed=3,
                                    **TINY_LESIONS)


def _seg(set_dir: Path, case: str) -> np.ndarray:
    return load_volume(set_dir / case / f"{case}_seg.nii.gz", as_label=True).data


def test_eval_sets_constant():
    assert eval_sets.EVAL_SETS == ("sagittal-stack", "wm-lesions")


def test_unknown_set_name_lists_valid_names(tmp_path):
    with pytest.raises(AlsegError, match="sagittal-stack, wm-lesions"):
        eval_sets.write_eval_set("coronal-stack", tmp_path)


def test_sagittal_stack_is_a_slice_project_with_every_class(mricron_dir, tmp_path):
    folder = eval_sets.write_eval_set("sagittal-stack", tmp_path, **SPARSE_SAGITTAL)
    with Project.create(tmp_path / "project", folder) as project:
        assert project.granularity == "slice"
        assert [case.name for case in project.cases] == ["stack"]
        assert project.case("stack").channel_names == ("t1",)
        assert project.class_names == tuple(name for name, _ in eval_sets.SAGITTAL_CLASSES.values())
        assert validation_cases(project) == [] and project.validation_items()
    labels = load_volume(folder / "stack" / "stack_seg.nii.gz", as_label=True)
    image = load_volume(folder / "stack" / "stack_t1.nii.gz", as_label=False)
    assert image.shape == labels.shape and 12 <= labels.shape[0] <= 18
    assert labels.spacing == pytest.approx((9.0, eval_sets.PIXEL_MM, eval_sets.PIXEL_MM))
    assert set(np.unique(labels.data)) == set(eval_sets.SAGITTAL_CLASSES)
    # Rows run inferior -> superior, columns posterior -> anterior.
    _, cerebellum_rows, _ = np.nonzero(labels.data == 8)
    assert cerebellum_rows.mean() < labels.shape[1] / 2
    frontal_columns, occipital_columns = (np.nonzero(labels.data == class_id)[2]
                                          for class_id in (1, 4))
    assert frontal_columns.mean() > occipital_columns.mean()
    # The affine says so too: slices along world x, so no in-plane axis is left-right.
    assert left_right_axis(labels.affine) == 0


def test_wm_lesions_is_a_case_project_with_channels_in_order(wm_lesion_set, tmp_path):
    with Project.create(tmp_path / "project", wm_lesion_set) as project:
        assert project.granularity == "case"
        assert [case.name for case in project.cases] == [f"case_{i:03d}" for i in range(4)]
        assert project.case("case_000").channel_names == eval_sets.LESION_CHANNELS
        assert project.class_names == tuple(name for name, _ in eval_sets.LESION_CLASSES.values())
        assert validation_cases(project)


def test_every_wm_lesion_case_holds_lesions_and_ventricles(wm_lesion_set):
    for case in (f"case_{i:03d}" for i in range(4)):
        assert set(np.unique(_seg(wm_lesion_set, case))) == set(eval_sets.LESION_CLASSES)


def test_wm_lesion_cases_differ_in_lesion_count_and_size(wm_lesion_set):
    cases = json.loads((wm_lesion_set / "dataset.json").read_text())["cases"]
    counts = [case["n_lesions"] for case in cases]
    assert all(3 <= count <= 15 for count in counts) and len(set(counts)) > 1
    voxels = [int((_seg(wm_lesion_set, case["id"]) == eval_sets.LESION).sum()) for case in cases]
    assert [case["lesion_voxels"] for case in cases] == voxels and len(set(voxels)) == len(voxels)
    radii = [radius for case in cases for radius in case["radii_mm"]]
    assert 2.0 <= min(radii) and max(radii) <= 12.0


def test_lesions_are_brighter_than_their_surroundings_on_flair(wm_lesion_set):
    for case in (f"case_{i:03d}" for i in range(4)):
        flair = load_volume(wm_lesion_set / case / f"{case}_flair.nii.gz", as_label=False).data
        lesion = _seg(wm_lesion_set, case) == eval_sets.LESION
        shell = ndimage.binary_dilation(lesion) & ~lesion & (flair > 0)
        assert flair[lesion].mean() > 1.2 * flair[shell].mean()


def test_existing_set_is_returned_without_regenerating(wm_lesion_set):
    written = (wm_lesion_set / "dataset.json").stat().st_mtime_ns
    assert eval_sets.write_eval_set("wm-lesions", wm_lesion_set.parent) == wm_lesion_set
    assert (wm_lesion_set / "dataset.json").stat().st_mtime_ns == written


def test_same_seed_gives_identical_cases_and_another_seed_differs():
    maps = load_mni_tissue_maps()
    anatomy = eval_sets.lesion_anatomy(maps, 32)
    first, again, other = (eval_sets.generate_lesion_case(maps, anatomy, seed, 0)[0]["flair"]
                           for seed in (5, 5, 6))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
