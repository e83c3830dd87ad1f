"""Annotation effort as the boundary length an annotator has to trace (docs/METHODS.md §7.3).

Estimator: the iso-0.5 contour of the zero-padded mask (marching squares, as
``skimage.measure.find_contours`` draws it), measured as a polyline. Its vertices sit on
the midpoints of the pixel edges between inside and outside, so it follows the line a person traces along the mask's
outline: nearly rotation-invariant (oblique edges and disks measure at most ~7 % long,
where counting pixel edges would be 27 % long on a disk and 41 % on a 45° edge), and an
axis-aligned edge measures 1 px per pixel. The one cost: each convex 90° pixel corner is
cut by a diagonal, so a k×k square measures ``4k - (4 - 2√2) ≈ 4k - 1.17`` px. Anisotropic
pixels are handled by scaling the contour (rows × ``spacing[0]``, columns × ``spacing[1]``)
before measuring. Zero padding closes contours at the image border; every component and
hole adds its own contour.

Because marching squares is local, two masks that agree on a 2×2 pixel cell produce the
same oriented contour segment there; :func:`changed_boundary_length` relies on this. It
also means no contour needs assembling: each 2×2 cell's four corners (one of 16 codes)
give its segments, so a length is a histogram of codes times a table of segment lengths,
in NumPy, without the Python loop of ``find_contours`` (which cost most of a Submit and
of a refreshed queue on a 3D case).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import AlsegError

Spacing = tuple[float, float]


@dataclass(frozen=True)
class BoundaryLength:
    """A traced length in pixels (``px``) and in millimetres (``mm``)."""

    px: float
    mm: float


def boundary_length(mask: np.ndarray, spacing: Spacing = (1.0, 1.0)) -> BoundaryLength:
    """Length of all contours (outer outlines and holes) of a 2D mask ``(H, W)``.

    ``spacing`` is the pixel size in mm along ``(rows, cols)``. An empty mask has length 0.
    """
    px, mm = _plane_lengths(_as_mask(mask)[np.newaxis], _checked_spacing(spacing))
    return BoundaryLength(float(px[0]), float(mm[0]))


def shared_boundary_length(
    mask_a: np.ndarray, mask_b: np.ndarray, spacing: Spacing = (1.0, 1.0)
) -> BoundaryLength:
    """Length of the boundary where two disjoint 2D masks touch.

    ``(P(a) + P(b) - P(a ∪ b)) / 2``: the touching edge is in both outlines and in neither
    part of the union's. Tracing ``b`` next to an already delineated ``a`` costs
    ``P(b) - shared``. Clipped at 0 (diagonal contacts can give a tiny negative value).
    """
    mask_a, mask_b = _same_shape(_as_mask(mask_a), _as_mask(mask_b))
    px, mm = _plane_shared(mask_a[np.newaxis], mask_b[np.newaxis], _checked_spacing(spacing))
    return BoundaryLength(float(px[0]), float(mm[0]))


def changed_boundary_length(
    original_mask: np.ndarray, final_mask: np.ndarray, spacing: Spacing = (1.0, 1.0)
) -> BoundaryLength:
    """Effort of correcting a pre-filled prediction: the boundary of ``final`` not in ``original``.

    Compares oriented contour segments exactly: a segment of the final contour is free when
    the original contour has the same segment with the inside on the same side. Redrawn or
    added outline counts; whole components erased count 0 (one fill click in napari, no
    tracing). Unchanged mask → 0; empty original → the full :func:`boundary_length`.
    """
    original_mask, final_mask = _same_shape(_as_mask(original_mask), _as_mask(final_mask))
    px, mm = _plane_changed(original_mask[np.newaxis], final_mask[np.newaxis], _checked_spacing(spacing))
    return BoundaryLength(float(px[0]), float(mm[0]))


def slice_trace_length(plane: np.ndarray, classes: Iterable[int], spacing: Spacing) -> BoundaryLength:
    """Boundary to trace on one slice ``(j, i)``: every class outline, each shared boundary once."""
    return traced_boundary(_as_plane(plane), classes, spacing)


def roi_trace_length(mask: np.ndarray, neighbours: Iterable[np.ndarray], spacing: Spacing) -> BoundaryLength:
    """A traced ROI's outline minus what it shares with the ``neighbours`` already delineated on
    its slice (masks ``(j, i)``): that line exists (docs/METHODS.md §7.3)."""
    pixel_mm = _checked_spacing(spacing)
    mask = _as_mask(mask)[np.newaxis]
    px, mm = _plane_lengths(mask, pixel_mm)
    for neighbour in neighbours:
        _, neighbour = _same_shape(mask[0], _as_mask(neighbour))
        shared_px, shared_mm = _plane_shared(mask, neighbour[np.newaxis], pixel_mm)
        px, mm = px - shared_px, mm - shared_mm
    return BoundaryLength(max(float(px[0]), 0.0), max(float(mm[0]), 0.0))


def traced_boundary(labels: np.ndarray, classes: Iterable[int], spacing: Spacing,
                    original: np.ndarray | None = None) -> BoundaryLength:
    """Boundary length of a slice ``(j, i)`` or volume ``(k, j, i)`` of ``classes``, summed over slices.

    With ``original`` (a corrected prediction, same shape) only the boundary changed counts;
    otherwise, per slice, every class outline with each boundary two classes share counted
    once (clipped at 0 per slice). All slices are measured at once.
    """
    labels = np.asarray(labels)
    planes = labels[np.newaxis] if labels.ndim == 2 else labels
    pixel_mm = _checked_spacing(spacing)
    classes = list(classes)
    originals = None if original is None else np.asarray(original).reshape(planes.shape)
    planes, originals = _cropped_to_content(planes, originals)
    if originals is not None:
        changed = [_plane_changed(originals == c, planes == c, pixel_mm) for c in classes]
        return BoundaryLength(float(sum(px.sum() for px, _ in changed)), float(sum(mm.sum() for _, mm in changed)))
    masks = {c: planes == c for c in classes}
    masks = {c: mask for c, mask in masks.items() if mask.any()}
    px = np.zeros(len(planes))
    mm = np.zeros(len(planes))
    for mask in masks.values():
        length_px, length_mm = _plane_lengths(mask, pixel_mm)
        px, mm = px + length_px, mm + length_mm
    present = sorted(masks)
    for index, a in enumerate(present):
        for b in present[index + 1:]:
            shared_px, shared_mm = _plane_shared(masks[a], masks[b], pixel_mm)
            px, mm = px - shared_px, mm - shared_mm
    return BoundaryLength(float(np.maximum(px, 0.0).sum()), float(np.maximum(mm, 0.0).sum()))


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AlsegError(f"expected a 2D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _cropped_to_content(planes: np.ndarray, originals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The slices ``(K, H, W)`` with any label, cut to the labels' in-plane box plus a 1-pixel
    margin: a contour lies in cells touching a labelled pixel, and the cut-away pixels are
    zeros like the padding, so every length is unchanged and a small lesion in a 128³ volume
    is measured in its box, not over the whole volume."""
    content = planes != 0 if originals is None else (planes != 0) | (originals != 0)
    slices = np.flatnonzero(content.any(axis=(1, 2)))
    if slices.size == 0:
        return planes[:0], None if originals is None else originals[:0]
    rows = np.flatnonzero(content.any(axis=(0, 2)))
    cols = np.flatnonzero(content.any(axis=(0, 1)))
    box = (slices, slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    cut = planes[box[0]][:, box[1], box[2]]
    return cut, None if originals is None else originals[box[0]][:, box[1], box[2]]


def _as_plane(plane: np.ndarray) -> np.ndarray:
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise AlsegError(f"expected a 2D slice, got shape {plane.shape}")
    return plane


def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise AlsegError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _checked_spacing(spacing: Spacing) -> np.ndarray:
    values = np.asarray(spacing, dtype=float)
    if values.shape != (2,) or not (np.isfinite(values).all() and (values > 0).all()):
        raise AlsegError(f"spacing must be two positive numbers (mm), got {values.tolist()}")
    return values


# Marching squares on a binary mask at level 0.5. A cell's corners are bits: top-left 1,
# top-right 2, bottom-right 4, bottom-left 8 (1 = inside). Edge midpoints in cell
# coordinates (row, col): top, right, bottom, left.
_EDGES = {"T": (0.0, 0.5), "R": (0.5, 1.0), "B": (1.0, 0.5), "L": (0.5, 0.0)}
_CORNERS = {1: (0.0, 0.0), 2: (0.0, 1.0), 4: (1.0, 1.0), 8: (1.0, 0.0)}
_EDGE_CORNERS = {"T": (1, 2), "R": (2, 4), "B": (4, 8), "L": (8, 1)}
_SADDLES = {5: (("T", "L", 1), ("R", "B", 4)), 10: (("T", "R", 2), ("B", "L", 8))}  # inside corners kept apart


def _cell_segments(code: int) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The oriented segments ``(start, end)`` of one cell code, inside on the left of start -> end."""
    if code in _SADDLES:
        pairs = list(_SADDLES[code])
    else:
        crossed = [edge for edge, (u, v) in _EDGE_CORNERS.items() if bool(code & u) != bool(code & v)]
        inside = [corner for corner in _CORNERS if code & corner]
        pairs = [(crossed[0], crossed[1], inside[0])] if crossed else []
    segments = []
    for a, b, corner in pairs:
        start, end, ref = np.array(_EDGES[a]), np.array(_EDGES[b]), np.array(_CORNERS[corner])
        d, v = end - start, ref - start
        if d[0] * v[1] - d[1] * v[0] > 0:
            start, end = end, start
        segments.append((tuple(start), tuple(end)))
    return segments


_SEGMENTS = [_cell_segments(code) for code in range(16)]
_SEGMENT_TABLE = np.zeros((16, 2, 2, 2))  # [code, slot, start/end, row/col]
for _code, _segments in enumerate(_SEGMENTS):
    for _slot, _segment in enumerate(_segments):
        _SEGMENT_TABLE[_code, _slot] = _segment


def _cell_codes(masks: np.ndarray) -> np.ndarray:
    """Codes ``(K, H+1, W+1)`` of the cells of each zero-padded plane of ``masks (K, H, W)``;
    cell ``(r, c)`` has its top-left corner at pixel ``(r-1, c-1)``."""
    padded = np.pad(masks.astype(np.uint8, copy=False), ((0, 0), (1, 1), (1, 1)))
    return padded[:, :-1, :-1] | padded[:, :-1, 1:] << 1 | padded[:, 1:, 1:] << 2 | padded[:, 1:, :-1] << 3


@functools.lru_cache(maxsize=32)
def _length_tables(spacing: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per spacing ``(row, col)`` mm, once: each cell code's contour length ``(16, 2)`` [px, mm],
    and ``(256, 2)`` [px, mm] indexed ``16 * final_code + original_code``: the length of the
    final cell's segments the original cell lacks. A segment lies inside its cell, so matching
    oriented segments cell by cell is matching them over the whole contour."""
    steps = _SEGMENT_TABLE[:, :, 1] - _SEGMENT_TABLE[:, :, 0]  # (16, 2 slots, 2); empty slots 0
    slots = np.stack([np.linalg.norm(steps, axis=2), np.linalg.norm(steps * np.asarray(spacing), axis=2)], axis=-1)
    changed = np.zeros((256, 2))
    for final in range(16):
        for original in range(16):
            for slot, segment in enumerate(_SEGMENTS[final]):
                if segment not in _SEGMENTS[original]:
                    changed[16 * final + original] += slots[final, slot]
    return slots.sum(axis=1), changed


def _per_plane(index: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``weights[index]`` ``(n_bins, 2)`` [px, mm] over each plane of ``index (K, ...)``:
    one histogram per plane, ``(K,)`` px and ``(K,)`` mm."""
    n_bins = len(weights)
    offsets = (np.arange(len(index)) * n_bins).reshape((-1,) + (1,) * (index.ndim - 1))
    counts = np.bincount((index + offsets).ravel(), minlength=len(index) * n_bins)
    sums = counts.reshape(len(index), n_bins) @ weights
    return sums[:, 0], sums[:, 1]


def _plane_lengths(masks: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contour length of each plane of ``masks (K, H, W)`` in px and mm ``(K,)``."""
    per_code, _ = _length_tables(tuple(spacing.tolist()))
    return _per_plane(_cell_codes(masks).astype(np.int64), per_code)


def _plane_shared(a: np.ndarray, b: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundary two disjoint masks share, per plane ``(K,)``: ``max(0, (P(a) + P(b) - P(a ∪ b)) / 2)``."""
    a_px, a_mm = _plane_lengths(a, spacing)
    b_px, b_mm = _plane_lengths(b, spacing)
    union_px, union_mm = _plane_lengths(a | b, spacing)
    return np.maximum(0.0, (a_px + b_px - union_px) / 2), np.maximum(0.0, (a_mm + b_mm - union_mm) / 2)


def _plane_changed(original: np.ndarray, final: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`changed_boundary_length` of each plane of ``(K, H, W)`` masks, in px and mm ``(K,)``."""
    _, changed = _length_tables(tuple(spacing.tolist()))
    return _per_plane(16 * _cell_codes(final).astype(np.int64) + _cell_codes(original), changed)
