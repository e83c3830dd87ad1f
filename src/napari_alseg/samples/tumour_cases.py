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

Why one module of ~550 lines: both varieties share the grid, lesion, deformation and
rendering code and its random stream (the default sample must stay byte for byte what
it was), and the graded variety is only the lesion placement and appearance on top.
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
MARGIN_MM = 8.0
ROTATION_SD_DEG = 6.0
SHIFT_SD_MM = 3.0
LOG_SCALE_SD = 0.05
CONTROL_SPACING_MM = 20.0
DISPLACEMENT_SD_MM = 2.0
SUPRATENTORIAL_Z_MM = -10.0  # lesion centres above this MNI z: cerebrum, like most gliomas

SINGLE, GRADED = "single", "graded"
VARIETIES = (SINGLE, GRADED)
MNI152, COLIN27 = "mni152", "colin27"
BRAINS = (MNI152, COLIN27)
DEEP, PERIVENTRICULAR, JUXTACORTICAL = "deep", "periventricular", "juxtacortical"
SITES = (DEEP, PERIVENTRICULAR, JUXTACORTICAL)
GOLDEN_STEP = (np.sqrt(5.0) - 1.0) / 2.0  # difficulty of case i: frac(0.5 + i * GOLDEN_STEP)
VENTRICLE_DEPTH_MM = 15.0  # CSF this deep inside the brain (and supratentorial): ventricles
# Graded appearance: (easiest, hardest), linear in the case's difficulty.
LESION_SIZE_SCALE = (1.0, 0.4)  # times the single variety's 10-22 mm semi-axes
LESION_CONTRAST = (1.0, 0.4)  # 1: the lesion intensities of TISSUE_CONTRAST, 0: invisible
GRADED_NOISE_SD = (0.02, 0.07)
GRADED_BIAS_SD = (0.06, 0.25)
GRADED_TEXTURE_SD = (0.05, 0.15)


@dataclass(frozen=True)
class CaseGrid:
    """The output voxel grid shared by all cases: the MNI brain's bounding box + margin.

    ``affine`` maps output voxels ``(x, y, z)`` to mm; ``to_template`` maps them to
    template voxels. ``brain_depth_mm`` is each output voxel's distance to the brain's
    edge in the undeformed anatomy, used to keep lesions inside the brain.
    """

    shape: tuple[int, int, int]
    spacing_mm: float
    affine: np.ndarray
    to_template: np.ndarray
    brain_depth_mm: np.ndarray


@dataclass(frozen=True)
class Lesion:
    """One tumour: centre and ellipsoid in mm (output grid space), relative class extents."""

    centre_mm: np.ndarray
    radii_mm: np.ndarray
    rotation: np.ndarray
    core_fraction: float
    oedema_scale: float
    irregularity: float
    mass_effect_mm: float
    site: str = DEEP

    @classmethod
    def drawn(cls, rng: np.random.Generator, centre_mm: np.ndarray, radii_mm: np.ndarray,
              site: str = DEEP) -> Lesion:
        """A lesion at ``centre_mm`` with random orientation, core, oedema, irregularity and mass effect."""
        return cls(
            centre_mm=centre_mm,
            radii_mm=radii_mm,
            rotation=deform.random_rotation(rng, 3, 180.0),
            core_fraction=float(rng.uniform(0.4, 0.65)),
            oedema_scale=float(rng.uniform(1.4, 2.2)),
            irregularity=float(rng.uniform(0.2, 0.4)),
            mass_effect_mm=float(rng.uniform(0.2, 0.45) * radii_mm.mean()),
            site=site,
        )


@dataclass(frozen=True)
class Appearance:
    """How a case is rendered; the defaults are the single variety's."""

    lesion_contrast: float = 1.0  # lesion opacity over the healthy tissue under it, 0..1
    texture_sd: float = TEXTURE_SD
    bias_sd: float = BIAS_SD
    noise_sd: float = NOISE_SD


@dataclass(frozen=True)
class BaseBrain:
    """A healthy anatomy placed on the shared output grid.

    ``to_template`` maps output voxels to the brain's template voxels; ``depth_mm`` is
    each output voxel's distance to the brain's edge and ``ventricle_mm`` its distance to
    the ventricles (deep supratentorial CSF; inf when none), both in the undeformed anatomy.
    """

    name: str
    maps: MniTissueMaps
    to_template: np.ndarray
    depth_mm: np.ndarray
    ventricle_mm: np.ndarray


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


def case_grid(maps: MniTissueMaps | list[MniTissueMaps], size: int) -> CaseGrid:
    """The isotropic grid covering the brain(s) with ``size`` voxels along the longest axis.

    ``to_template`` and ``brain_depth_mm`` are the (first) brain's.
    """
    all_maps = maps if isinstance(maps, list) else [maps]
    maps = all_maps[0]
    corners = []
    for each in all_maps:
        occupied = np.argwhere(each.brain_mask > 0.5)
        corners += [_apply(each.affine, occupied.min(axis=0)), _apply(each.affine, occupied.max(axis=0))]
    corners_mm = np.stack(corners)
    low_mm, high_mm = corners_mm.min(axis=0) - MARGIN_MM, corners_mm.max(axis=0) + MARGIN_MM
    spacing_mm = float((high_mm - low_mm).max()) / size
    nx, ny, nz = (int(np.ceil((high - low) / spacing_mm)) for low, high in zip(low_mm, high_mm))
    shape = (nx, ny, nz)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = low_mm
    to_template = np.linalg.inv(maps.affine) @ affine
    template_px = _map_points(to_template, deform.identity_grid(shape))
    brain_on_grid = deform.warp(maps.brain_mask, template_px, order=1) > 0.5
    depth_mm = ndimage.distance_transform_edt(brain_on_grid) * spacing_mm
    return CaseGrid(shape, spacing_mm, affine, to_template, depth_mm)


def base_brain(name: str, maps: MniTissueMaps, grid: CaseGrid) -> BaseBrain:
    """``maps`` on ``grid``: its template map, depth and distance to the ventricles (mm)."""
    to_template = np.linalg.inv(maps.affine) @ grid.affine
    template_px = _map_points(to_template, deform.identity_grid(grid.shape))
    brain = deform.warp(maps.brain_mask, template_px, order=1)
    csf = brain - deform.warp(maps.grey_matter, template_px, order=1) - deform.warp(
        maps.white_matter, template_px, order=1)
    depth_mm = ndimage.distance_transform_edt(brain > 0.5) * grid.spacing_mm
    z_mm = grid.affine[2, 3] + grid.spacing_mm * np.arange(grid.shape[2])
    ventricles = (csf > 0.5) & (depth_mm > VENTRICLE_DEPTH_MM) & (z_mm > SUPRATENTORIAL_Z_MM)[None, None, :]
    ventricle_mm = (ndimage.distance_transform_edt(~ventricles) * grid.spacing_mm if ventricles.any()
                    else np.full(grid.shape, np.inf))
    return BaseBrain(name, maps, to_template, depth_mm, ventricle_mm)


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
    template_px = _map_points(grid.to_template, pushed_px)
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


def merge_lesion_labels(labels: np.ndarray, more: np.ndarray) -> np.ndarray:
    """Two label maps in one: core over rim over oedema over background, wherever they meet."""
    rank = np.array([0, 3, 1, 2], np.uint8)  # by class id 0..3: background, core, oedema, rim
    return np.where(rank[more] > rank[labels], more, labels).astype(np.uint8)


def graded_lesions(rng: np.random.Generator, grid: CaseGrid, brain: BaseBrain, difficulty: float) -> list[Lesion]:
    """One to three lesions, the first the largest, apart from one another, in the cerebrum.

    Count: 1 + Binomial(2, 0.2 + 0.4 d). Semi-axes: the single variety's 10-22 mm times
    :data:`LESION_SIZE_SCALE` at ``d`` (and 0.5-0.9 more for the second and third), at
    least 3 voxels. Each lesion's site is deep white matter, next to the ventricles (its
    centre within one mean radius + 4 mm of them) or next to the cortex (its centre
    0.6-1.1 mean radii from the brain's edge, so it touches the cortex), the last two
    more likely when hard; a site with no room falls back to deep, then to anywhere.
    """
    n_lesions = 1 + int(rng.binomial(2, 0.2 + 0.4 * difficulty))
    scale = LESION_SIZE_SCALE[0] + difficulty * (LESION_SIZE_SCALE[1] - LESION_SIZE_SCALE[0])
    site_odds = np.array([0.6 - 0.3 * difficulty, 0.2 + 0.15 * difficulty, 0.2 + 0.15 * difficulty])
    x_mm = grid.affine[0, 3] + grid.spacing_mm * np.arange(grid.shape[0])
    z_mm = grid.affine[2, 3] + grid.spacing_mm * np.arange(grid.shape[2])
    points_mm = _map_points(grid.affine, deform.identity_grid(grid.shape))
    lesions: list[Lesion] = []
    for number in range(n_lesions):
        shrink = 1.0 if number == 0 else rng.uniform(0.5, 0.9)
        radii_mm = np.maximum(rng.uniform(10.0, 22.0, size=3) * scale * shrink, 3.0 * grid.spacing_mm)
        site = SITES[int(rng.choice(len(SITES), p=site_odds / site_odds.sum()))]
        hemisphere = (x_mm < -8.0) if rng.random() < 0.5 else (x_mm > 8.0)
        allowed = np.broadcast_to(hemisphere[:, None, None] & (z_mm > SUPRATENTORIAL_Z_MM)[None, None, :],
                                  grid.shape).copy()
        for other in lesions:
            gap_mm = np.sqrt(((points_mm - other.centre_mm.reshape(3, 1, 1, 1)) ** 2).sum(axis=0))
            allowed &= gap_mm > 1.3 * (other.radii_mm.max() + radii_mm.max())
        centre_px, site = _lesion_centre(rng, allowed, brain, radii_mm, site)
        lesions.append(Lesion.drawn(rng, _apply(grid.affine, centre_px), radii_mm, site))
    return lesions


def _lesion_centre(rng: np.random.Generator, allowed: np.ndarray, brain: BaseBrain, radii_mm: np.ndarray,
                   site: str) -> tuple[np.ndarray, str]:
    depth, ventricle = brain.depth_mm, brain.ventricle_mm
    mean_mm, max_mm = float(radii_mm.mean()), float(radii_mm.max())
    fits = depth >= min(max_mm, 0.8 * float(depth.max()))
    regions = {
        DEEP: fits & (ventricle >= max_mm + 3.0),
        PERIVENTRICULAR: fits & (ventricle >= 0.5 * mean_mm) & (ventricle <= mean_mm + 4.0),
        JUXTACORTICAL: (depth >= 0.6 * mean_mm) & (depth <= 1.1 * mean_mm + 2.0),
    }
    for name, region in ((site, regions[site]), (DEEP, regions[DEEP]), (DEEP, fits), (DEEP, depth > 0)):
        candidates = np.argwhere(region & allowed)
        if len(candidates):
            return candidates[rng.integers(len(candidates))], name
    candidates = np.argwhere(depth > 0)
    return candidates[rng.integers(len(candidates))], DEEP


def generate_case(maps: MniTissueMaps, grid: CaseGrid, seed: int, index: int) -> Case:
    """Case ``index`` of the set with ``seed``; depends only on ``(seed, index)``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    lesion = random_lesion(rng, grid, index)
    anatomy_px = anatomy_deformation(rng, grid)
    template_px = _map_points(grid.to_template, mass_effect(anatomy_px, lesion, grid))
    grey = deform.warp(maps.grey_matter, template_px, order=1)
    white = deform.warp(maps.white_matter, template_px, order=1)
    brain = deform.warp(maps.brain_mask, template_px, order=1)
    labels = lesion_labels(rng, lesion, grid, anatomy_px, white, brain > 0.5)
    channels = {
        channel: render_channel(rng, channel, grey, white, brain, labels, grid.spacing_mm)
        for channel in CHANNELS
    }
    return Case(channels, labels, lesion, (lesion,))


def random_lesion(rng: np.random.Generator, grid: CaseGrid, index: int) -> Lesion:
    """A lesion fully inside the cerebrum, in the left hemisphere for even ``index``, right for odd.

    Semi-axes 10-22 mm (at least 4 voxels so the core survives coarse test grids).
    """
    radii_mm = np.maximum(rng.uniform(10.0, 22.0, size=3), 4.0 * grid.spacing_mm)
    x_mm = grid.affine[0, 3] + grid.spacing_mm * np.arange(grid.shape[0])
    z_mm = grid.affine[2, 3] + grid.spacing_mm * np.arange(grid.shape[2])
    hemisphere = (x_mm < -8.0) if index % 2 == 0 else (x_mm > 8.0)
    allowed = hemisphere[:, None, None] & (z_mm > SUPRATENTORIAL_Z_MM)[None, None, :]
    depth_mm = np.where(allowed, grid.brain_depth_mm, 0.0)
    depth_needed = min(float(radii_mm.max()), 0.8 * float(depth_mm.max()))
    candidates = np.argwhere(depth_mm >= max(depth_needed, 1e-6))
    centre_px = candidates[rng.integers(len(candidates))]
    return Lesion.drawn(rng, _apply(grid.affine, centre_px), radii_mm)


def anatomy_deformation(rng: np.random.Generator, grid: CaseGrid) -> np.ndarray:
    """Backward map ``(3, *grid.shape)`` in output px: random similarity + smooth field."""
    similarity = deform.random_similarity(rng, grid.shape, rotation_sd_deg=ROTATION_SD_DEG,
                                          shift_sd_px=SHIFT_SD_MM / grid.spacing_mm,
                                          log_scale_sd=LOG_SCALE_SD)
    # Control points 20 mm apart with 2 mm displacements give gradients of about 0.1:
    # the raw B-spline field cannot fold, so the costly 3D integration is skipped.
    return similarity + deform.smooth_displacement(
        rng, grid.shape, control_spacing_px=CONTROL_SPACING_MM / grid.spacing_mm,
        sigma_px=DISPLACEMENT_SD_MM / grid.spacing_mm, squarings=0)


def mass_effect(points_px: np.ndarray, lesion: Lesion, grid: CaseGrid) -> np.ndarray:
    """Push tissue radially away from the lesion centre; backward map in px, same shape.

    A point at radius r (mm) samples the anatomy at r - a*exp(-r^2 / 2s^2) (clipped at 0):
    monotonic in r, so nothing folds; tissue within about ``a`` of the centre is hidden
    under the lesion core.
    """
    centre_px = ((lesion.centre_mm - grid.affine[:3, 3]) / grid.spacing_mm).reshape(3, 1, 1, 1)
    offsets = points_px - centre_px
    radius_mm = np.sqrt((offsets**2).sum(axis=0)) * grid.spacing_mm
    reach_mm = 1.5 * lesion.radii_mm.mean()
    push_mm = lesion.mass_effect_mm * np.exp(-0.5 * (radius_mm / reach_mm) ** 2)
    pushed_mm = np.maximum(radius_mm - push_mm, 0.0)
    return centre_px + offsets * (pushed_mm / np.maximum(radius_mm, 1e-6))


def lesion_labels(rng: np.random.Generator, lesion: Lesion, grid: CaseGrid, anatomy_px: np.ndarray,
                  white: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Class ids 0-3, uint8 ``grid.shape``, evaluated at the deformed anatomy positions.

    The tumour is a lobulated ellipsoid (enhancing rim around a necrotic core): its
    radius is modulated by smooth noise with a correlation length of 0.4 lesion radii,
    so the outline is irregular but not fragmented. Oedema is a larger lobulated
    ellipsoid kept mostly to white matter, plus a shell hugging the tumour.
    """
    noise_sd_px = 0.4 * float(lesion.radii_mm.mean()) / grid.spacing_mm
    tumour_noise, oedema_noise = (
        np.clip(deform.warp(deform.smooth_noise(rng, grid.shape, noise_sd_px), anatomy_px, order=1),
                -2.0, 2.0)
        for _ in range(2))
    centred_mm = _map_points(grid.affine, anatomy_px) - lesion.centre_mm.reshape(3, 1, 1, 1)
    offsets_mm = np.tensordot(lesion.rotation.T, centred_mm, axes=1)
    ellipsoid = np.sqrt(((offsets_mm / lesion.radii_mm.reshape(3, 1, 1, 1)) ** 2).sum(axis=0))
    tumour = ellipsoid * np.exp(lesion.irregularity * tumour_noise)
    oedema = ellipsoid / lesion.oedema_scale * np.exp(lesion.irregularity * oedema_noise)
    labels = np.zeros(grid.shape, np.uint8)
    labels[(oedema < 1.0) & ((white > 0.3) | (tumour < 1.3))] = 2
    labels[tumour < 1.0] = 3
    labels[tumour < lesion.core_fraction] = 1
    labels[~brain] = 0
    return _keep_tumour_component(labels)


def _keep_tumour_component(labels: np.ndarray) -> np.ndarray:
    """Drop lesion islands (mostly oedema in far-off white matter) not touching the tumour."""
    components, _ = ndimage.label(labels > 0)
    tumour_components = np.unique(components[labels == 3])
    keep = np.isin(components, tumour_components[tumour_components > 0])
    return np.where(keep, labels, 0).astype(np.uint8)


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


def _apply(affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(point, float) + affine[:3, 3]


def _map_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to a ``(3, ...)`` array of points."""
    translation = affine[:3, 3].reshape((3,) + (1,) * (points.ndim - 1))
    return np.tensordot(affine[:3, :3], points, axes=1) + translation
