"""What finishing one item costs the annotator, in seconds: known (the cohort benchmark) or expected.

The seconds come from a stated model, :class:`SecondsCosts`, not from a stopwatch: the
simulated annotator spends none. Tracing pays for the true outline; correcting pays for
the outline it must **redraw**, the part of the true outline that lies farther than
``tolerance_mm`` from the prefill's own outline (an outline a voxel off is left alone, as
an annotator leaves it), plus one click per stray component to erase; clicking pays per
click and for the outline still to redraw after them; reviewing a prefill pays per slice
that shows a predicted structure. The older measure, the *changed* boundary (every
segment that moved, :func:`~napari_alseg.effort.boundary.traced_boundary` with ``original``), is
reported beside the redrawn one so the two can be compared. Without the ground truth,
:func:`expected_seconds` prices correcting a prediction from the prediction alone (the
seconds-priced engines and the dock's estimate of the time left).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .effort.boundary import boundary_length, traced_boundary
from .effort.seconds import CLICK_SECONDS_PRIOR
from .errors import AlsegError

Spacing = tuple[float, float]


@dataclass(frozen=True)
class SecondsCosts:
    """The annotator's time model (seconds), stated and configurable (``--costs FILE.json``).

    ``trace_seconds_per_mm``: outlining a structure with a pen or mouse, 0.5 s/mm (2 mm/s:
    a 60 mm outline in 30 s, a tumour case of ~7 000 mm of outline in about an hour, the
    order commonly reported for delineating one brain-tumour case by hand). ``redraw_seconds_per_mm``: the same
    for an outline redrawn in a correction. ``click_seconds``: one click of the click tool
    or one fill-erase, :data:`~napari_alseg.effort.seconds.CLICK_SECONDS_PRIOR` (the product's
    prior until the annotator's own timed clicks replace it). ``review_seconds_per_slice``:
    looking over a prefill, per slice showing a predicted structure (1 s: scrolling at a
    reading pace). ``tolerance_mm``: a true outline within this distance of the prefill's
    is not redrawn (2 mm: within how far two raters' outlines differ on brain MRI); where
    pixels are coarser, within one pixel (its diagonal) is not redrawn either, since one
    pixel is the smallest change the brush makes (:func:`tolerance_for`). ``accept_dice``: an accepted pseudo-label below this Dice against the
    ground truth is an error. Replace any of them with your own measurements: the widget
    records the seconds of every submit (``alseg status`` fits seconds per outline).
    """

    trace_seconds_per_mm: float = 0.5
    redraw_seconds_per_mm: float = 0.5
    click_seconds: float = CLICK_SECONDS_PRIOR
    review_seconds_per_slice: float = 1.0
    tolerance_mm: float = 2.0
    accept_dice: float = 0.8

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise AlsegError(f"cost {item.name} must be a number >= 0, got {value!r}")
        if self.accept_dice > 1:
            raise AlsegError(f"cost accept_dice must be at most 1, got {self.accept_dice}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def load_costs(path: str | Path | None) -> SecondsCosts:
    """The costs of a JSON file (keys left out keep the defaults); the defaults for None."""
    if path is None:
        return SecondsCosts()
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AlsegError(f"costs {path}: {error}") from None
    return costs_from_dict(data, str(path))


def costs_from_dict(data: Mapping[str, Any], where: str = "costs") -> SecondsCosts:
    """Costs from JSON values (numbers, or text that reads as one); one AlsegError line otherwise."""
    known = {item.name for item in fields(SecondsCosts)}
    if not isinstance(data, Mapping) or set(data) - known:
        unknown = sorted(set(data) - known) if isinstance(data, Mapping) else data
        raise AlsegError(f"{where}: unknown keys {unknown}; valid: {sorted(known)}")
    try:
        values = {key: float(value) for key, value in data.items()}
    except (TypeError, ValueError) as error:
        raise AlsegError(f"{where}: every cost must be a number ({error})") from None
    return SecondsCosts(**values)


@dataclass(frozen=True)
class Redraw:
    """Correcting a prefill: ``mm`` of true outline to redraw (beyond the tolerance),
    ``erase_clicks`` stray components to fill away, and ``changed_mm``, every outline
    segment that differs (the older, stricter measure)."""

    mm: float
    erase_clicks: int
    changed_mm: float


def trace_mm(truth: np.ndarray, classes: Iterable[int], spacing: Spacing) -> float:
    """The outline of ``truth`` (a slice ``(j, i)`` or volume ``(k, j, i)``) traced from scratch,
    slice by slice, each boundary two classes share once."""
    return traced_boundary(truth, classes, spacing).mm


def tolerance_for(tolerance_mm: float, spacing: Spacing) -> float:
    """The distance (mm) an outline may be off and not be redrawn: ``tolerance_mm``, or one
    pixel's diagonal where that is larger (an outline one pixel off, straight or diagonally,
    is the finest the brush can correct)."""
    return max(float(tolerance_mm), math.hypot(*spacing) + 1e-6)


def redraw(prefill: np.ndarray, truth: np.ndarray, classes: Iterable[int], spacing: Spacing,
           tolerance_mm: float) -> Redraw:
    """What correcting ``prefill`` into ``truth`` (same shape, a slice or a volume) takes.

    Per slice and class: the true outline's pixels farther than :func:`tolerance_for` from
    the prefill's outline, as a share of the true outline's length, are redrawn; each
    component of the prefill's class that holds none of the true class is one erase click
    (the widget's fill erases on the slice shown).
    """
    tolerance_mm = tolerance_for(tolerance_mm, spacing)
    prefill, truth = np.asarray(prefill), np.asarray(truth)
    if prefill.shape != truth.shape:
        raise AlsegError(f"prefill {prefill.shape} and truth {truth.shape} differ in shape")
    classes = list(classes)
    planes_p = prefill[np.newaxis] if prefill.ndim == 2 else prefill
    planes_t = truth[np.newaxis] if truth.ndim == 2 else truth
    mm, erase = 0.0, 0
    for class_id in classes:
        in_p, in_t = planes_p == class_id, planes_t == class_id
        for n in np.flatnonzero(in_p.any(axis=(1, 2)) | in_t.any(axis=(1, 2))):
            plane_mm, plane_erase = _redraw_plane(in_p[n], in_t[n], spacing, tolerance_mm)
            mm, erase = mm + plane_mm, erase + plane_erase
    changed = traced_boundary(truth, classes, spacing, original=prefill).mm
    return Redraw(mm, erase, changed)


def _redraw_plane(prefill: np.ndarray, truth: np.ndarray, spacing: Spacing, tolerance_mm: float) -> tuple[float, int]:
    erase = 0
    if prefill.any():
        components, count = ndimage.label(prefill)
        if count:
            touched = np.unique(components[truth & prefill])
            erase = count - int(np.count_nonzero(touched))
    if not truth.any():
        return 0.0, erase
    outline = boundary_length(truth, spacing).mm
    if not prefill.any():
        return outline, erase
    true_edge = truth & ~ndimage.binary_erosion(truth)
    prefill_edge = prefill & ~ndimage.binary_erosion(prefill)
    distance = ndimage.distance_transform_edt(~prefill_edge, sampling=spacing)
    far = float(np.mean(distance[true_edge] > tolerance_mm))
    return outline * far, erase


def review_slices(prefill: np.ndarray) -> int:
    """Slices of ``prefill`` (a slice or a volume) showing a structure; at least 1 (the one opened)."""
    planes = np.asarray(prefill)
    planes = planes[np.newaxis] if planes.ndim == 2 else planes
    return max(int(np.count_nonzero(planes.any(axis=(1, 2)))), 1)


def expected_seconds(probs: np.ndarray, spacing: Spacing, costs: SecondsCosts = SecondsCosts()) -> float:
    """Expected seconds to review and correct the prediction ``probs`` ``(C, H, W)`` or ``(C, k, j, i)``.

    Reviewing: every slice showing a predicted structure. Redrawing: each predicted class's
    outline times its expected disagreement ``1 - soft Dice`` (the Dice the model itself
    expects of its argmax, were its probabilities calibrated). With nothing predicted, the
    outline to trace is unknown: NaN (the caller prices it at the pool's typical value).
    """
    probs = np.asarray(probs, dtype=np.float32)
    hard = probs.argmax(axis=0)
    classes = [c for c in range(1, probs.shape[0]) if (hard == c).any()]
    if not classes:
        return math.nan
    redraw_mm = 0.0
    for class_id in classes:
        mask = hard == class_id
        soft = probs[class_id]
        expected_dice = 2.0 * float(soft[mask].sum()) / max(float(soft.sum()) + float(mask.sum()), 1e-9)
        redraw_mm += trace_mm(mask.astype(np.uint8), [1], spacing) * (1.0 - expected_dice)
    return costs.review_seconds_per_slice * review_slices(hard) + costs.redraw_seconds_per_mm * redraw_mm
