"""Bounding boxes to zoom to: around an item's predicted foreground, slab by slab."""

from __future__ import annotations

import math

import numpy as np

from ..domain import BBox, QueryItem

BBOX_MARGIN = (2, 8, 8)  # voxels added on each side along (k, j, i)
BBOX_SLAB_VOXELS = 1 << 22  # voxels argmax-ed at once when boxing a prediction (32 MB of int64)


def item_bbox(probs: np.ndarray, item: QueryItem, case_shape: tuple[int, ...]) -> BBox:
    """Around the predicted foreground (an ROI: its class), whole region when none."""
    extent = _predicted_extent(probs, item.class_id)
    if extent is None:
        return whole_bbox(item, case_shape)
    margins = BBOX_MARGIN if item.slice_index is None else BBOX_MARGIN[1:]
    bounds = tuple((max(0, first - margin), min(size, stop + margin))
                   for (first, stop), margin, size in zip(extent, margins, probs.shape[1:]))
    return bounds if item.slice_index is None else ((item.slice_index, item.slice_index + 1), *bounds)


def _predicted_extent(probs: np.ndarray, class_id: int | None) -> list[tuple[int, int]] | None:
    """``(first, last + 1)`` per spatial axis of the voxels predicted ``class_id`` (None: any
    foreground), or None when there are none.

    Computed a slab of ``BBOX_SLAB_VOXELS`` at a time along the first axis: a whole CT-size
    argmax is 8 bytes a voxel (630 MB for 512 x 512 x 300) and its coordinates more.
    """
    spatial = probs.shape[1:]
    seen = [np.zeros(size, bool) for size in spatial]
    step = max(1, BBOX_SLAB_VOXELS // max(1, math.prod(spatial[1:])))
    for start in range(0, spatial[0], step):
        hard = probs[:, start:start + step].argmax(axis=0)
        predicted = hard == class_id if class_id is not None else hard > 0
        for axis in range(len(spatial)):
            hit = predicted.any(axis=tuple(other for other in range(len(spatial)) if other != axis))
            if axis == 0:
                seen[0][start:start + len(hit)] = hit
            else:
                seen[axis] |= hit
    if not seen[0].any():
        return None
    return [(int(np.argmax(hits)), len(hits) - int(np.argmax(hits[::-1]))) for hits in seen]


def whole_bbox(item: QueryItem, case_shape: tuple[int, ...]) -> BBox:
    whole = tuple((0, int(size)) for size in case_shape)
    return whole if item.slice_index is None else ((item.slice_index, item.slice_index + 1), *whole[1:])
