"""The ``tumour-cases`` set: small multi-channel 3D brains with synthetic tumours.

Made from the MNI152 2009 tissue maps bundled with nilearn, so it needs no download.
Each case warps the healthy anatomy (random similarity + smooth B-spline field, plus a
radial mass effect around each lesion), renders T1c-, T2- and FLAIR-like contrasts from
tissue probabilities and lesion classes, and adds a bias field and noise. The labels are
evaluated at exactly the warped positions the images are rendered from, so the ground
truth is exact. All work happens on the case's output grid in ``(x, y, z)`` voxel order;
files are written in the package's ``(k, j, i)`` convention.

Two varieties. ``single`` (the default sample): one deep tumour per case, the MNI brain,
fixed noise and bias. ``graded`` (the benchmark pools): case ``i`` gets a difficulty
``d_i`` in [0, 1) from the golden-ratio sequence, so any first n cases span easy to hard
evenly, and ``d`` shrinks the lesions, lowers their contrast and raises bias field,
noise and texture; one to three lesions (more likely when hard), each deep in white
matter, next to the ventricles or next to the cortex; and the base brain alternates
between MNI152 and Colin27 where Debian's ``mricron-data`` is installed.

The grid, base brains, warp and lesions are :mod:`.tumour_anatomy`'s; this module renders the
contrasts and writes the set. Both varieties draw from one random stream per case, in one
order (the default sample stays byte for byte what it was).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import AlsegError
from ..nifti import save_volume
from . import deform
from .layout import write_classes
from .templates import MniTissueMaps, colin_tissue_maps, load_colin_templates, load_mni_tissue_maps
from .tumour_anatomy import (BaseBrain, CaseGrid, Lesion, anatomy_deformation, base_brain, case_grid, graded_lesions,
                             lesion_labels, map_points, mass_effect, merge_lesion_labels, random_lesion)

CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("background", (0, 0, 0)),
    1: ("necrotic core", (255, 0, 0)),
    2: ("oedema", (0, 255, 0)),
    3: ("enhancing rim", (255, 255, 0)),
}
CHANNELS = ("t1c", "t2", "flair")
# Relative intensity per channel for healthy CSF, GM, WM and lesion classes 1, 2, 3.
TISSUE_CONTRAST = {
    "t1c": {"csf": 0.25, "gm": 0.55, "wm": 0.80, 1: 0.20, 2: 0.48, 3: 1.30},
    "t2": {"csf": 1.00, "gm": 0.60, "wm": 0.40, 1: 0.95, 2: 0.95, 3: 0.70},
    "flair": {"csf": 0.20, "gm": 0.60, "wm": 0.45, 1: 0.35, 2: 1.10, 3: 0.80},
}
OEDEMA_OPACITY = 0.7  # oedema brightens the tissue under it rather than replacing it
INTENSITY_SCALE = 100.0  # stored int16 units per relative intensity (WM on T1c ~ 80)
NOISE_SD = 0.03  # relative intensity
TEXTURE_SD = 0.08  # relative intensity variation inside the lesion
BIAS_SD = 0.12  # log-intensity

SINGLE, GRADED = "single", "graded"
VARIETIES = (SINGLE, GRADED)
MNI152, COLIN27 = "mni152", "colin27"
BRAINS = (MNI152, COLIN27)
GOLDEN_STEP = (np.sqrt(5.0) - 1.0) / 2.0  # difficulty of case i: frac(0.5 + i * GOLDEN_STEP)
# Graded appearance: (easiest, hardest), linear in the case's difficulty.
LESION_CONTRAST = (1.0, 0.4)  # 1: the lesion intensities of TISSUE_CONTRAST, 0: invisible
GRADED_NOISE_SD = (0.02, 0.07)
GRADED_BIAS_SD = (0.06, 0.25)
GRADED_TEXTURE_SD = (0.05, 0.15)


@dataclass(frozen=True)
class Appearance:
    """How a case is rendered; the defaults are the single variety's."""

    lesion_contrast: float = 1.0  # lesion opacity over the healthy tissue under it, 0..1
    texture_sd: float = TEXTURE_SD
    bias_sd: float = BIAS_SD
    noise_sd: float = NOISE_SD


@dataclass(frozen=True)
class Case:
    """One generated case: ``channels`` float32 and ``labels`` uint8, all ``(x, y, z)``.

    ``lesion`` is the first (largest) lesion, ``lesions`` all of them.
    """

    channels: dict[str, np.ndarray]
    labels: np.ndarray
    lesion: Lesion
    lesions: tuple[Lesion, ...] = ()
    brain: str = MNI152
    difficulty: float | None = None
    appearance: Appearance = Appearance()


def write_set(folder: Path, *, seed: int, progress: Callable[[str], None] | None = None,
              n_cases: int = 12, size: int = 90, variety: str = SINGLE, brains: str = "auto") -> dict:
    """Write ``case_NNN/case_NNN_{t1c,t2,flair,seg}.nii.gz`` and ``classes.json``.

    ``size`` is the number of voxels along the brain's longest (anterior-posterior)
    axis; 90 gives about 2 mm voxels. ``variety``: ``single`` or ``graded`` (see the
    module). ``brains`` (graded only): ``auto`` = every installed base brain, or names
    joined by ``+`` from :data:`BRAINS`. Returns the set-specific part of ``dataset.json``.
    """
    if isinstance(n_cases, bool) or not isinstance(n_cases, int) or n_cases < 1:
        raise AlsegError(f"tumour-cases: n_cases must be a whole number >= 1, got {n_cases!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 256:
        raise AlsegError(
            f"tumour-cases: size must be a whole number of voxels in 16..256, got {size!r}")
    if variety not in VARIETIES:
        raise AlsegError(f"tumour-cases: variety must be one of {', '.join(VARIETIES)}, got {variety!r}")
    if variety == SINGLE and brains not in ("auto", MNI152):
        raise AlsegError(f"tumour-cases: the single variety uses the MNI152 brain only, got brains={brains!r}")
    wanted = _wanted_brains(brains)
    report = progress or (lambda message: None)
    report("tumour-cases: reading nilearn's MNI152 2009 tissue maps")
    maps = load_mni_tissue_maps()
    if variety == GRADED:
        return _write_graded_set(folder, seed, report, n_cases, size, maps, brains, wanted)
    grid = case_grid(maps, size)
    cases = []
    for index in range(n_cases):
        report(f"tumour-cases: case {index + 1}/{n_cases}")
        case = generate_case(maps, grid, seed, index)
        case_id = f"case_{index:03d}"
        _write_case(folder, case_id, case, grid.affine)
        cases.append({"id": case_id,
                      "centre_mm": [round(float(v), 1) for v in case.lesion.centre_mm],
                      "radii_mm": [round(float(v), 1) for v in case.lesion.radii_mm]})
    write_classes(folder, CLASSES)
    return _set_info(grid, cases, "MNI152 2009 grey/white matter maps and brain mask bundled with nilearn")


def _write_case(folder: Path, case_id: str, case: Case, affine: np.ndarray) -> None:
    case_folder = folder / case_id
    case_folder.mkdir()
    for channel, image in case.channels.items():
        stored = np.rint(image * INTENSITY_SCALE).astype(np.int16)
        save_volume(case_folder / f"{case_id}_{channel}.nii.gz", stored.transpose(2, 1, 0), affine)
    save_volume(case_folder / f"{case_id}_seg.nii.gz", case.labels.transpose(2, 1, 0), affine, is_label=True)


def _set_info(grid: CaseGrid, cases: list[dict], source: str) -> dict:
    return {
        "granularity": "case",
        "channels": list(CHANNELS),
        "classes": {str(class_id): name for class_id, (name, _) in CLASSES.items()},
        "source": source,
        "shape_kji": list(grid.shape[::-1]),
        "spacing_mm_kji": [round(grid.spacing_mm, 4)] * 3,
        "intensity_scale": INTENSITY_SCALE,
        "cases": cases,
    }


def _write_graded_set(folder: Path, seed: int, report: Callable[[str], None], n_cases: int, size: int,
                      mni_maps: MniTissueMaps, brains: str, wanted: tuple[str, ...]) -> dict:
    all_maps = {MNI152: mni_maps, **_other_brains(wanted, brains == "auto", report)}
    grid = case_grid(list(all_maps.values()), size)
    base_brains = [base_brain(name, maps, grid) for name, maps in all_maps.items()]
    report(f"tumour-cases: graded, base brains {', '.join(brain.name for brain in base_brains)}")
    cases = []
    for index in range(n_cases):
        report(f"tumour-cases: case {index + 1}/{n_cases}")
        case = generate_graded_case(base_brains, grid, seed, index)
        case_id = f"case_{index:03d}"
        _write_case(folder, case_id, case, grid.affine)
        cases.append({
            "id": case_id, "brain": case.brain, "difficulty": None if case.difficulty is None else round(case.difficulty, 3),
            "n_lesions": len(case.lesions),
            "lesion_voxels": int(np.count_nonzero(case.labels)),
            "lesion_contrast": round(case.appearance.lesion_contrast, 3),
            "noise_sd": round(case.appearance.noise_sd, 4), "bias_sd": round(case.appearance.bias_sd, 4),
            "lesions": [{"site": lesion.site,
                         "centre_mm": [round(float(v), 1) for v in lesion.centre_mm],
                         "radii_mm": [round(float(v), 1) for v in lesion.radii_mm]} for lesion in case.lesions],
        })
    write_classes(folder, CLASSES)
    sources = {MNI152: "MNI152 2009 grey/white matter maps and brain mask bundled with nilearn",
               COLIN27: "Colin27 T1 (ch2bet.nii.gz, Debian mricron-data) as partial-volume tissue maps"}
    info = _set_info(grid, cases, "; ".join(sources[name] for name in all_maps))
    info["brains"] = list(all_maps)
    return info


def _wanted_brains(brains: str) -> tuple[str, ...]:
    wanted = BRAINS if brains == "auto" else tuple(str(brains).split("+"))
    if sorted(set(wanted) - set(BRAINS)) or MNI152 not in wanted:
        raise AlsegError(f"tumour-cases: brains must be 'auto' or names joined by '+' from "
                         f"{', '.join(BRAINS)}, including {MNI152}; got {brains!r}")
    return wanted


def _other_brains(wanted: tuple[str, ...], optional: bool, report: Callable[[str], None]
                  ) -> dict[str, MniTissueMaps]:
    """The base brains besides MNI152; an ``optional`` one that is not installed is skipped."""
    others = {}
    if COLIN27 in wanted:
        try:
            others[COLIN27] = colin_tissue_maps(load_colin_templates())
        except AlsegError as exc:
            if not optional:
                raise
            report(f"tumour-cases: Colin27 not used ({exc})")
    return others


def case_difficulty(index: int) -> float:
    """Case ``index``'s difficulty in [0, 1): the golden-ratio sequence, even for any prefix."""
    return float((0.5 + index * GOLDEN_STEP) % 1.0)


def graded_appearance(rng: np.random.Generator, difficulty: float) -> Appearance:
    """Lesion contrast, texture, bias field and noise for a case of ``difficulty``, +-10 % jitter."""
    def between(bounds: tuple[float, float]) -> float:
        return float((bounds[0] + difficulty * (bounds[1] - bounds[0])) * rng.uniform(0.9, 1.1))

    return Appearance(lesion_contrast=min(between(LESION_CONTRAST), 1.0), texture_sd=between(GRADED_TEXTURE_SD),
                      bias_sd=between(GRADED_BIAS_SD), noise_sd=between(GRADED_NOISE_SD))


def generate_graded_case(brains: list[BaseBrain], grid: CaseGrid, seed: int, index: int) -> Case:
    """Case ``index`` of a graded set with ``seed``; depends only on ``(seed, index)`` and the brains.

    The brain alternates over ``brains`` by index; lesions, anatomy warp and rendering
    follow :func:`generate_case`, with one to three lesions and a graded appearance.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    difficulty = case_difficulty(index)
    brain = brains[index % len(brains)]
    grid = CaseGrid(grid.shape, grid.spacing_mm, grid.affine, brain.to_template, brain.depth_mm)
    lesions = graded_lesions(rng, grid, brain, difficulty)
    appearance = graded_appearance(rng, difficulty)
    anatomy_px = anatomy_deformation(rng, grid)
    pushed_px = anatomy_px
    for lesion in lesions:
        pushed_px = mass_effect(pushed_px, lesion, grid)
    template_px = map_points(grid.to_template, pushed_px)
    grey = deform.warp(brain.maps.grey_matter, template_px, order=1)
    white = deform.warp(brain.maps.white_matter, template_px, order=1)
    brain_mask = deform.warp(brain.maps.brain_mask, template_px, order=1)
    labels = np.zeros(grid.shape, np.uint8)
    for lesion in lesions:
        labels = merge_lesion_labels(labels, lesion_labels(rng, lesion, grid, anatomy_px, white, brain_mask > 0.5))
    channels = {
        channel: render_channel(rng, channel, grey, white, brain_mask, labels, grid.spacing_mm, appearance)
        for channel in CHANNELS
    }
    return Case(channels, labels, lesions[0], tuple(lesions), brain.name, difficulty, appearance)


def generate_case(maps: MniTissueMaps, grid: CaseGrid, seed: int, index: int) -> Case:
    """Case ``index`` of the set with ``seed``; depends only on ``(seed, index)``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    lesion = random_lesion(rng, grid, index)
    anatomy_px = anatomy_deformation(rng, grid)
    template_px = map_points(grid.to_template, mass_effect(anatomy_px, lesion, grid))
    grey = deform.warp(maps.grey_matter, template_px, order=1)
    white = deform.warp(maps.white_matter, template_px, order=1)
    brain = deform.warp(maps.brain_mask, template_px, order=1)
    labels = lesion_labels(rng, lesion, grid, anatomy_px, white, brain > 0.5)
    channels = {
        channel: render_channel(rng, channel, grey, white, brain, labels, grid.spacing_mm)
        for channel in CHANNELS
    }
    return Case(channels, labels, lesion, (lesion,))


def render_channel(rng: np.random.Generator, channel: str, grey: np.ndarray, white: np.ndarray,
                   brain: np.ndarray, labels: np.ndarray, spacing_mm: float,
                   appearance: Appearance = Appearance()) -> np.ndarray:
    """One MR-like contrast, float32 relative intensity, 0 outside the brain (skull-stripped).

    Healthy tissue mixes CSF/GM/WM intensities by probability; lesion classes replace it
    (oedema at :data:`OEDEMA_OPACITY`, both times ``appearance.lesion_contrast``) with a
    mottled texture; then a 1 mm blur, a smooth multiplicative bias field and Gaussian
    noise (``appearance``), with per-case contrast jitter of 5-15 %.
    """
    contrast = TISSUE_CONTRAST[channel]
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    jitter = rng.uniform(0.95, 1.05, size=3)
    image = (csf * contrast["csf"] * jitter[0] + grey * contrast["gm"] * jitter[1]
             + white * contrast["wm"] * jitter[2])
    for class_id, opacity in ((1, 1.0), (2, OEDEMA_OPACITY), (3, 1.0)):
        inside = labels == class_id
        value = contrast[class_id] * rng.uniform(0.85, 1.15)
        opacity = opacity * appearance.lesion_contrast
        image[inside] = (1.0 - opacity) * image[inside] + opacity * value
    texture = 1.0 + appearance.texture_sd * deform.smooth_noise(rng, image.shape, 2.0 / spacing_mm)
    image = np.where(labels > 0, image * texture, image)
    image = ndimage.gaussian_filter(image, 1.0 / spacing_mm)
    bias = np.exp(deform.smooth_field(rng, image.shape, control_spacing_px=60.0 / spacing_mm,
                                      sigma=appearance.bias_sd))
    noisy = image * bias + rng.normal(0.0, appearance.noise_sd, size=image.shape).astype(np.float32)
    return np.where(brain > 0.5, np.clip(noisy, 0.0, None), 0.0).astype(np.float32)
