"""The ``brain-stack`` set: independently deformed coronal slices of a real labelled T1 brain.

It reproduces the synthetic stacks of Atzeni et al. 2022 (docs/METHODS.md §10.5): a real 3D T1 MRI
(Colin27, 1 mm) with deep structures from the AAL atlas plus cortex / white matter / CSF,
cut into coronal slices every 5 mm, each slice deformed by its own random similarity
and smooth nonlinear field, so neighbouring slices are no longer in register and a 2D
model has to learn each structure's appearance rather than its position.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import AlsegError
from . import deform
from .layout import stack_affine, write_t1_stack
from .templates import ColinTemplates, load_colin_templates

CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("background", (0, 0, 0)),
    1: ("cortex", (205, 62, 78)),
    2: ("white matter", (245, 245, 245)),
    3: ("CSF", (120, 18, 134)),
    4: ("thalamus", (0, 118, 14)),
    5: ("caudate", (122, 186, 220)),
    6: ("putamen", (236, 13, 176)),
    7: ("pallidum", (12, 48, 255)),
    8: ("hippocampus", (220, 216, 20)),
    9: ("amygdala", (103, 255, 255)),
    10: ("cerebellum", (230, 148, 34)),
}
AAL_NAME_PREFIXES = {4: ("Thalamus",), 5: ("Caudate",), 6: ("Putamen",), 7: ("Pallidum",),
                     8: ("Hippocampus",), 9: ("Amygdala",), 10: ("Cerebelum", "Vermis")}
AAL_TO_CLASS: dict[int, int] = {
    77: 4, 78: 4, 71: 5, 72: 5, 73: 6, 74: 6, 75: 7, 76: 7, 37: 8, 38: 8, 41: 9, 42: 9,
    **{aal_id: 10 for aal_id in range(91, 117)},
}
ROTATION_SD_DEG = 10.0
SHIFT_SD_PX = 10.0
LOG_SCALE_SD = 0.1
CONTROL_SPACING_PX = 5.0
DISPLACEMENT_SD_PX = 4.0
MARGIN_PX = 16  # about 1.5 shift SDs, so the deformed brain rarely leaves the frame


def write_set(folder: Path, *, seed: int, progress: Callable[[str], None] | None = None,
              mricron_dir: Path | None = None, slice_step_mm: float = 5.0) -> dict:
    """Write ``stack/stack_t1.nii.gz`` + ``stack/stack_seg.nii.gz`` and ``classes.json``.

    Returns the set-specific part of ``dataset.json``. The stack is ``(slice, z, x)``
    = ``(k, j, i)`` with spacing (slice_step_mm, 1, 1) mm: rows run inferior to superior,
    columns left to right.
    """
    if not isinstance(slice_step_mm, (int, float)) or not 1.0 <= slice_step_mm <= 50.0:
        raise AlsegError(f"brain-stack: slice_step_mm must be in 1..50 mm, got {slice_step_mm!r}")
    report = progress or (lambda message: None)
    report("brain-stack: reading Colin27 + AAL templates")
    templates = load_colin_templates(mricron_dir)
    check_aal_names(templates)
    labels_xyz = tissue_classes(templates)
    slice_y, rows, columns = coronal_plan(templates.t1 > 0, slice_step_mm)
    report(f"brain-stack: deforming {len(slice_y)} coronal slices")
    images, labels = deformed_slices(templates.t1, labels_xyz, slice_y, rows, columns, seed)

    affine = stack_affine((0, 2, 1), (1.0, 1.0, float(slice_step_mm)))  # columns x, rows z, slices y
    write_t1_stack(folder, images, labels, affine, CLASSES)
    y_mm = templates.affine[1, 1] * np.asarray(slice_y) + templates.affine[1, 3]
    return {
        "granularity": "slice",
        "channels": ["t1"],
        "classes": {str(class_id): name for class_id, (name, _) in CLASSES.items()},
        "source": (f"Colin27 T1 (ch2bet.nii.gz) and AAL atlas (aal.nii.gz) from Debian "
                   f"mricron-data in {templates.folder}"),
        "shape_kji": list(labels.shape),
        "spacing_mm_kji": [float(slice_step_mm), 1.0, 1.0],
        "slice_y_mm": [round(float(value), 1) for value in y_mm],
        "deformation": {
            "rotation_sd_deg": ROTATION_SD_DEG, "shift_sd_px": SHIFT_SD_PX,
            "log_scale_sd": LOG_SCALE_SD, "control_spacing_px": CONTROL_SPACING_PX,
            "displacement_sd_px": DISPLACEMENT_SD_PX,
        },
    }


def check_aal_names(templates: ColinTemplates) -> None:
    """Raise :class:`AlsegError` unless the AAL ids we merge name the structures we expect."""
    for aal_id, class_id in AAL_TO_CLASS.items():
        name = templates.aal_names.get(aal_id, "")
        if not name.startswith(AAL_NAME_PREFIXES[class_id]):
            expected = " or ".join(AAL_NAME_PREFIXES[class_id])
            raise AlsegError(f"aal.nii.txt: AAL id {aal_id} is {name!r}, expected {expected}; "
                             "not the AAL version this set expects")


def tissue_classes(templates: ColinTemplates) -> np.ndarray:
    """Class ids 0..10 on the Colin27 grid, uint8 ``(x, y, z)``.

    AAL's cortical parcels reach deep into white matter, so cortex / WM / CSF come from
    a 3-class Otsu split of the T1 inside the brain (darkest CSF, middle grey matter,
    brightest WM); AAL's deep grey nuclei and cerebellum then override.
    """
    from skimage.filters import threshold_multiotsu

    brain = templates.t1 > 0
    csf_top, grey_top = threshold_multiotsu(templates.t1[brain], classes=3)
    labels = np.zeros(templates.t1.shape, np.uint8)
    labels[brain & (templates.t1 < csf_top)] = 3
    labels[brain & (templates.t1 >= csf_top) & (templates.t1 < grey_top)] = 1
    labels[brain & (templates.t1 >= grey_top)] = 2
    lookup = np.zeros(max(int(templates.aal.max()), max(AAL_TO_CLASS)) + 1, np.uint8)
    lookup[list(AAL_TO_CLASS)] = list(AAL_TO_CLASS.values())
    deep = lookup[np.clip(templates.aal, 0, None)]
    override = brain & (deep > 0)
    labels[override] = deep[override]
    return labels


def coronal_plan(brain: np.ndarray, step_mm: float) -> tuple[list[int], slice, slice]:
    """Coronal slice indices every ``step_mm`` through the brain, and its in-plane crop.

    ``brain`` is ``(x, y, z)`` on a 1 mm grid; the crop (rows = z, columns = x) is the
    brain's bounding box plus :data:`MARGIN_PX`, possibly reaching outside the volume.
    A fractional ``step_mm`` (2.5) cuts each slice at the nearest template plane, so the
    true gaps alternate (2, 3, 2, ... mm); ``dataset.json`` records each slice's position.
    """
    occupied = np.argwhere(brain)
    low, high = occupied.min(axis=0), occupied.max(axis=0)
    if float(step_mm).is_integer():
        step = max(int(step_mm), 1)
        first_y = int(low[1] + ((high[1] - low[1]) % step) // 2)
        slice_y = list(range(first_y, int(high[1]) + 1, step))
    else:
        # A fractional step: positions every step_mm, centred, each cut at the nearest
        # 1 mm template plane (image and labels alike, so the labels stay exact).
        n_slices = int((high[1] - low[1]) // step_mm) + 1
        first = low[1] + ((high[1] - low[1]) - (n_slices - 1) * step_mm) / 2.0
        slice_y = [int(np.floor(first + n * step_mm + 0.5)) for n in range(n_slices)]
    rows = slice(int(low[2]) - MARGIN_PX, int(high[2]) + 1 + MARGIN_PX)
    columns = slice(int(low[0]) - MARGIN_PX, int(high[0]) + 1 + MARGIN_PX)
    return slice_y, rows, columns


def deformed_slices(t1: np.ndarray, labels: np.ndarray, slice_y: list[int], rows: slice,
                    columns: slice, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut and deform each coronal slice; returns float32 image and uint8 labels ``(n, z, x)``.

    Slice ``n`` uses its own generator seeded by ``(seed, n)``, so it is reproducible alone.
    """
    shape = (rows.stop - rows.start, columns.stop - columns.start)
    crop_origin = np.array([rows.start, columns.start], float).reshape(2, 1, 1)
    images = np.zeros((len(slice_y),) + shape, np.float32)
    stack_labels = np.zeros((len(slice_y),) + shape, np.uint8)
    for index, y in enumerate(slice_y):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        coordinates = slice_deformation(rng, shape) + crop_origin
        image_zx = np.ascontiguousarray(t1[:, y, :].T)
        labels_zx = np.ascontiguousarray(labels[:, y, :].T)
        images[index] = deform.warp(image_zx, coordinates, order=1)
        stack_labels[index] = deform.warp(labels_zx, coordinates, order=0)
    return images, stack_labels


def slice_deformation(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Backward map ``(2, rows, columns)`` in px: random similarity + smooth B-spline field."""
    similarity = deform.random_similarity(rng, shape, rotation_sd_deg=ROTATION_SD_DEG,
                                          shift_sd_px=SHIFT_SD_PX, log_scale_sd=LOG_SCALE_SD)
    return similarity + deform.smooth_displacement(
        rng, shape, control_spacing_px=CONTROL_SPACING_PX, sigma_px=DISPLACEMENT_SD_PX)
