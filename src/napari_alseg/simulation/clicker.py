"""The simulated clicker: clicks like DeepEdit's simulation until the item is good enough.

Each click goes to the centre of the largest error region (the voxel deepest inside it, in
mm): positive in a part of the structure that is missed, negative in a part wrongly
included. After each click the class is re-segmented from all clicks so far; the clicker
stops at Dice :data:`TARGET_DICE` or after :data:`MAX_CLICKS` clicks, and what is still
wrong is left for the brush. A click that makes the item worse is taken back (Ctrl+Z, as
an annotator who sees a region leak would) and the clicker stops there: clicking is not
helping this structure. Pure numpy: the caller supplies the segmenter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..clicks import Click

TARGET_DICE = 0.9
MAX_CLICKS = 10

Segmenter = Callable[[list[Click]], np.ndarray]  # clicks -> the class's mask (bool, (k, j, i))


@dataclass(frozen=True)
class ClickRun:
    """One structure clicked: ``dice[n]`` after ``n`` clicks (``dice[0]``: before any; a click
    taken back leaves the Dice before it), the clicks made (a taken-back one included: it
    cost the annotator a click), ``kept`` of them in the final mask (bool ``(k, j, i)``)."""

    dice: tuple[float, ...]
    clicks: tuple[Click, ...]
    mask: np.ndarray
    kept: int

    @property
    def clicks_to_target(self) -> int | None:
        """Clicks until Dice reached :data:`TARGET_DICE` (None: not within the run)."""
        return next((n for n, value in enumerate(self.dice) if value >= TARGET_DICE), None)


def item_region(shape: tuple[int, ...], slice_index: int | None) -> np.ndarray:
    """Bool ``shape`` ``(k, j, i)``: the whole case, or only slice ``slice_index`` of it."""
    region = np.zeros(shape, bool)
    region[slice(None) if slice_index is None else slice_index] = True
    return region


def largest_structure(truth: np.ndarray, region: np.ndarray, preferred: int | None = None) -> int | None:
    """The class to click in ``region`` of ``truth`` ``(k, j, i)``: ``preferred`` where the truth
    has it there, else the class with the most voxels there; None when there is none."""
    classes, sizes = np.unique(truth[region & (truth > 0)], return_counts=True)
    if not classes.size:
        return None
    return int(preferred) if preferred is not None and preferred in classes else int(classes[np.argmax(sizes)])


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool masks (1.0 when both are empty)."""
    total = int(mask.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(mask, truth).sum()) / total


def next_click(mask: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> Click | None:
    """The click at the centre of the largest error region of ``mask`` against ``truth``
    (bool ``(k, j, i)``, spacing in mm); None when they agree."""
    missed, extra = truth & ~mask, mask & ~truth
    best = None
    for error, positive in ((missed, True), (extra, False)):
        components, count = ndimage.label(error)
        if not count:
            continue
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        if best is None or sizes[largest - 1] > best[0]:
            best = (int(sizes[largest - 1]), components == largest, positive)
    if best is None:
        return None
    _, region, positive = best
    position = np.unravel_index(int(np.argmax(_depth(region, spacing))), region.shape)
    k, j, i = (int(p) for p in position)
    return Click((k, j, i), positive)


def _depth(region: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (mm) of each voxel of ``region`` to its edge: in the slice plane when the
    region lies on one slice (a slice item), else in 3D."""
    planes = np.flatnonzero(region.any(axis=(1, 2)))
    if len(planes) == 1:
        depth = np.zeros(region.shape)
        depth[planes[0]] = ndimage.distance_transform_edt(np.pad(region[planes[0]], 1),
                                                          sampling=spacing[1:])[1:-1, 1:-1]
        return depth
    return ndimage.distance_transform_edt(np.pad(region, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]


def click_until_good(truth: np.ndarray, segment: Segmenter, spacing: Sequence[float], *,
                     start: np.ndarray | None = None, target: float = TARGET_DICE,
                     max_clicks: int = MAX_CLICKS) -> ClickRun:
    """Click a structure (``truth`` bool ``(k, j, i)``) from ``start`` (the prefill's mask of it,
    or nothing) until Dice ``target`` or ``max_clicks`` clicks."""
    mask = np.zeros_like(truth) if start is None else start.copy()
    scores: list[float] = [dice(mask, truth)]
    clicks: list[Click] = []
    while scores[-1] < target and len(clicks) < max_clicks:
        click = next_click(mask, truth, spacing)
        if click is None:
            break
        clicks.append(click)
        after = segment(list(clicks))
        if dice(after, truth) < scores[-1]:  # worse: taken back, and no more clicks
            scores.append(scores[-1])
            return ClickRun(tuple(scores), tuple(clicks), mask, len(clicks) - 1)
        mask = after
        scores.append(dice(mask, truth))
    return ClickRun(tuple(scores), tuple(clicks), mask, len(clicks))
