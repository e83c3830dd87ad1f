"""Second evaluation sets, made differently from the shipped samples, for checking generalisation.

The learner's settings are tuned on the shipped ``brain-stack`` and ``tumour-cases``
samples. These two sets are built from the same installed templates but with another
cut, other labels, another lesion model, other deformations and another renderer, so a
setting that only suits the samples shows up as a drop here. **No setting may be chosen
on these sets**: they are for reporting only.

``sagittal-stack``: a 2D stack in brain-stack's layout (one case ``stack`` holding
``stack_t1.nii.gz`` + ``stack_seg.nii.gz``, ``(slice, rows, cols)``). Colin27 T1 + AAL cut
sagittally every 3 mm through both hemispheres (skipping the 10 mm around the midline,
where the skull stripping is ragged), 1.2 mm pixels, rows inferior -> superior, columns
posterior -> anterior. Nine structures: frontal / parietal / temporal / occipital cortex
(AAL parcels grouped into lobes), white matter, deep grey nuclei, hippocampus + amygdala,
cerebellum, CSF. Each slice gets a mild random similarity, a strong smooth nonlinear
field, a smooth multiplicative bias field and Rician noise.

``wm-lesions``: 3D cases in tumour-cases' layout (``case_NNN/case_NNN_{t1,flair,seg}``),
2 mm isotropic, rendered from nilearn's MNI152 tissue maps with this module's own
renderer. Classes: background, white-matter lesion, lateral ventricles. Each case holds
3-15 small irregular lesions (smoothed noise thresholded inside ellipsoids, 2-12 mm
radius) in periventricular or juxtacortical white matter, a per-case ventricular
enlargement, and per-case lesion contrast, bias field and noise level.

    OMP_NUM_THREADS=1 python benchmarks/eval_sets.py OUT_DIR [--only NAME] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_alseg.errors import AlsegError
from napari_alseg.nifti import load_volume, save_volume
from napari_alseg.samples import deform
from napari_alseg.samples.layout import (DATASET_FILE, dataset_field, is_complete, stack_affine, write_classes,
                                         write_json, write_t1_stack)
from napari_alseg.samples.templates import (
    ColinTemplates,
    MniTissueMaps,
    load_colin_templates,
    load_mni_tissue_maps,
)

EVAL_SETS: tuple[str, ...] = ("sagittal-stack", "wm-lesions")
EVAL_SET_VERSION = 2  # 2: sagittal-stack's affine says where its axes point (was a diagonal placeholder)
PURPOSE = "held-out evaluation only: choose no setting on this set"

# --------------------------------------------------------------------------- sagittal-stack

SAGITTAL_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("background", (0, 0, 0)),
    1: ("frontal cortex", (230, 80, 60)),
    2: ("parietal cortex", (60, 160, 230)),
    3: ("temporal cortex", (250, 200, 40)),
    4: ("occipital cortex", (150, 90, 210)),
    5: ("white matter", (245, 245, 245)),
    6: ("deep grey nuclei", (20, 150, 60)),
    7: ("hippocampus + amygdala", (255, 120, 200)),
    8: ("cerebellum", (230, 148, 34)),
    9: ("CSF", (40, 40, 160)),
}
CORTEX_CLASSES = (1, 2, 3, 4)
WHITE_MATTER, CSF = 5, 9
# AAL name prefixes per class. Lobes follow FreeSurfer's lobe mapping: anterior and middle
# cingulate and the paracentral lobule are frontal, posterior cingulate is parietal,
# parahippocampal and fusiform gyri are temporal; the insula joins the temporal lobe.
AAL_PREFIXES: dict[int, tuple[str, ...]] = {
    1: ("Precentral", "Frontal_", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory", "Rectus",
        "Cingulum_Ant", "Cingulum_Mid", "Paracentral_Lobule"),
    2: ("Postcentral", "Parietal_", "SupraMarginal", "Angular", "Precuneus", "Cingulum_Post"),
    3: ("Temporal_", "Heschl", "Insula", "ParaHippocampal", "Fusiform"),
    4: ("Calcarine", "Cuneus", "Lingual", "Occipital_"),
    6: ("Caudate", "Putamen", "Pallidum", "Thalamus"),
    7: ("Hippocampus", "Amygdala"),
    8: ("Cerebelum", "Vermis"),
}
LOBE_REACH_MM = 3.0  # grey matter farther than this from every cortical parcel (brainstem) is WM
PIXEL_MM = 1.2
SLICE_STEP_MM = 3.0
MEDIAL_GAP_MM = 5.0  # first slice this far from the midline on each side
MIN_BRAIN_AREA_FRACTION = 0.15  # drop lateral slices with less brain than this x the largest
SAGITTAL_MARGIN_PX = 12
SAGITTAL_ROTATION_SD_DEG = 4.0
SAGITTAL_SHIFT_SD_PX = 6.0
SAGITTAL_LOG_SCALE_SD = 0.06
SAGITTAL_CONTROL_SPACING_PX = 9.0
SAGITTAL_DISPLACEMENT_SD_PX = 6.0
SAGITTAL_BIAS_SPACING_PX = 50.0
SAGITTAL_BIAS_SD = 0.15  # log-intensity
SAGITTAL_NOISE_SD = 0.03  # Rician sigma as a fraction of the white-matter intensity

# --------------------------------------------------------------------------- wm-lesions

LESION_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("background", (0, 0, 0)),
    1: ("white-matter lesion", (255, 60, 60)),
    2: ("lateral ventricles", (60, 120, 255)),
}
LESION, VENTRICLES = 1, 2
LESION_CHANNELS = ("t1", "flair")
# Relative intensity of healthy CSF, GM and WM per channel; lesions scale the WM value.
HEALTHY_CONTRAST = {"t1": {"csf": 0.22, "gm": 0.52, "wm": 0.80},
                    "flair": {"csf": 0.12, "gm": 0.62, "wm": 0.48}}
LESION_RATIO_RANGE = {"t1": (0.55, 0.92), "flair": (1.5, 2.2)}  # per case, x WM intensity
LESION_RATIO_JITTER = 0.12  # per lesion, relative
TISSUE_JITTER = 0.06  # per case and tissue, relative
LESION_INTENSITY_SCALE = 1000.0  # stored int16 units per relative intensity
LESION_MARGIN_MM = 6.0
LESION_SIZE = 96  # voxels along the longest axis: 2.0 mm
N_LESION_CASES = 20
N_LESIONS_RANGE = (3, 15)
LESION_RADIUS_RANGE_MM = (2.0, 12.0)
CASE_RADIUS_RANGE_MM = (3.0, 7.0)  # per-case typical radius; lesions scatter around it
LESION_RADIUS_LOG_SD = 0.4
LESION_IRREGULARITY = 0.6
LESION_NOISE_CLIP = 1.5  # irregularity x clip < 1 keeps the centre inside
MIN_SEMI_AXIS_PX = 1.25
PERIVENTRICULAR_FRACTION_RANGE = (0.3, 0.8)
PERIVENTRICULAR_MM = 8.0
JUXTACORTICAL_MM = 4.0
LESION_MIN_WHITE = 0.3  # lesion voxels need at least this WM probability
VENTRICLE_DEPTH_MM = 14.0
VENTRICLE_SEEDS_MM = ((-14.0, -15.0, 22.0), (14.0, -15.0, 22.0))  # lateral ventricle bodies
SUPRATENTORIAL_Z_MM = -10.0
ENLARGEMENT_RANGE_MM = (0.0, 4.0)
ENLARGEMENT_REACH_MM = 22.0
LESION_ROTATION_SD_DEG = 3.0
LESION_SHIFT_SD_MM = 4.0
LESION_LOG_SCALE_SD = 0.04
LESION_CONTROL_SPACING_MM = 24.0
LESION_DISPLACEMENT_SD_MM = 2.5
LESION_BIAS_SPACING_MM = 80.0
LESION_BIAS_SD_RANGE = (0.08, 0.2)  # per case, log-intensity
LESION_NOISE_SD_RANGE = (0.015, 0.045)  # per case, Rician sigma in relative intensity
PSF_SD_MM = 1.2


# --------------------------------------------------------------------------- public interface


def write_eval_set(name: str, folder: Path, *, seed: int = 0, **options) -> Path:
    """Write evaluation set ``name`` into ``folder/<name>/`` and return that folder.

    Idempotent: a folder whose ``dataset.json`` exists is returned as it is (whatever
    options made it) unless an older :data:`EVAL_SET_VERSION` wrote it. The set is built
    in a hidden sibling and renamed into place, with ``dataset.json`` written last. ``options``: sagittal-stack ``slice_step_mm``;
    wm-lesions ``n_cases``, ``size``.
    """
    if name not in _WRITERS:
        raise AlsegError(f"unknown evaluation set {name!r}; valid names: {', '.join(EVAL_SETS)}")
    target = Path(folder) / name
    if is_complete(target) and dataset_field(target, "eval_set_version") == EVAL_SET_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=target.parent))
    try:
        info = _WRITERS[name](staging, seed=int(seed), **options)
        write_json(staging / DATASET_FILE, {
            "name": name, "seed": int(seed), "purpose": PURPOSE,
            "eval_set_version": EVAL_SET_VERSION,
            "options": {key: str(value) for key, value in options.items()}, **info,
        })
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def describe(set_dir: Path) -> str:
    """A few lines: cases, shape and spacing (k, j, i), and voxels per class over all cases."""
    info = json.loads((set_dir / DATASET_FILE).read_text())
    seg_paths = sorted(set_dir.glob("*/*_seg.nii.gz"))
    counts = np.zeros(len(info["classes"]), np.int64)
    for path in seg_paths:
        labels = load_volume(path, as_label=True)
        counts += np.bincount(labels.data.ravel(), minlength=len(counts))[:len(counts)]
    lines = [f"{info['name']}: {len(seg_paths)} case(s) of shape {tuple(labels.shape)} "
             f"(k, j, i), spacing {tuple(round(s, 3) for s in labels.spacing)} mm, "
             f"channels {info['channels']}, granularity {info['granularity']}"]
    lines += [f"  {class_id:>2} {name:<24} {counts[int(class_id)]:>10} voxels"
              for class_id, name in info["classes"].items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- sagittal-stack


def write_sagittal_stack(folder: Path, *, seed: int, slice_step_mm: float = SLICE_STEP_MM) -> dict:
    """Write ``stack/stack_{t1,seg}.nii.gz`` and ``classes.json``; return dataset.json's body.

    The stack is ``(slice, rows, cols)`` = ``(k, j, i)`` with spacing
    ``(slice_step_mm, PIXEL_MM, PIXEL_MM)`` mm, slices left to right.
    """
    if not 1.0 <= float(slice_step_mm) <= 30.0:
        raise AlsegError(
            f"sagittal-stack: slice_step_mm must be in 1..30 mm, got {slice_step_mm!r}")
    templates = load_colin_templates()
    labels_xyz = sagittal_classes(templates)
    slice_x = sagittal_plan(templates.t1 > 0, templates.affine, slice_step_mm)
    origin_zy, shape = sagittal_frame(templates.t1 > 0)
    images, labels = deformed_sagittal_slices(templates.t1, labels_xyz, slice_x, origin_zy,
                                              shape, seed)
    affine = stack_affine((1, 2, 0), (PIXEL_MM, PIXEL_MM, float(slice_step_mm)))  # columns y, rows z, slices x
    write_t1_stack(folder, images, labels, affine, SAGITTAL_CLASSES)
    x_mm = templates.affine[0, 0] * np.asarray(slice_x) + templates.affine[0, 3]
    return {
        "granularity": "slice",
        "channels": ["t1"],
        "classes": {str(class_id): name for class_id, (name, _) in SAGITTAL_CLASSES.items()},
        "source": f"Colin27 T1 (ch2bet.nii.gz) and AAL (aal.nii.gz) in {templates.folder}",
        "shape_kji": list(labels.shape),
        "spacing_mm_kji": [float(slice_step_mm), PIXEL_MM, PIXEL_MM],
        "slice_x_mm": [round(float(value), 1) for value in x_mm],
        "deformation": {
            "rotation_sd_deg": SAGITTAL_ROTATION_SD_DEG, "shift_sd_px": SAGITTAL_SHIFT_SD_PX,
            "log_scale_sd": SAGITTAL_LOG_SCALE_SD,
            "control_spacing_px": SAGITTAL_CONTROL_SPACING_PX,
            "displacement_sd_px": SAGITTAL_DISPLACEMENT_SD_PX,
            "bias_sd": SAGITTAL_BIAS_SD, "rician_noise_sd": SAGITTAL_NOISE_SD,
        },
    }


def aal_class_lookup(aal_names: dict[int, str]) -> np.ndarray:
    """Class id per AAL id (uint8, indexable by AAL id); every AAL name must match one group."""
    lookup = np.zeros(max(aal_names) + 1, np.uint8)
    for aal_id, name in aal_names.items():
        matches = [class_id for class_id, prefixes in AAL_PREFIXES.items()
                   if name.startswith(prefixes)]
        if len(matches) != 1:
            raise AlsegError(f"aal.nii.txt: AAL id {aal_id} {name!r} matches {len(matches)} "
                             "class groups, expected 1; not the AAL version this set expects")
        lookup[aal_id] = matches[0]
    return lookup


def sagittal_classes(templates: ColinTemplates) -> np.ndarray:
    """Class ids 0..9 on the Colin27 grid, uint8 ``(x, y, z)``.

    A 3-class Otsu split of the brain gives CSF / grey / white matter; each grey voxel
    takes the lobe of its nearest AAL cortical parcel (AAL parcels overlap the grey
    ribbon only roughly), or white matter when none lies within :data:`LOBE_REACH_MM`
    (brainstem). AAL's deep nuclei, hippocampus + amygdala and cerebellum then override.
    """
    from skimage.filters import threshold_multiotsu

    brain = templates.t1 > 0
    csf_top, grey_top = threshold_multiotsu(templates.t1[brain], classes=3)
    aal_classes = aal_class_lookup(templates.aal_names)[np.clip(templates.aal, 0, None)]
    cortical = np.isin(aal_classes, CORTEX_CLASSES)
    distance_mm, nearest = ndimage.distance_transform_edt(~cortical, return_indices=True)
    lobe = aal_classes[tuple(nearest)]
    labels = np.zeros(templates.t1.shape, np.uint8)
    labels[brain] = WHITE_MATTER
    grey = brain & (templates.t1 >= csf_top) & (templates.t1 < grey_top)
    near_cortex = grey & (distance_mm <= LOBE_REACH_MM)
    labels[near_cortex] = lobe[near_cortex]
    labels[brain & (templates.t1 < csf_top)] = CSF
    override = brain & (aal_classes > 0) & ~cortical
    labels[override] = aal_classes[override]
    return labels


def sagittal_plan(brain: np.ndarray, affine: np.ndarray, step_mm: float) -> list[int]:
    """Sagittal slice indices (x) every ``step_mm`` outwards from :data:`MEDIAL_GAP_MM`.

    ``brain`` is ``(x, y, z)`` on a 1 mm grid. Both hemispheres, left to right; slices
    with less than :data:`MIN_BRAIN_AREA_FRACTION` of the largest slice's brain are dropped.
    """
    midline = int(round(-affine[0, 3] / affine[0, 0]))
    area = brain.sum(axis=(1, 2))
    offsets = np.arange(MEDIAL_GAP_MM, brain.shape[0], max(float(step_mm), 1.0))
    indices = sorted({int(round(midline + sign * offset))
                      for offset in offsets for sign in (-1, 1)})
    inside = [index for index in indices if 0 <= index < brain.shape[0]]
    return [index for index in inside if area[index] >= MIN_BRAIN_AREA_FRACTION * area.max()]


def sagittal_frame(brain: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Template position (z, y) in voxels of output pixel (0, 0), and the output shape in px.

    The frame covers the brain's (z, y) bounding box plus :data:`SAGITTAL_MARGIN_PX`.
    """
    occupied = np.argwhere(brain)[:, [2, 1]]
    low, high = occupied.min(axis=0), occupied.max(axis=0)
    margin_vox = SAGITTAL_MARGIN_PX * PIXEL_MM
    shape = tuple(int(size) for size in np.ceil((high - low + 1 + 2 * margin_vox) / PIXEL_MM))
    return low - margin_vox, shape


def deformed_sagittal_slices(t1: np.ndarray, labels: np.ndarray, slice_x: list[int],
                             origin_zy: np.ndarray, shape: tuple[int, int],
                             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut, deform, bias and add noise to each slice: float32 image, uint8 labels ``(n, z, y)``.

    Slice ``n`` uses its own generator seeded by ``(seed, n)``, so it is reproducible alone.
    """
    white_intensity = float(np.median(t1[labels == WHITE_MATTER]))
    images = np.zeros((len(slice_x),) + shape, np.float32)
    stack_labels = np.zeros((len(slice_x),) + shape, np.uint8)
    for index, x in enumerate(slice_x):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        template_zy = origin_zy.reshape(2, 1, 1) + PIXEL_MM * sagittal_deformation(rng, shape)
        image = deform.warp(np.ascontiguousarray(t1[x].T), template_zy, order=1)
        stack_labels[index] = deform.warp(np.ascontiguousarray(labels[x].T), template_zy, order=0)
        bias = np.exp(deform.smooth_field(rng, shape, control_spacing_px=SAGITTAL_BIAS_SPACING_PX,
                                          sigma=SAGITTAL_BIAS_SD))
        images[index] = rician(rng, image * bias, SAGITTAL_NOISE_SD * white_intensity)
    return images, stack_labels


def sagittal_deformation(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Backward map ``(2, rows, cols)`` in output px: mild similarity + strong smooth field."""
    similarity = deform.random_similarity(
        rng, shape, rotation_sd_deg=SAGITTAL_ROTATION_SD_DEG, shift_sd_px=SAGITTAL_SHIFT_SD_PX,
        log_scale_sd=SAGITTAL_LOG_SCALE_SD)
    return similarity + deform.smooth_displacement(
        rng, shape, control_spacing_px=SAGITTAL_CONTROL_SPACING_PX,
        sigma_px=SAGITTAL_DISPLACEMENT_SD_PX)


def rician(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of ``image`` plus complex Gaussian noise of SD ``sigma`` (float32, >= 0)."""
    real = image + rng.normal(0.0, sigma, size=image.shape)
    imaginary = rng.normal(0.0, sigma, size=image.shape)
    return np.hypot(real, imaginary).astype(np.float32)


# --------------------------------------------------------------------------- wm-lesions


@dataclass(frozen=True)
class LesionAnatomy:
    """The undeformed MNI anatomy on the set's grid, arrays ``(x, y, z)``, and lesion sites.

    ``affine`` maps grid voxels to mm, ``to_template`` to template voxels. ``white`` is
    the WM probability; ``periventricular`` / ``juxtacortical`` mark allowed lesion centres.
    """

    shape: tuple[int, int, int]
    spacing_mm: float
    affine: np.ndarray
    to_template: np.ndarray
    white: np.ndarray
    ventricles: np.ndarray
    ventricle_centre_px: np.ndarray
    periventricular: np.ndarray
    juxtacortical: np.ndarray


@dataclass(frozen=True)
class WmLesion:
    """One lesion on the undeformed grid: centre (px), semi-axes (mm), rotation, site."""

    centre_px: np.ndarray
    radii_mm: np.ndarray
    rotation: np.ndarray
    site: str


def write_wm_lesions(folder: Path, *, seed: int, n_cases: int = N_LESION_CASES,
                     size: int = LESION_SIZE) -> dict:
    """Write ``case_NNN/case_NNN_{t1,flair,seg}.nii.gz`` and ``classes.json``.

    ``size`` voxels along the brain's longest axis (96: 2.0 mm). Files are ``(k, j, i)``
    = ``(z, y, x)``. Returns dataset.json's body, with each case's lesions.
    """
    if not isinstance(n_cases, int) or n_cases < 1:
        raise AlsegError(f"wm-lesions: n_cases must be a whole number >= 1, got {n_cases!r}")
    if not isinstance(size, int) or not 32 <= size <= 256:
        raise AlsegError(f"wm-lesions: size must be a whole number in 32..256, got {size!r}")
    maps = load_mni_tissue_maps()
    anatomy = lesion_anatomy(maps, size)
    cases = []
    for index in range(n_cases):
        case_id = f"case_{index:03d}"
        channels, labels, lesions = generate_lesion_case(maps, anatomy, seed, index)
        (folder / case_id).mkdir()
        for channel, image in channels.items():
            stored = np.rint(image * LESION_INTENSITY_SCALE).astype(np.int16)
            save_volume(folder / case_id / f"{case_id}_{channel}.nii.gz",
                        stored.transpose(2, 1, 0), anatomy.affine)
        save_volume(folder / case_id / f"{case_id}_seg.nii.gz", labels.transpose(2, 1, 0),
                    anatomy.affine, is_label=True)
        cases.append({"id": case_id, "n_lesions": len(lesions),
                      "lesion_voxels": int(np.count_nonzero(labels == LESION)),
                      "radii_mm": [round(float(lesion.radii_mm.max()), 1) for lesion in lesions],
                      "sites": [lesion.site for lesion in lesions]})
    write_classes(folder, LESION_CLASSES)
    return {
        "granularity": "case",
        "channels": list(LESION_CHANNELS),
        "classes": {str(class_id): name for class_id, (name, _) in LESION_CLASSES.items()},
        "source": "MNI152 2009 grey/white matter maps and brain mask bundled with nilearn",
        "shape_kji": list(anatomy.shape[::-1]),
        "spacing_mm_kji": [round(anatomy.spacing_mm, 4)] * 3,
        "intensity_scale": LESION_INTENSITY_SCALE,
        "cases": cases,
    }


def lesion_anatomy(maps: MniTissueMaps, size: int) -> LesionAnatomy:
    """The MNI maps on an isotropic grid with ``size`` voxels along the brain's longest axis."""
    occupied = np.argwhere(maps.brain_mask > 0.5)
    low_mm = _apply(maps.affine, occupied.min(axis=0)) - LESION_MARGIN_MM
    high_mm = _apply(maps.affine, occupied.max(axis=0)) + LESION_MARGIN_MM
    spacing_mm = float((high_mm - low_mm).max()) / size
    shape = tuple(int(np.ceil((high - low) / spacing_mm)) for low, high in zip(low_mm, high_mm))
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = low_mm
    to_template = np.linalg.inv(maps.affine) @ affine
    template_px = _map_points(to_template, deform.identity_grid(shape))
    grey, white, brain = (deform.warp(array, template_px, order=1) for array in
                          (maps.grey_matter, maps.white_matter, maps.brain_mask))
    ventricles = deform.warp(lateral_ventricles(maps), template_px, order=1) > 0.5
    depth_mm = ndimage.distance_transform_edt(brain > 0.5) * spacing_mm
    ventricle_mm = ndimage.distance_transform_edt(~ventricles) * spacing_mm
    cortex_mm = ndimage.distance_transform_edt(grey < 0.5) * spacing_mm
    juxtacortical_mm = max(JUXTACORTICAL_MM, 1.5 * spacing_mm)  # coarse grids: next voxel
    z_mm = affine[2, 3] + spacing_mm * np.arange(shape[2])
    return LesionAnatomy(
        shape=shape, spacing_mm=spacing_mm, affine=affine, to_template=to_template,
        white=white, ventricles=ventricles,
        ventricle_centre_px=np.argwhere(ventricles).mean(axis=0),
        periventricular=(white > 0.6) & (ventricle_mm > 0) & (ventricle_mm <= PERIVENTRICULAR_MM),
        juxtacortical=((white > 0.5) & (cortex_mm <= juxtacortical_mm) & (depth_mm > 8.0)
                       & (z_mm > SUPRATENTORIAL_Z_MM)[None, None, :]),
    )


def lateral_ventricles(maps: MniTissueMaps) -> np.ndarray:
    """Float32 mask on the template grid: deep CSF components holding :data:`VENTRICLE_SEEDS_MM`.

    CSF is what the brain mask holds beyond grey and white matter; "deep" keeps it
    :data:`VENTRICLE_DEPTH_MM` inside the brain, which cuts off the sulci and the
    interhemispheric fissure but not the basal cisterns, hence the seeds.
    """
    csf = np.clip(maps.brain_mask - maps.grey_matter - maps.white_matter, 0.0, 1.0)
    depth_mm = ndimage.distance_transform_edt(maps.brain_mask > 0.5) * abs(maps.affine[0, 0])
    components, _ = ndimage.label((csf > 0.5) & (depth_mm > VENTRICLE_DEPTH_MM))
    inverse = np.linalg.inv(maps.affine)
    seeds = [tuple(np.rint(_apply(inverse, seed)).astype(int)) for seed in VENTRICLE_SEEDS_MM]
    seeded = {int(components[seed]) for seed in seeds} - {0}
    if not seeded:
        raise AlsegError("MNI152 maps: no deep CSF at the lateral ventricle seeds; "
                         "not the template version this set expects")
    return np.isin(components, list(seeded)).astype(np.float32)


def generate_lesion_case(maps: MniTissueMaps, anatomy: LesionAnatomy, seed: int, index: int
                         ) -> tuple[dict[str, np.ndarray], np.ndarray, list[WmLesion]]:
    """Case ``index``: channels float32 and labels uint8 ``(x, y, z)``, and its lesions.

    Lesions and ventricles are drawn on the undeformed grid, then images and labels are
    resampled with the same backward map, so the labels are exact.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    lesions = random_wm_lesions(rng, anatomy)
    lesion_ids = lesion_instances(rng, lesions, anatomy)
    grid_px = lesion_case_deformation(rng, anatomy)
    lesion_ids = deform.warp(lesion_ids, grid_px, order=0)
    ventricles = deform.warp(anatomy.ventricles.astype(np.uint8), grid_px, order=0)
    labels = np.where(lesion_ids > 0, LESION, np.where(ventricles > 0, VENTRICLES, 0))
    template_px = _map_points(anatomy.to_template, grid_px)
    grey, white, brain = (deform.warp(array, template_px, order=1) for array in
                          (maps.grey_matter, maps.white_matter, maps.brain_mask))
    labels = np.where(brain > 0.5, labels, 0).astype(np.uint8)
    channels = {channel: render_lesion_channel(rng, channel, grey, white, brain, lesion_ids,
                                               anatomy.spacing_mm)
                for channel in LESION_CHANNELS}
    return channels, labels, lesions


def random_wm_lesions(rng: np.random.Generator, anatomy: LesionAnatomy) -> list[WmLesion]:
    """3-15 lesions; the case sets a typical radius and a periventricular share.

    Radii scatter log-normally around the case's typical radius, clipped to 2-12 mm;
    each lesion is an ellipsoid with semi-axes 55-100 % of its radius, randomly rotated.
    """
    n_lesions = int(rng.integers(N_LESIONS_RANGE[0], N_LESIONS_RANGE[1] + 1))
    typical_mm = rng.uniform(*CASE_RADIUS_RANGE_MM)
    periventricular_share = rng.uniform(*PERIVENTRICULAR_FRACTION_RANGE)
    sites = {"periventricular": np.argwhere(anatomy.periventricular),
             "juxtacortical": np.argwhere(anatomy.juxtacortical)}
    empty = [site for site, centres in sites.items() if not len(centres)]
    if empty:
        raise AlsegError(f"wm-lesions: no {' or '.join(empty)} white matter on this grid")
    lesions = []
    for _ in range(n_lesions):
        site = "periventricular" if rng.random() < periventricular_share else "juxtacortical"
        radius_mm = np.clip(typical_mm * np.exp(rng.normal(0.0, LESION_RADIUS_LOG_SD)),
                            *LESION_RADIUS_RANGE_MM)
        lesions.append(WmLesion(
            centre_px=sites[site][rng.integers(len(sites[site]))].astype(float),
            radii_mm=radius_mm * np.concatenate([[1.0], rng.uniform(0.55, 1.0, size=2)]),
            rotation=deform.random_rotation(rng, 3, 180.0),
            site=site,
        ))
    return lesions


def lesion_instances(rng: np.random.Generator, lesions: list[WmLesion],
                     anatomy: LesionAnatomy) -> np.ndarray:
    """Lesion ids 1..n (0 elsewhere), uint8 on the undeformed grid ``anatomy.shape``.

    Inside its box each lesion keeps ``1 - d^2 + irregularity * noise > 0``, ``d`` the
    ellipsoid distance (1 on the surface) and ``noise`` smoothed at a third of the radius
    and clipped to :data:`LESION_NOISE_CLIP`, so the outline is ragged but the centre
    always stays. Semi-axes are at least :data:`MIN_SEMI_AXIS_PX`, so even a 2 mm lesion
    is a few voxels rather than one. Voxels with too little white matter or in a ventricle
    are cleared and only the piece holding the centre is kept; later lesions overwrite
    earlier ones.
    """
    instances = np.zeros(anatomy.shape, np.uint8)
    allowed = (anatomy.white >= LESION_MIN_WHITE) & ~anatomy.ventricles
    outermost_d = np.sqrt(1.0 + LESION_IRREGULARITY * LESION_NOISE_CLIP)
    for lesion_id, lesion in enumerate(lesions, start=1):
        semi_axes_mm = np.maximum(lesion.radii_mm, MIN_SEMI_AXIS_PX * anatomy.spacing_mm)
        reach_px = int(np.ceil(outermost_d * semi_axes_mm.max() / anatomy.spacing_mm)) + 1
        low = np.maximum(lesion.centre_px.astype(int) - reach_px, 0)
        high = np.minimum(lesion.centre_px.astype(int) + reach_px + 1, anatomy.shape)
        box = tuple(slice(start, stop) for start, stop in zip(low, high))
        offsets_mm = (deform.identity_grid(tuple(high - low))
                      + (low - lesion.centre_px).reshape(3, 1, 1, 1)) * anatomy.spacing_mm
        local_mm = np.tensordot(lesion.rotation.T, offsets_mm, axes=1)
        distance_sq = ((local_mm / semi_axes_mm.reshape(3, 1, 1, 1)) ** 2).sum(axis=0)
        noise_px = max(lesion.radii_mm.max() / 3.0 / anatomy.spacing_mm, 0.5)
        noise = np.clip(deform.smooth_noise(rng, tuple(high - low), noise_px),
                        -LESION_NOISE_CLIP, LESION_NOISE_CLIP)
        inside = (1.0 - distance_sq + LESION_IRREGULARITY * noise > 0) & allowed[box]
        pieces, _ = ndimage.label(inside)
        instances[box][pieces == pieces[tuple(lesion.centre_px.astype(int) - low)]] = lesion_id
    return instances


def lesion_case_deformation(rng: np.random.Generator, anatomy: LesionAnatomy) -> np.ndarray:
    """Backward map ``(3, *anatomy.shape)`` from output px to undeformed grid px.

    A mild similarity and smooth field (too gentle to fold, so not integrated), then a
    radial expansion about the ventricles' centre: a point at radius r (mm) samples
    r - a exp(-r^2 / 2 s^2), monotonic in r for a < s, so the ventricles grow by about
    ``a`` mm (ventricular enlargement, drawn per case).
    """
    spacing = anatomy.spacing_mm
    moved = deform.random_similarity(
        rng, anatomy.shape, rotation_sd_deg=LESION_ROTATION_SD_DEG,
        shift_sd_px=LESION_SHIFT_SD_MM / spacing, log_scale_sd=LESION_LOG_SCALE_SD,
    ) + deform.smooth_displacement(
        rng, anatomy.shape, control_spacing_px=LESION_CONTROL_SPACING_MM / spacing,
        sigma_px=LESION_DISPLACEMENT_SD_MM / spacing, squarings=0)
    centre = anatomy.ventricle_centre_px.reshape(3, 1, 1, 1)
    offsets = moved - centre
    radius_mm = np.sqrt((offsets**2).sum(axis=0)) * spacing
    enlargement_mm = rng.uniform(*ENLARGEMENT_RANGE_MM)
    pulled_mm = radius_mm - enlargement_mm * np.exp(-0.5 * (radius_mm / ENLARGEMENT_REACH_MM) ** 2)
    return centre + offsets * (np.maximum(pulled_mm, 0.0) / np.maximum(radius_mm, 1e-6))


def render_lesion_channel(rng: np.random.Generator, channel: str, grey: np.ndarray,
                          white: np.ndarray, brain: np.ndarray, lesion_ids: np.ndarray,
                          spacing_mm: float) -> np.ndarray:
    """One contrast, float32 relative intensity ``(x, y, z)``, 0 outside the brain mask.

    Healthy tissue mixes CSF / GM / WM values by probability (each jittered per case);
    each lesion replaces its voxels with WM x the case's lesion ratio x its own jitter.
    Then a Gaussian point-spread blur of :data:`PSF_SD_MM`, a smooth bias field and
    Rician noise, with bias and noise strength drawn per case.
    """
    contrast = HEALTHY_CONTRAST[channel]
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    tissue = {name: contrast[name] * rng.uniform(1 - TISSUE_JITTER, 1 + TISSUE_JITTER)
              for name in ("csf", "gm", "wm")}
    image = csf * tissue["csf"] + grey * tissue["gm"] + white * tissue["wm"]
    case_ratio = rng.uniform(*LESION_RATIO_RANGE[channel])
    lesion_values = tissue["wm"] * case_ratio * rng.uniform(
        1 - LESION_RATIO_JITTER, 1 + LESION_RATIO_JITTER, size=int(lesion_ids.max()) + 1)
    image = np.where(lesion_ids > 0, lesion_values[lesion_ids], image)
    image = ndimage.gaussian_filter(image, PSF_SD_MM / spacing_mm)
    bias = np.exp(deform.smooth_field(rng, image.shape,
                                      control_spacing_px=LESION_BIAS_SPACING_MM / spacing_mm,
                                      sigma=rng.uniform(*LESION_BIAS_SD_RANGE)))
    noisy = rician(rng, image * bias, rng.uniform(*LESION_NOISE_SD_RANGE))
    return np.where(brain > 0.5, noisy, 0.0).astype(np.float32)


def _apply(affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(point, float) + affine[:3, 3]


def _map_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to a ``(3, ...)`` array of points."""
    translation = affine[:3, 3].reshape((3,) + (1,) * (points.ndim - 1))
    return np.tensordot(affine[:3, :3], points, axes=1) + translation


_WRITERS: dict[str, Callable[..., dict]] = {"sagittal-stack": write_sagittal_stack,
                                           "wm-lesions": write_wm_lesions}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write <set>/ into")
    parser.add_argument("--only", choices=EVAL_SETS, help="write one set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in (args.only,) if args.only else EVAL_SETS:
        started = time.perf_counter()
        existed = is_complete(args.out_dir / name)
        set_dir = write_eval_set(name, args.out_dir, seed=args.seed)
        took = "already there" if existed else f"written in {time.perf_counter() - started:.1f} s"
        print(f"{set_dir}: {took}\n{describe(set_dir)}", flush=True)


if __name__ == "__main__":
    main()
