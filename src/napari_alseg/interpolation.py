"""Fill between slices: a structure traced on two slices, interpolated across the slices between.

Shape-based interpolation (Raya & Udupa 1990; Herman et al. 1992): each traced mask becomes a
signed distance map, the maps are blended linearly by the slice's position between the two,
and the blend's positive part is the in-between mask. A disc of radius 5 px and one of 15 px
ten slices apart give discs of radius 6, 7, ... 14 px between them. What tracing tools call
"interpolate" (ITK-SNAP) or "fill between slices" (3D Slicer) does the same job; this keeps
to plain numpy / SciPy so the session, the CLI and tests share it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import AlsegError

BACKGROUND = 0  # the value that means "background or not yet labelled" in a label volume


def fill_between_slices(labels: np.ndarray, class_id: int, first: int, last: int, *,
                        axis: int = 0) -> np.ndarray:
    """A copy of ``labels`` with class ``class_id`` interpolated between slices ``first`` and ``last``.

    ``labels`` is a 3D label volume (any integer dtype, e.g. ``(k, j, i)`` uint8/uint16);
    ``first`` and ``last`` index slices along ``axis`` (either order) on which ``class_id`` is
    traced. Each slice strictly between them gets the shape-based interpolation of the two
    masks (see :func:`interpolate_masks`), in pixels of the slice plane.

    Writing rule: a voxel on an in-between slice becomes ``class_id`` only where the
    interpolated mask covers it **and** it is currently background / unlabelled (0). Voxels
    of other classes are never overwritten, voxels already of ``class_id`` stay, and the two
    traced slices and every slice outside them are left as they are. ``labels`` itself is
    not changed; the caller diffs the result against it to see (and record) what was filled.

    Raises AlsegError (one line) for a volume that is not 3D, ``axis``/slices out of range,
    ``first == last`` or adjacent slices (nothing between), ``class_id`` 0 or beyond the
    dtype, or a class absent from either traced slice.
    """
    volume = np.asarray(labels)
    if volume.ndim != 3:
        raise AlsegError(f"fill between slices needs a 3D label volume, got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.integer):
        raise AlsegError(f"fill between slices needs integer labels, got {volume.dtype}")
    if not -3 <= axis < 3:
        raise AlsegError(f"axis {axis} is out of range for a 3D volume (0, 1 or 2)")
    axis %= 3
    count = volume.shape[axis]
    for name, index in (("first", first), ("last", last)):
        if not 0 <= int(index) < count:
            raise AlsegError(f"{name} slice {index} is out of range (0-{count - 1} along axis {axis})")
    low, high = sorted((int(first), int(last)))
    if high - low < 2:
        what = "the same slice" if low == high else "adjacent"
        raise AlsegError(f"slices {first} and {last} are {what}: no slice between them to fill")
    info = np.iinfo(volume.dtype)
    if int(class_id) == BACKGROUND or not info.min <= int(class_id) <= info.max:
        raise AlsegError(f"class {class_id} cannot be filled (background is 0; at most {info.max} "
                         f"in {volume.dtype})")
    moved = np.moveaxis(volume, axis, 0)
    start, end = moved[low] == class_id, moved[high] == class_id
    for index, mask in ((low, start), (high, end)):
        if not mask.any():
            raise AlsegError(f"class {class_id} is not traced on slice {index}; trace it on both "
                             "slices first")
    filled = volume.copy()
    target = np.moveaxis(filled, axis, 0)  # a view: writes land in ``filled``
    for offset, mask in enumerate(interpolate_masks(start, end, high - low - 1), start=1):
        plane = target[low + offset]
        plane[mask & (plane == BACKGROUND)] = class_id
    return filled


def interpolate_masks(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """The ``steps`` masks evenly between two 2D masks, by blending their signed distances.

    ``start`` and ``end`` are boolean ``(rows, cols)`` masks (non-empty); the result is a
    boolean ``(steps, rows, cols)`` array, slice ``n`` at fraction ``(n + 1) / (steps + 1)`` of
    the way from ``start`` to ``end``. Distances are in pixels, so the plane is taken as
    isotropic. Outlines that do not overlap at all interpolate to little or nothing in the
    middle (the blend of two far-apart shapes is negative between them): trace a slice
    between them first.
    """
    start = np.asarray(start, bool)
    end = np.asarray(end, bool)
    if start.ndim != 2 or start.shape != end.shape:
        raise AlsegError(f"expected two 2D masks of one shape, got {start.shape} and {end.shape}")
    if steps < 0:
        raise AlsegError(f"steps must be 0 or more, got {steps}")
    start_distance, end_distance = signed_distance(start), signed_distance(end)
    fractions = np.arange(1, steps + 1, dtype=np.float64) / (steps + 1)
    blended = ((1.0 - fractions)[:, None, None] * start_distance
               + fractions[:, None, None] * end_distance)
    return blended > 0


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Distance (px) to the mask's outline, positive inside and negative outside.

    The outline lies on the pixel edges: a mask pixel next to the background is at +0.5,
    the background pixel beside it at -0.5. A mask that fills the plane is inside everywhere
    by the plane's diagonal, an empty one outside everywhere by as much.
    """
    mask = np.asarray(mask, bool)
    if mask.all() or not mask.any():
        diagonal = float(np.hypot(*mask.shape))
        return np.full(mask.shape, diagonal if mask.all() else -diagonal)
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, inside - 0.5, 0.5 - outside)
