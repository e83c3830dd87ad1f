"""Where the work is in a case: the slice, box and class Go should show (issue 14 item 1),
and how its uncertainty reads at a glance (item 2).

A case suggestion is a whole volume; its middle slice often shows nothing of the structure.
These pure functions pick the slice where the model is least certain about a structure it
predicts (else where it predicts the most of one), the box around that doubt on the slice,
and the class that dominates it; and for the heat map, a contrast range from the case's own
doubtful voxels and the per-slice profile of its uncertainty. Plain numpy over arrays of the
case's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..domain import BBox
from ..errors import AlsegError

FOREGROUND_FLOOR = 0.05  # p(foreground) below this is background, however uncertain
BOX_FRACTION = 0.25  # the box holds the slice's voxels at this share of its peak value or more
BOX_MARGIN_PX = 4  # context around the box, in pixels of the slice


@dataclass(frozen=True)
class Focus:
    """Slice ``slice_index`` of a case, the box ``bbox`` on it (half-open voxel bounds
    ``((k, k + 1), (j0, j1), (i0, i1))``), the class to select (None: no preference) and
    ``reason``, the words for why (shown in the status line). ``profile`` is what the rule
    weighed on each slice, so the heat map's profile and legend show Go's own rule."""

    slice_index: int
    bbox: BBox
    class_id: int | None
    reason: str
    profile: np.ndarray | None = None  # (k,) the rule's per-slice sum; its peak is ``slice_index``


def focus_region(values: np.ndarray, *, fraction: float = BOX_FRACTION,
                 margin: int = BOX_MARGIN_PX) -> tuple[int, BBox] | None:
    """The slice with the largest sum of ``values`` ``(k, j, i)`` (≥ 0: an uncertainty or a
    probability) and the box around its voxels at ``fraction`` of that slice's peak or more,
    widened by ``margin`` px and clipped to the slice. None when ``values`` are all 0."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    if values.ndim != 3:
        raise AlsegError(f"a focus needs a (k, j, i) volume, got shape {values.shape}")
    values = np.clip(values, 0.0, None)
    per_slice = values.sum(axis=(1, 2))
    if not per_slice.any():
        return None
    k = int(np.argmax(per_slice))
    plane = values[k]
    rows, cols = np.nonzero(plane >= fraction * plane.max())
    j0, j1 = max(int(rows.min()) - margin, 0), min(int(rows.max()) + 1 + margin, plane.shape[0])
    i0, i1 = max(int(cols.min()) - margin, 0), min(int(cols.max()) + 1 + margin, plane.shape[1])
    return k, ((k, k + 1), (j0, j1), (i0, i1))


def focus_from_probabilities(probabilities: np.ndarray) -> Focus | None:
    """Where to look in a case from its softmax ``(C, k, j, i)``: the slice and box where the
    prediction's entropy (nats) is highest over the structure it predicts (argmax not
    background: an immature model's doubt over plain background, or its padding artefacts at
    the volume's edges, is not the work); if it is sure there, where it predicts the most
    structure; if it predicts none, where it is least certain over plausible structure
    (p(foreground) ≥ :data:`FOREGROUND_FLOOR`). The class is the foreground class most probable
    over the box. None when nothing is predicted or doubted anywhere."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 4 or probabilities.shape[0] < 2:
        raise AlsegError(f"a focus needs probabilities (C >= 2, k, j, i), got shape {probabilities.shape}")
    foreground = 1.0 - probabilities[0]
    structure = probabilities.argmax(axis=0) != 0
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=0)
    candidates = (
        (np.where(structure, entropy, 0.0), "where the model is least certain about the structure it predicts"),
        (np.where(structure, foreground, 0.0), "where the model predicts the structure"),
        (np.where(foreground >= FOREGROUND_FLOOR, entropy, 0.0), "where the model is least certain"),
    )
    for values, reason in candidates:
        if values.max() < 1e-3:
            continue
        found = focus_region(values)
        if found is not None:
            break
    else:
        return None
    k, bbox = found
    (_, _), (j0, j1), (i0, i1) = bbox
    mass = probabilities[1:, k, j0:j1, i0:i1].sum(axis=(1, 2))
    class_id = int(np.argmax(mass)) + 1 if mass.max() > 0 else None
    return Focus(k, bbox, class_id, reason, np.clip(values, 0.0, None).sum(axis=(1, 2)))


DOUBT_SMOOTHING_PX = 2.0  # in-plane Gaussian σ (px) of the doubt a person reads and Go weighs


def shown_doubt(heat: np.ndarray, body: np.ndarray) -> np.ndarray:
    """The heat map as shown: ``heat`` ``(k, j, i)`` smoothed in-plane (σ =
    :data:`DOUBT_SMOOTHING_PX`) and 0 outside ``body`` (same shape, bool).

    A young net's MC-dropout variance varies on its up-sampling grid (a 2-4 px chequerboard
    that read as stripes on screen, issue 22 item 9); doubt worth a look is regional, so a
    2 px blur keeps it. The mask comes after the blur, so no doubt bleeds into air."""
    smooth = ndimage.gaussian_filter(np.asarray(heat, dtype=np.float32), (0.0, DOUBT_SMOOTHING_PX, DOUBT_SMOOTHING_PX))
    return (smooth * np.asarray(body, bool)).astype(np.float32)


DOUBT_SHARE = 0.01  # voxels above this share of the case's peak are the doubtful ones
HEAT_MAP_PERCENTILE = 95.0  # the colour range tops out at this percentile of the doubtful voxels ...
HEAT_MAP_FLOOR_PERCENTILE = 50.0  # ... and starts at this one: the less doubtful half adds no colour


@dataclass(frozen=True)
class HeatMapScale:
    """How to show one case's uncertainty ``(k, j, i)``: the colour range ``low``..``high``
    (the map's own units), the per-slice mean ``profile`` (k,) of what is shown (the values
    clipped to it, less ``low``), and the slice ``peak_slice`` where that is highest.
    ``focus``: the case's :class:`Focus` by the rule Go follows (None: the model predicts no
    structure), so the legend and profile name Go's slice, not a second rule's."""

    low: float
    high: float
    profile: np.ndarray
    peak_slice: int
    focus: Focus | None = None

    @property
    def shown_profile(self) -> np.ndarray:
        """The per-slice profile to draw: Go's rule where there is a focus, else the colours'."""
        return self.focus.profile if self.focus is not None and self.focus.profile is not None else self.profile

    @property
    def doubt_slice(self) -> int:
        """The slice the legend names as most doubtful: Go's where there is a focus."""
        return self.focus.slice_index if self.focus is not None else self.peak_slice


def heat_map_scale(values: np.ndarray, focus: Focus | None = None) -> HeatMapScale:
    """The colour range from the case's own doubt, not the whole volume's: a lesion a fraction
    of a percent of the volume would sit below a whole-volume percentile and saturate, or be
    lost in it. ``low`` and ``high`` are the :data:`HEAT_MAP_FLOOR_PERCENTILE` and
    :data:`HEAT_MAP_PERCENTILE` of the voxels above :data:`DOUBT_SHARE` of the peak (never a
    range below a tiny positive width). Starting at the median, not at 0, keeps colour off the
    mildly doubtful bulk of a young model's brain, which it otherwise covered; the doubt worth
    a look stands out on readable anatomy."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3:
        raise AlsegError(f"a heat map is a (k, j, i) volume, got shape {values.shape}")
    finite = np.nan_to_num(values, nan=0.0)
    low, peak = float(finite.min()), float(finite.max())
    doubtful = finite[finite > low + DOUBT_SHARE * (peak - low)]
    if doubtful.size:
        low, high = (float(v) for v in np.percentile(doubtful, (HEAT_MAP_FLOOR_PERCENTILE, HEAT_MAP_PERCENTILE)))
    else:
        high = peak
    high = max(high, low + 1e-6)
    profile = (np.clip(finite, low, high) - low).mean(axis=(1, 2))  # what is shown: colour above `low`
    return HeatMapScale(low, high, profile, int(np.argmax(profile)), focus)
