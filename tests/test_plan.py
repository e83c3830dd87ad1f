"""The dataset fingerprint and the training plan made from it (pure numbers, no torch)."""

import json
import math

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.plan import (ANISOTROPY_LIMIT, BUDGETS, CPU, CUDA, TrainingPlan, fingerprint,
                               item_left_right_axis, lateralised, left_right_axis, make_plan, working_spacing)


def plan_for(shape, spacing, *, n_items=3, channels=1, device=CPU):
    return make_plan(fingerprint([shape] * n_items, [spacing] * n_items, n_channels=channels, n_classes=3), device)


def test_fingerprint_takes_medians_per_axis():
    print_ = fingerprint([(10, 20, 30), (12, 22, 32), (50, 60, 70)], [(1, 1, 1), (2, 1, 1), (3, 1, 1)],
                         n_channels=2, n_classes=4)
    assert print_.median_shape == (12, 22, 32) and print_.median_spacing_mm == (2.0, 1.0, 1.0)
    assert (print_.spatial_dims, print_.n_channels, print_.n_classes, print_.n_items) == (3, 2, 4, 3)


@pytest.mark.parametrize("shapes, spacings", [([], []), ([(4, 4)], [(1, 1), (1, 1)]), ([(4, 4)], [(0, 1)]),
                                              ([(4,)], [(1,)])])
def test_fingerprint_refuses_bad_rows(shapes, spacings):
    with pytest.raises(AlsegError):
        fingerprint(shapes, spacings, n_channels=1, n_classes=2)


def test_small_isotropic_volume_stays_native_and_fits_one_patch():
    plan = plan_for((40, 48, 44), (2.0, 2.0, 2.0))
    assert plan.zoom == (1.0, 1.0, 1.0) and plan.working_spacing_mm == (2.0, 2.0, 2.0)
    assert plan.patch_size == (40, 48, 44)  # the whole case: no axis is cropped


def test_large_volume_is_resampled_under_the_voxel_budget():
    plan = plan_for((240, 240, 155), (1.0, 1.0, 1.0))
    budget = BUDGETS[(CPU, 3)]
    working = [size * zoom for size, zoom in zip((240, 240, 155), plan.zoom)]
    assert math.prod(working) <= budget.max_working_voxels * 1.01
    assert all(zoom < 1 for zoom in plan.zoom)
    assert all(patch * zoom <= budget.max_patch + 1 for patch, zoom in zip(plan.patch_size, plan.zoom))


def test_anisotropic_volume_becomes_more_isotropic():
    spacing = working_spacing((30, 256, 256), (6.0, 0.5, 0.5), max_voxels=10**9)
    assert max(spacing) / min(spacing) <= ANISOTROPY_LIMIT + 1e-9
    assert spacing[0] == 6.0  # never finer than native


def test_multichannel_2d_plan_uses_the_2d_budget_and_cuda_sizes_up():
    cpu = plan_for((184, 176), (1.0, 1.0), channels=3)
    gpu = plan_for((184, 176), (1.0, 1.0), channels=3, device=CUDA)
    assert cpu.spatial_dims == 2 and len(cpu.patch_size) == 2
    assert cpu.batch_size == BUDGETS[(CPU, 2)].batch and gpu.batch_size == BUDGETS[(CUDA, 2)].batch
    assert gpu.seconds < cpu.seconds


def test_plan_round_trips_through_json_and_takes_overrides():
    plan = plan_for((64, 64, 64), (1.0, 1.0, 1.0))
    assert TrainingPlan.from_json(plan.to_json()) == plan
    changed = plan.with_overrides(seconds=30.0, batch_size=None)
    assert changed.seconds == 30.0 and changed.batch_size == plan.batch_size
    with pytest.raises(AlsegError, match="unknown setting"):
        plan.with_overrides(learning_speed=3)
    with pytest.raises(AlsegError):
        plan.with_overrides(patch_size=(32, 32))
    with pytest.raises(AlsegError):
        TrainingPlan.from_json('{"spatial_dims": 2}')


def test_plan_needs_a_known_device():
    with pytest.raises(AlsegError, match="device"):
        plan_for((32, 32), (1.0, 1.0), device="tpu")


def oblique(affine_columns):
    """A 4x4 affine whose voxel axes i, j, k point along ``affine_columns`` (3 vectors, mm)."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(affine_columns, float).T
    return affine


def test_left_right_axis_comes_from_the_affine_in_data_order():
    # data arrays are (k, j, i): the i axis, along world x, is data axis 2
    assert left_right_axis(np.diag([2.0, 2.0, 2.0, 1.0])) == 2
    # i along y, j along x (a transposed volume): data axis 1
    assert left_right_axis(oblique([(0, 1, 0), (1, 0, 0), (0, 0, 1)])) == 1
    # no voxel axis within ~35 degrees of left-right: unknown
    assert left_right_axis(oblique([(0.7, 0.7, 0), (-0.7, 0.7, 0), (0, 0, 1)])) is None


def test_a_slice_items_left_right_axis_leaves_out_the_slice_axis():
    coronal = np.diag([1.0, 1.0, 5.0, 1.0])  # i along x: data axis 2, the slice's axis 1
    assert item_left_right_axis(coronal, 3) == 2 and item_left_right_axis(coronal, 2) == 1
    sagittal = oblique([(0, 1, 0), (0, 0, 1), (1, 0, 0)])  # k (the slices) along x
    assert item_left_right_axis(sagittal, 3) == 0 and item_left_right_axis(sagittal, 2) is None


@pytest.mark.parametrize("names, lateral", [
    (["background", "cortex", "white matter"], False),
    (["background", "Left-Hippocampus", "Right-Hippocampus"], True),
    (["background", "hippocampus_L", "hippocampus_R"], True),
    (["background", "lh_cortex"], True),
    (["background", "LeftAmygdala"], True),
    (["background", "bright lesion", "rim"], False),  # "right" inside a word is not a side
])
def test_class_names_say_whether_labels_are_lateralised(names, lateral):
    assert lateralised(names) is lateral


def test_the_plan_mirrors_left_right_unless_the_labels_name_sides():
    shapes, spacings = [(40, 48, 44)] * 3, [(2.0, 2.0, 2.0)] * 3
    plain = make_plan(fingerprint(shapes, spacings, n_channels=1, n_classes=3, left_right_axis=2,
                                  class_names=["background", "tumour", "oedema"]))
    assert plain.mirror_axes == (2,)
    sided = make_plan(fingerprint(shapes, spacings, n_channels=1, n_classes=3, left_right_axis=2,
                                  class_names=["background", "left putamen", "right putamen"]))
    assert sided.mirror_axes == ()
    unknown = make_plan(fingerprint(shapes, spacings, n_channels=1, n_classes=3))
    assert unknown.mirror_axes == ()
    assert "mirrored" in " ".join(plain.describe()) and "not mirrored" in " ".join(sided.describe())


def test_a_2d_plan_mirrors_the_in_plane_left_right_axis_only():
    shapes, spacings = [(184, 176)] * 3, [(1.0, 1.0)] * 3
    coronal = make_plan(fingerprint(shapes, spacings, n_channels=1, n_classes=3, left_right_axis=1))
    assert coronal.mirror_axes == (1,)
    with pytest.raises(AlsegError):
        fingerprint(shapes, spacings, n_channels=1, n_classes=3, left_right_axis=2)


def test_a_plan_stored_before_mirror_axes_existed_still_loads():
    plan = plan_for((64, 64, 64), (1.0, 1.0, 1.0))
    values = json.loads(plan.to_json())
    del values["mirror_axes"]
    assert TrainingPlan.from_json(json.dumps(values)).mirror_axes == ()
