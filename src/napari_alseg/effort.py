"""Annotation effort as the boundary length an annotator has to trace (METHODS E).

Estimator: the iso-0.5 contour of the zero-padded mask (``skimage.measure.find_contours``,
marching squares), measured as a polyline. Its vertices sit on the midpoints of the pixel
edges between inside and outside, so it follows the line a person traces along the mask's
outline: nearly rotation-invariant (oblique edges and disks measure at most ~7 % long,
where counting pixel edges would be 27 % long on a disk and 41 % on a 45° edge), and an
axis-aligned edge measures 1 px per pixel. The one cost: each convex 90° pixel corner is
cut by a diagonal, so a k×k square measures ``4k - (4 - 2√2) ≈ 4k - 1.17`` px. Anisotropic
pixels are handled by scaling the contour (rows × ``spacing[0]``, columns × ``spacing[1]``)
before measuring. Zero padding closes contours at the image border; every component and
hole adds its own contour.

Because marching squares is local, two masks that agree on a 2×2 pixel cell produce the
same oriented contour segment there; :func:`changed_boundary_length` relies on this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from skimage.measure import find_contours

from .errors import AlsegError

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
    segments = _contour_segments(mask)
    return _segments_length(segments, _checked_spacing(spacing))


def shared_boundary_length(
    mask_a: np.ndarray, mask_b: np.ndarray, spacing: Spacing = (1.0, 1.0)
) -> BoundaryLength:
    """Length of the boundary where two disjoint 2D masks touch.

    ``(P(a) + P(b) - P(a ∪ b)) / 2``: the touching edge is in both outlines and in neither
    part of the union's. Tracing ``b`` next to an already delineated ``a`` costs
    ``P(b) - shared``. Clipped at 0 (diagonal contacts can give a tiny negative value).
    """
    mask_a, mask_b = _as_mask(mask_a), _as_mask(mask_b)
    if mask_a.shape != mask_b.shape:
        raise AlsegError(f"masks differ in shape: {mask_a.shape} vs {mask_b.shape}")
    a = boundary_length(mask_a, spacing)
    b = boundary_length(mask_b, spacing)
    union = boundary_length(mask_a | mask_b, spacing)
    return BoundaryLength(
        px=max(0.0, (a.px + b.px - union.px) / 2),
        mm=max(0.0, (a.mm + b.mm - union.mm) / 2),
    )


def changed_boundary_length(
    original_mask: np.ndarray, final_mask: np.ndarray, spacing: Spacing = (1.0, 1.0)
) -> BoundaryLength:
    """Effort of correcting a pre-filled prediction: the boundary of ``final`` not in ``original``.

    Compares oriented contour segments exactly: a segment of the final contour is free when
    the original contour has the same segment with the inside on the same side. Redrawn or
    added outline counts; whole components erased count 0 (one fill click in napari, no
    tracing). Unchanged mask → 0; empty original → the full :func:`boundary_length`.
    """
    original_mask, final_mask = _as_mask(original_mask), _as_mask(final_mask)
    if original_mask.shape != final_mask.shape:
        raise AlsegError(
            f"masks differ in shape: {original_mask.shape} vs {final_mask.shape}"
        )
    final_segments = _contour_segments(final_mask)
    original_keys = _segment_keys(_contour_segments(original_mask), final_mask.shape)
    is_new = ~np.isin(_segment_keys(final_segments, final_mask.shape), original_keys)
    return _segments_length(final_segments[is_new], _checked_spacing(spacing))


def slice_trace_length(plane: np.ndarray, classes: Iterable[int], spacing: Spacing) -> BoundaryLength:
    """Boundary to trace on one slice ``(j, i)``: every class outline, each shared boundary once."""
    masks = {c: plane == c for c in classes}
    masks = {c: mask for c, mask in masks.items() if mask.any()}
    px = mm = 0.0
    for mask in masks.values():
        length = boundary_length(mask, spacing)
        px, mm = px + length.px, mm + length.mm
    present = sorted(masks)
    for index, a in enumerate(present):
        for b in present[index + 1:]:
            shared = shared_boundary_length(masks[a], masks[b], spacing)
            px, mm = px - shared.px, mm - shared.mm
    return BoundaryLength(max(px, 0.0), max(mm, 0.0))


def roi_trace_length(mask: np.ndarray, neighbours: Iterable[np.ndarray], spacing: Spacing) -> BoundaryLength:
    """A traced ROI's outline minus what it shares with the ``neighbours`` already delineated on
    its slice (masks ``(j, i)``): that line exists (METHODS E)."""
    length = boundary_length(mask, spacing)
    px, mm = length.px, length.mm
    for neighbour in neighbours:
        shared = shared_boundary_length(mask, neighbour, spacing)
        px, mm = px - shared.px, mm - shared.mm
    return BoundaryLength(max(px, 0.0), max(mm, 0.0))


def traced_boundary(labels: np.ndarray, classes: Iterable[int], spacing: Spacing,
                    original: np.ndarray | None = None) -> BoundaryLength:
    """Boundary length of a slice ``(j, i)`` or volume ``(k, j, i)`` of ``classes``, summed over slices.

    With ``original`` (a corrected prediction, same shape) only the boundary changed counts;
    otherwise each slice's :func:`slice_trace_length`.
    """
    labels = np.asarray(labels)
    slices = labels[np.newaxis] if labels.ndim == 2 else labels
    originals = None if original is None else (np.asarray(original)[np.newaxis] if labels.ndim == 2
                                               else np.asarray(original))
    classes = list(classes)
    px = mm = 0.0
    for index, plane in enumerate(slices):
        if originals is None:
            length = slice_trace_length(plane, classes, spacing)
            px, mm = px + length.px, mm + length.mm
            continue
        for c in classes:
            length = changed_boundary_length(originals[index] == c, plane == c, spacing)
            px, mm = px + length.px, mm + length.mm
    return BoundaryLength(px, mm)


class EffortModel:
    """Running boundary-length matrix ``B`` (C×C, mm) and remaining effort ``R_nc`` (METHODS E).

    ``B[c, c]`` = mean boundary length of class c over slices where it was delineated;
    ``B[c, c']`` = mean length of the boundary c and c' share over slices where both were.
    Each mean carries ``prior_count`` pseudo-observations of length 0 (the ε-prior towards
    0), so unobserved entries are 0 rather than undefined: an unseen class looks almost
    free and is asked for early, which is how its real length gets learned. Class ids are
    label values ``0..C-1`` and index ``B`` directly; whether 0 (background) is a class to
    delineate is the caller's choice.
    """

    def __init__(
        self, n_classes: int, prior_count: float = 1e-3, effort_floor: float = 1e-3
    ) -> None:
        """``effort_floor`` (mm) is the smallest remaining effort reported for an allowed
        class, so that ``(1 - D̃) / R`` stays finite; clipped items then rank by Dice gap."""
        if n_classes < 1:
            raise AlsegError(f"n_classes must be at least 1, got {n_classes}")
        if prior_count <= 0 or effort_floor <= 0:
            raise AlsegError("prior_count and effort_floor must be positive")
        self.n_classes = int(n_classes)
        self.prior_count = float(prior_count)
        self.effort_floor = float(effort_floor)
        self.length_sum = np.zeros((n_classes, n_classes))
        self.count = np.zeros((n_classes, n_classes))

    @property
    def boundary_matrix(self) -> np.ndarray:
        """``B`` (C, C) in mm: prior-shrunk running means, symmetric."""
        return self.length_sum / (self.count + self.prior_count)

    def observe(
        self,
        slice_labels: np.ndarray,
        delineated_classes: Iterable[int],
        spacing: Spacing = (1.0, 1.0),
    ) -> None:
        """Add one annotated 2D slice ``(H, W)`` of class ids; only delineated classes count."""
        slice_labels = np.asarray(slice_labels)
        if slice_labels.ndim != 2:
            raise AlsegError(f"expected a 2D slice of labels, got shape {slice_labels.shape}")
        classes = sorted(self._checked_classes(delineated_classes))
        masks = {c: slice_labels == c for c in classes}
        for i, c in enumerate(classes):
            self._add(c, c, boundary_length(masks[c], spacing).mm)
            for other in classes[i + 1 :]:
                self._add(c, other, shared_boundary_length(masks[c], masks[other], spacing).mm)

    def remaining_effort(
        self, delineated_on_slice: Iterable[int], allowed: Iterable[int]
    ) -> np.ndarray:
        """``R_n`` (C,) in mm: ``B_cc - Σ_{c' delineated} B_cc'`` for allowed, undelineated c.

        Other classes get 0 (not queryable); queryable ones are clipped at ``effort_floor``.
        """
        delineated = self._checked_classes(delineated_on_slice)
        open_classes = sorted(self._checked_classes(allowed) - delineated)
        boundary = self.boundary_matrix
        remaining = np.zeros(self.n_classes)
        for c in open_classes:
            shared = sum(boundary[c, other] for other in delineated)
            remaining[c] = max(boundary[c, c] - shared, self.effort_floor)
        return remaining

    def remaining_effort_table(
        self, slices: dict[int, set[int]], allowed: dict[int, set[int]]
    ) -> np.ndarray:
        """``R`` (N, C) in mm for slices ``0..N-1``.

        ``allowed`` maps every slice to the classes it may still contain (slice ranges);
        ``slices`` maps a slice to its delineated classes (missing = none delineated).
        """
        n_slices = len(allowed)
        if set(allowed) != set(range(n_slices)):
            raise AlsegError("allowed classes must be given for slices 0..N-1, each once")
        unknown = set(slices) - set(allowed)
        if unknown:
            raise AlsegError(f"delineated classes given for unknown slices {sorted(unknown)}")
        rows = [self.remaining_effort(slices.get(n, set()), allowed[n]) for n in range(n_slices)]
        return np.array(rows, dtype=float).reshape(n_slices, self.n_classes)

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {
            "n_classes": self.n_classes,
            "prior_count": self.prior_count,
            "effort_floor": self.effort_floor,
            "length_sum": self.length_sum.tolist(),
            "count": self.count.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict) -> EffortModel:
        """Inverse of :meth:`to_dict`."""
        try:
            model = cls(state["n_classes"], state["prior_count"], state["effort_floor"])
            length_sum = np.asarray(state["length_sum"], dtype=float)
            count = np.asarray(state["count"], dtype=float)
        except (KeyError, TypeError, ValueError) as error:
            raise AlsegError(f"invalid effort model state: {error}") from None
        shape = (model.n_classes, model.n_classes)
        if length_sum.shape != shape or count.shape != shape:
            raise AlsegError(f"invalid effort model state: matrices are not {shape}")
        model.length_sum, model.count = length_sum, count
        return model

    def _add(self, c: int, other: int, length_mm: float) -> None:
        for row, col in {(c, other), (other, c)}:
            self.length_sum[row, col] += length_mm
            self.count[row, col] += 1

    def _checked_classes(self, classes: Iterable[int]) -> set[int]:
        classes = {int(c) for c in classes}
        outside = sorted(c for c in classes if not 0 <= c < self.n_classes)
        if outside:
            raise AlsegError(f"class ids {outside} outside 0..{self.n_classes - 1}")
        return classes


@dataclass(frozen=True)
class SecondsModel:
    """Annotation time ``seconds ≈ a + b · length_px``, fitted from timing events.

    ``per_class`` holds ``(a, b)`` for classes with at least 3 events; the others use the
    ``pooled`` fit over all events, which is ``None`` with fewer than 2 events.
    """

    per_class: dict[int, tuple[float, float]]
    pooled: tuple[float, float] | None

    @classmethod
    def fit(
        cls, class_ids: Iterable[int], lengths_px: Iterable[float], seconds: Iterable[float]
    ) -> SecondsModel:
        """Least-squares fits from parallel sequences, one entry per timed delineation."""
        class_ids = np.asarray(list(class_ids), dtype=int)
        lengths_px = np.asarray(list(lengths_px), dtype=float)
        seconds = np.asarray(list(seconds), dtype=float)
        if not class_ids.shape == lengths_px.shape == seconds.shape:
            raise AlsegError("class_ids, lengths_px and seconds differ in length")
        if not (np.isfinite(lengths_px).all() and np.isfinite(seconds).all()):
            raise AlsegError("timing events contain NaN or infinite values")
        pooled = _line_fit(lengths_px, seconds) if len(seconds) >= 2 else None
        per_class = {
            int(c): _line_fit(lengths_px[class_ids == c], seconds[class_ids == c])
            for c in np.unique(class_ids)
            if np.count_nonzero(class_ids == c) >= 3
        }
        return cls(per_class=per_class, pooled=pooled)

    def predict(self, class_id: int, length_px: float) -> float | None:
        """Seconds (≥ 0) to trace ``length_px`` of class ``class_id``; None when unfitted."""
        line = self.per_class.get(int(class_id), self.pooled)
        if line is None:
            return None
        intercept, slope = line
        return max(0.0, intercept + slope * float(length_px))


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``y ≈ a + b x``; with one distinct x the slope is 0 and a = mean(y)."""
    if np.ptp(x) == 0:
        return float(y.mean()), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise AlsegError(f"expected a 2D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _checked_spacing(spacing: Spacing) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=float)
    if spacing.shape != (2,) or not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise AlsegError(f"spacing must be two positive numbers (mm), got {spacing.tolist()}")
    return spacing


def _contour_segments(mask: np.ndarray) -> np.ndarray:
    """Oriented contour segments ``(S, 2, 2)`` [segment, start/end, row/col] in pixel units."""
    padded = np.pad(_as_mask(mask), 1).astype(float)
    contours = find_contours(padded, 0.5) if padded.any() else []
    segments = [np.stack([c[:-1], c[1:]], axis=1) for c in contours if len(c) > 1]
    if not segments:
        return np.empty((0, 2, 2))
    return np.concatenate(segments) - 1.0


def _segments_length(segments: np.ndarray, spacing: np.ndarray) -> BoundaryLength:
    steps = segments[:, 1] - segments[:, 0]
    return BoundaryLength(
        px=float(np.linalg.norm(steps, axis=1).sum()),
        mm=float(np.linalg.norm(steps * spacing, axis=1).sum()),
    )


def _segment_keys(segments: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One int64 per oriented segment; vertices lie on a half-pixel grid, so doubling is exact."""
    grid = np.rint(2 * (segments + 1.0)).astype(np.int64)
    width = 2 * shape[1] + 4
    vertex = grid[..., 0] * width + grid[..., 1]
    n_vertices = (2 * shape[0] + 4) * width
    return vertex[:, 0] * n_vertices + vertex[:, 1]
