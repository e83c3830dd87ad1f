"""Segment with clicks: positive and negative clicks on one class re-segment it from the image.

Model-free, so it works from the first case (no model yet), and it takes a model's
probability of the class as a prior once there is one. Inside a box around the clicks (on
the slice in a slice project) the class becomes:

- what the prior holds: the class as already labelled, and where the model's probability
  is > 0.5;
- plus, per positive click, the voxels whose intensity lies within a tolerance of the
  click's in every channel (channels scaled to their 2-98 % range; the tolerance is three
  SDs of the click's neighbourhood, between 0.05 and 0.2 of the range), connected to it;
- less, per negative click, the voxels of that region like the negative click in the same
  sense and connected to it (a false blob, a leak into a structure that looks different),
  but never those geodesically nearer to a positive click (paths inside the region, in mm).

Writing rule (:func:`segment_with_clicks`): background and the class itself change, and
another class only where a positive click's like region reaches (a prefill that gave the
clicked structure to another class is corrected); nothing outside the box changes. A
random walker (Grady 2006) seeded by the clicks was tried first and lost on the lesions;
docs/clicks.md has what was tried and measured. Pure numpy / SciPy / scikit-image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .domain import BBox
from .errors import AlsegError

TOLERANCE = 0.2  # a voxel is like a click within at most this share of the channel's 2-98 % range ...
MIN_TOLERANCE = 0.05  # ... and at least this share ...
LOCAL_SPREADS = 3.0  # ... within these many SDs of the click's neighbourhood (texture sets the tolerance)
LOCAL_REACH = 2  # the neighbourhood: this many voxels either side of the click per axis
EDGE_REACH = 2  # voxels the smoothed flood may grow into where the raw image is like the click
SMOOTH_MM = 1.0  # Gaussian smoothing (sigma, mm) before intensities are compared: noise
SEED_RADIUS_MM = 2.0  # a click claims a ball of this radius (at least the clicked voxel)
BOX_MARGIN_MM = 40.0  # the box reaches this far beyond the clicks (and any existing part of the class)
MAX_CLICKS = 200  # more clicks than this on one item is a mistake, not a segmentation


@dataclass(frozen=True)
class Click:
    """One click: ``position`` a voxel ``(k, j, i)`` of the case; ``positive`` True adds the
    voxel's region to the class, False takes it out."""

    position: tuple[int, int, int]
    positive: bool


@dataclass(frozen=True, eq=False)
class ClickSegmentation:
    """The labels after the clicks (a new ``(k, j, i)`` array) and the voxels that changed:
    ``added`` became the class, ``removed`` went from the class to background (both bool,
    the case's shape); ``box`` is the region re-segmented."""

    labels: np.ndarray
    added: np.ndarray
    removed: np.ndarray
    box: BBox


def check_clicks(clicks: Sequence[Click], shape: tuple[int, ...], slice_index: int | None) -> None:
    """One-line AlsegError for no click, too many, a click outside the case or off the slice."""
    if not clicks:
        raise AlsegError("no clicks: click inside the structure (positive) or in what to take out (negative)")
    if len(clicks) > MAX_CLICKS:
        raise AlsegError(f"{len(clicks)} clicks on one item: at most {MAX_CLICKS}")
    for click in clicks:
        if len(click.position) != 3 or not all(0 <= p < n for p, n in zip(click.position, shape)):
            raise AlsegError(f"click at {tuple(click.position)} lies outside the case {tuple(shape)}")
        if slice_index is not None and click.position[0] != slice_index:
            raise AlsegError(f"click on slice {click.position[0]}: this item is slice {slice_index}")


def click_box(shape: tuple[int, int, int], clicks: Sequence[Click], spacing: Sequence[float], *,
              slice_index: int | None = None, extent: np.ndarray | None = None,
              margin_mm: float = BOX_MARGIN_MM) -> BBox:
    """The half-open box ``((k0, k1), (j0, j1), (i0, i1))`` to re-segment: the clicks' bounds
    (and ``extent``'s, a bool mask of the class as it stands or as the model sees it) grown
    by ``margin_mm`` per axis in mm, clamped to the case; only slice ``slice_index`` along k
    in a slice project."""
    points = np.array([click.position for click in clicks], dtype=int)
    low, high = points.min(axis=0), points.max(axis=0)
    if extent is not None and extent.any():
        where = [np.flatnonzero(extent.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
        low = np.minimum(low, [w[0] for w in where])
        high = np.maximum(high, [w[-1] for w in where])
    box = []
    for axis in range(3):
        reach = int(np.ceil(margin_mm / float(spacing[axis])))
        box.append((max(0, int(low[axis]) - reach), min(shape[axis], int(high[axis]) + reach + 1)))
    if slice_index is not None:
        box[0] = (int(slice_index), int(slice_index) + 1)
    return tuple(box)


def segment_with_clicks(image: np.ndarray, labels: np.ndarray, class_id: int, clicks: Sequence[Click], *,
                        spacing: Sequence[float], slice_index: int | None = None,
                        prior: np.ndarray | None = None, margin_mm: float = BOX_MARGIN_MM) -> ClickSegmentation:
    """Class ``class_id`` re-segmented near ``clicks`` from ``image`` ``(C, k, j, i)``.

    ``labels`` ``(k, j, i)`` are the labels being edited (not changed); ``spacing`` the voxel
    size ``(k, j, i)`` in mm; ``slice_index`` keeps the work on one slice (slice projects);
    ``prior`` ``(k, j, i)`` is the model's probability of the class, or None (model-free).
    """
    image = np.asarray(image, dtype=np.float32)
    labels = np.asarray(labels)
    if image.ndim != 4 or image.shape[1:] != labels.shape:
        raise AlsegError(f"image {image.shape} and labels {labels.shape} do not match (C, k, j, i)")
    if int(class_id) <= 0:
        raise AlsegError("choose a class to click (background cannot be clicked)")
    check_clicks(clicks, labels.shape, slice_index)
    extent = labels == class_id
    if prior is not None:
        extent = extent | (np.asarray(prior) > 0.5)
    box = click_box(labels.shape, clicks, spacing, slice_index=slice_index, extent=extent, margin_mm=margin_mm)
    window = tuple(slice(a, b) for a, b in box)
    local = [Click(_shifted(click.position, box), click.positive) for click in clicks]
    every_channel = (slice(None), *window)
    region, claimed = _flood(image[every_channel], labels[window], int(class_id), local, spacing,
                             None if prior is None else np.asarray(prior, dtype=np.float32)[window])
    return _write(labels, class_id, region, claimed, box)


def _flood(image: np.ndarray, labels: np.ndarray, class_id: int, clicks: Sequence[Click],
           spacing: Sequence[float], prior: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The class in the box (bool, the box's shape): what the prior holds (the class as
    labelled, and the model's probability > 0.5), plus the voxels like a positive click and
    connected to it, less what the negative clicks take (:func:`_cut`); and the part of it a
    positive click claims from other classes (like the click, connected to it)."""
    positive = [click for click in clicks if click.positive]
    negative = [click for click in clicks if not click.positive]
    raw, smooth = _intensities(image, spacing)
    region = (labels == class_id) | _click_balls(labels.shape, positive, spacing)
    if prior is not None:
        region |= prior > 0.5
    claimed = np.zeros_like(region)
    if positive:
        claimed = _connected_to(_like(raw, smooth, positive) | _click_balls(labels.shape, positive, spacing),
                                [click.position for click in positive])
        region &= (labels == 0) | (labels == class_id)
        region |= _connected_to(claimed | region, [click.position for click in positive])
    else:
        region &= (labels == 0) | (labels == class_id)
    if negative:
        region = _cut(region, _like(raw, smooth, negative), negative, positive, spacing)
    return region, claimed & region


def _cut(region: np.ndarray, like: np.ndarray, negative: Sequence[Click], positive: Sequence[Click],
         spacing: Sequence[float]) -> np.ndarray:
    """``region`` less what the negative clicks take: the part of it like a negative click
    (``like``) and connected to one, but never what lies geodesically nearer (paths inside
    the region, mm) to a positive click than to every negative one."""
    balls = _click_balls(region.shape, negative, spacing)
    taken = _connected_to((region & like) | balls, [click.position for click in negative])
    if positive:
        taken &= _nearer_to(region | balls, negative, positive, spacing)
    return region & ~taken & ~balls


def _intensities(image: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The channels scaled (:func:`_normalised`), raw and smoothed by :data:`SMOOTH_MM` (noise)."""
    planar = image.shape[1] == 1
    sigma = [0.0 if planar else SMOOTH_MM / spacing[0]] + [SMOOTH_MM / s for s in spacing[1:]]
    raw = _normalised(image)
    return raw, np.stack([ndimage.gaussian_filter(channel, sigma) for channel in raw])


def _like(raw: np.ndarray, smooth: np.ndarray, clicks: Sequence[Click]) -> np.ndarray:
    """Voxels within a click's tolerance (:func:`_tolerance`) of its intensity in every
    channel: on the smoothed image, grown up to :data:`EDGE_REACH` voxels into where the raw
    image is within it (the smoothing blurs edges: without this a structure would shrink all
    round)."""
    like, raw_like = np.zeros(raw.shape[1:], bool), np.zeros(raw.shape[1:], bool)
    for click in clicks:
        at_click = (slice(None), *click.position)
        centre = smooth[at_click][:, None, None, None]
        tolerance = _tolerance(raw, click)[:, None, None, None]
        like |= (np.abs(smooth - centre) <= tolerance).all(axis=0)
        raw_like |= (np.abs(raw - centre) <= tolerance).all(axis=0)
    return like | ndimage.binary_dilation(like, iterations=EDGE_REACH, mask=raw_like)


def _tolerance(raw: np.ndarray, click: Click) -> np.ndarray:
    """Per channel, how far from a click's intensity a voxel may lie and still be like it:
    :data:`LOCAL_SPREADS` SDs of the raw channel around the click, between
    :data:`MIN_TOLERANCE` and :data:`TOLERANCE` (a smooth region floods less far than a
    textured lesion)."""
    window = tuple(slice(max(0, p - LOCAL_REACH), p + LOCAL_REACH + 1) for p in click.position)
    every_channel = (slice(None), *window)
    spread = raw[every_channel].reshape(len(raw), -1).std(axis=1)
    return np.clip(LOCAL_SPREADS * spread, MIN_TOLERANCE, TOLERANCE)


def _nearer_to(region: np.ndarray, negative: Sequence[Click], positive: Sequence[Click],
               spacing: Sequence[float]) -> np.ndarray:
    """Voxels of ``region`` whose path inside it (mm) to a negative click is shorter than to
    every positive click (unreachable from both counts as nearer the negative)."""
    from skimage.graph import MCP_Geometric

    planar = region.shape[0] == 1
    flat = (lambda a: a[0]) if planar else (lambda a: a)
    point = (lambda p: tuple(p[1:])) if planar else tuple
    sampling = tuple(spacing[1:]) if planar else tuple(spacing)
    costs = flat(np.where(region, 1.0, np.inf))
    distances = []
    for group in (negative, positive):
        local = costs.copy()
        for click in group:
            local[point(click.position)] = 1.0
        found, _ = MCP_Geometric(local, sampling=sampling).find_costs([point(c.position) for c in group])
        distances.append(found.reshape(region.shape))
    return region & (distances[0] <= distances[1])


def _normalised(image: np.ndarray) -> np.ndarray:
    """Each channel scaled to its 2-98 % range (so one tolerance suits every channel)."""
    out = np.empty_like(image)
    for index, channel in enumerate(image):
        low, high = np.percentile(channel, (2.0, 98.0))
        out[index] = (channel - low) / max(float(high - low), 1e-6)
    return out


def _click_balls(shape: tuple[int, ...], clicks: Sequence[Click], spacing: Sequence[float],
                 radius_mm: float = SEED_RADIUS_MM) -> np.ndarray:
    """Balls of ``radius_mm`` around the clicks (at least the clicked voxels), in the box."""
    balls = np.zeros(shape, bool)
    for click in clicks:
        window, grids = [], []
        for axis, (p, n) in enumerate(zip(click.position, shape)):
            reach = int(radius_mm // float(spacing[axis])) if n > 1 else 0
            lo, hi = max(0, p - reach), min(n, p + reach + 1)
            window.append(slice(lo, hi))
            grids.append((np.arange(lo, hi) - p) * float(spacing[axis]))
        k, j, i = np.meshgrid(*grids, indexing="ij")
        balls[tuple(window)] |= k ** 2 + j ** 2 + i ** 2 <= radius_mm ** 2
        balls[tuple(click.position)] = True
    return balls


def _connected_to(region: np.ndarray, points: Sequence[tuple[int, ...]]) -> np.ndarray:
    """The parts of ``region`` connected (face neighbours) to one of ``points``."""
    components, _ = ndimage.label(region)
    keep = {int(components[tuple(p)]) for p in points} - {0}
    return np.isin(components, sorted(keep)) if keep else np.zeros_like(region)


def _shifted(position: tuple[int, int, int], box: BBox) -> tuple[int, int, int]:
    """A voxel's position inside ``box``, counted from the box's low corner."""
    k, j, i = (int(p) - low for p, (low, _) in zip(position, box))
    return k, j, i


def _write(labels: np.ndarray, class_id: int, region: np.ndarray, claimed: np.ndarray, box: BBox) -> ClickSegmentation:
    """The labels with the box's class replaced by ``region``, over background, the class and
    what a positive click ``claimed`` only."""
    window = tuple(slice(a, b) for a, b in box)
    result = labels.copy()
    inside = result[window]
    writable = (inside == 0) | (inside == class_id) | claimed
    inside[writable & region] = class_id
    inside[writable & ~region & (inside == class_id)] = 0
    added = (result == class_id) & (labels != class_id)
    removed = (labels == class_id) & (result != class_id)
    return ClickSegmentation(result, added, removed, box)
