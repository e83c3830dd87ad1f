"""The anatomy of a ``tumour-cases`` case: grid, base brains, warp and lesions, with exact labels.

The output grid covers the base brain(s) (:func:`case_grid`); a base brain is a healthy
anatomy placed on it (:func:`base_brain`). A case warps that anatomy (random similarity +
smooth B-spline field, :func:`anatomy_deformation`), pushes tissue aside around each lesion
(:func:`mass_effect`) and labels the lesion classes at exactly the warped positions the
images are rendered from (:func:`lesion_labels`). Lesions are placed per variety:
:func:`random_lesion` (one deep tumour) or :func:`graded_lesions` (one to three, deep,
periventricular or juxtacortical). All work happens in ``(x, y, z)`` voxel order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import deform
from .templates import MniTissueMaps

MARGIN_MM = 8.0
ROTATION_SD_DEG = 6.0
SHIFT_SD_MM = 3.0
LOG_SCALE_SD = 0.05
CONTROL_SPACING_MM = 20.0
DISPLACEMENT_SD_MM = 2.0
SUPRATENTORIAL_Z_MM = -10.0  # lesion centres above this MNI z: cerebrum, like most gliomas

DEEP, PERIVENTRICULAR, JUXTACORTICAL = "deep", "periventricular", "juxtacortical"
SITES = (DEEP, PERIVENTRICULAR, JUXTACORTICAL)
VENTRICLE_DEPTH_MM = 15.0  # CSF this deep inside the brain (and supratentorial): ventricles
LESION_SIZE_SCALE = (1.0, 0.4)  # graded (easiest, hardest): times the single variety's 10-22 mm semi-axes


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


def case_grid(maps: MniTissueMaps | list[MniTissueMaps], size: int) -> CaseGrid:
    """The isotropic grid covering the brain(s) with ``size`` voxels along the longest axis.

    ``to_template`` and ``brain_depth_mm`` are the (first) brain's.
    """
    all_maps = maps if isinstance(maps, list) else [maps]
    maps = all_maps[0]
    corners = []
    for each in all_maps:
        occupied = np.argwhere(each.brain_mask > 0.5)
        corners += [apply_affine(each.affine, occupied.min(axis=0)), apply_affine(each.affine, occupied.max(axis=0))]
    corners_mm = np.stack(corners)
    low_mm, high_mm = corners_mm.min(axis=0) - MARGIN_MM, corners_mm.max(axis=0) + MARGIN_MM
    spacing_mm = float((high_mm - low_mm).max()) / size
    nx, ny, nz = (int(np.ceil((high - low) / spacing_mm)) for low, high in zip(low_mm, high_mm))
    shape = (nx, ny, nz)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = low_mm
    to_template = np.linalg.inv(maps.affine) @ affine
    template_px = map_points(to_template, deform.identity_grid(shape))
    brain_on_grid = deform.warp(maps.brain_mask, template_px, order=1) > 0.5
    depth_mm = ndimage.distance_transform_edt(brain_on_grid) * spacing_mm
    return CaseGrid(shape, spacing_mm, affine, to_template, depth_mm)


def base_brain(name: str, maps: MniTissueMaps, grid: CaseGrid) -> BaseBrain:
    """``maps`` on ``grid``: its template map, depth and distance to the ventricles (mm)."""
    to_template = np.linalg.inv(maps.affine) @ grid.affine
    template_px = map_points(to_template, deform.identity_grid(grid.shape))
    brain = deform.warp(maps.brain_mask, template_px, order=1)
    csf = brain - deform.warp(maps.grey_matter, template_px, order=1) - deform.warp(
        maps.white_matter, template_px, order=1)
    depth_mm = ndimage.distance_transform_edt(brain > 0.5) * grid.spacing_mm
    z_mm = grid.affine[2, 3] + grid.spacing_mm * np.arange(grid.shape[2])
    ventricles = (csf > 0.5) & (depth_mm > VENTRICLE_DEPTH_MM) & (z_mm > SUPRATENTORIAL_Z_MM)[None, None, :]
    ventricle_mm = (ndimage.distance_transform_edt(~ventricles) * grid.spacing_mm if ventricles.any()
                    else np.full(grid.shape, np.inf))
    return BaseBrain(name, maps, to_template, depth_mm, ventricle_mm)


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
    return Lesion.drawn(rng, apply_affine(grid.affine, centre_px), radii_mm)


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
    centred_mm = map_points(grid.affine, anatomy_px) - lesion.centre_mm.reshape(3, 1, 1, 1)
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
    points_mm = map_points(grid.affine, deform.identity_grid(grid.shape))
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
        lesions.append(Lesion.drawn(rng, apply_affine(grid.affine, centre_px), radii_mm, site))
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


def apply_affine(affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(point, float) + affine[:3, 3]


def map_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to a ``(3, ...)`` array of points."""
    translation = affine[:3, 3].reshape((3,) + (1,) * (points.ndim - 1))
    return np.tensordot(affine[:3, :3], points, axes=1) + translation
