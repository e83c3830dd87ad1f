"""Tiny synthetic NIfTI cases for session and simulation tests: bright squares in a rim."""

import json

import numpy as np

from napari_alseg.nifti import save_volume

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def blob_case(seed, shape, *, drift=False):
    """A bright square (class 1) inside a rim (class 2); with ``drift`` it moves per slice."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    k, j, i = shape
    for n in range(k) if drift else [slice(None)]:
        cy, cx = rng.integers(j // 3, 2 * j // 3), rng.integers(i // 3, 2 * i // 3)
        labels[n, cy - 6:cy + 6, cx - 6:cx + 6] = 2
        labels[n, cy - 3:cy + 3, cx - 3:cx + 3] = 1
    image = labels.astype(np.float32) * 2 + rng.normal(0, 0.3, shape).astype(np.float32) + 1
    return image, labels


def make_source(root, *, granularity, n_cases, shape, classes, drift=False):
    """``<root>/case_NNN/case_NNN_{t1,seg}.nii.gz`` + classes.json + dataset.json."""
    for index in range(n_cases):
        case_dir = root / f"case_{index:03d}"
        case_dir.mkdir(parents=True)
        image, labels = blob_case(index, shape, drift=drift)
        save_volume(case_dir / f"case_{index:03d}_t1.nii.gz", image, AFFINE)
        save_volume(case_dir / f"case_{index:03d}_seg.nii.gz", labels, AFFINE, is_label=True)
    (root / "classes.json").write_text(json.dumps(classes))
    (root / "dataset.json").write_text(json.dumps({"name": "blobs", "granularity": granularity}))
    return root


BLOB_CLASSES = {"0": {"name": "background"}, "1": {"name": "core"}, "2": {"name": "rim"}}


def tiny_config(**overrides):
    """A training round of a few steps on whole items: seconds, not minutes, on a CPU."""
    from napari_alseg.model import TrainConfig

    return TrainConfig(**{"steps": 4, "batch_size": 2, "patch_size": None, "augment": False,
                          "validate_every": 100, **overrides})


def blob_source(root, *, granularity, n_cases, shape):
    """A source folder of :data:`BLOB_CLASSES` cases without drift (session and quality tests)."""
    return make_source(root, granularity=granularity, n_cases=n_cases, shape=shape, classes=BLOB_CLASSES, drift=False)


def validation_cases(project):
    """Names of the cases ``project`` holds out whole for validation (empty for slice granularity)."""
    return sorted({case for case, slice_index in project.validation_items() if slice_index is None})
