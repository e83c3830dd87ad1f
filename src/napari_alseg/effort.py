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
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .domain import Kind
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


class Estimator(Kind):
    """How :class:`EffortModel` estimates the boundary left to trace."""

    PAPER = "paper"  # docs/METHODS.md §7.4 as published: B with an ε-prior to 0, R clipped at 0.001 mm
    PRIOR = "prior"  # B with a data prior for unseen classes; empty delineations are not outlines
    PREDICTED = "predicted"  # the prior's R blended with the current prediction's own outline


ESTIMATOR_PAPER = Estimator.PAPER
ESTIMATOR_PRIOR = Estimator.PRIOR
ESTIMATOR_PREDICTED = Estimator.PREDICTED
ESTIMATORS = (ESTIMATOR_PAPER, ESTIMATOR_PRIOR, ESTIMATOR_PREDICTED)
DEFAULT_ESTIMATOR = ESTIMATOR_PREDICTED

PRIOR_PSEUDO_COUNT = 2.0  # pseudo-delineations of the prior mean outline behind every class's B_cc
MIN_REMAINING_FRACTION = 0.1  # R_nc is at least this share of B_cc (see EffortModel)
PREDICTION_HALF_WEIGHT = 5.0  # delineations of a class at which its prediction and B weigh the same


@dataclass(frozen=True)
class EffortEstimate:
    """Remaining boundary to trace for one ROI: ``mm`` (None = no estimate the data supports),
    ``source``, the words for where it came from, and ``guess``: the class has no outline
    yet, so ``mm`` is the prior's typical outline of this data, not this ROI's."""

    mm: float | None
    source: str
    guess: bool = False


class EffortModel:
    """Running boundary-length matrix ``B`` (C×C, mm) and remaining effort ``R_nc`` (docs/METHODS.md §7.4).

    ``observe`` keeps, per pair of classes, the summed length and two counts: slices where
    both were *delineated* (``count_delineated``, what the paper averages over) and slices
    where both were *present* (``count``: a class delineated empty, i.e. absent on that
    slice, traced no outline). Three estimators read them (:data:`ESTIMATORS`):

    - ``paper``: ``B = length_sum / (count_delineated + prior_count)``, the ε-prior towards
      0, and ``R_nc`` clipped at ``effort_floor`` (0.001 mm). Kept so the benchmark can
      compare; it prices an unseen class at the floor (a score of ``gap / 0.001``) and an
      empty delineation pulls ``B_cc`` towards 0.
    - ``prior`` (what the session shows): only present classes count, and every diagonal
      entry shrinks towards the prior mean outline ``μ`` with ``κ`` =
      :data:`PRIOR_PSEUDO_COUNT` pseudo-delineations::

          μ     = mean over delineated classes c' of (length_sum[c', c'] / count[c', c'])
          B_cc  = (length_sum[c, c] + κ μ) / (count[c, c] + κ)

      so an unseen class costs ``μ`` (a typical outline of this data, not 0) and its own
      mean takes over as it is delineated (half-half after κ delineations). The arithmetic
      mean of the class means errs towards pricing an unseen class high, the safe side: it
      still ranks early by its Dice gap of 1. Shared boundaries ``B_cc'`` keep the ε-prior
      towards 0 over slices where both were present (unknown contact is not discounted).
      ``R_nc = max(B_cc - Σ_c' A_nc' B_cc', MIN_REMAINING_FRACTION · B_cc)``: averages of
      contact measured on other slices cannot show that c is wholly enclosed on slice n.
      With nothing delineated yet there is no μ: the estimate is unknown (NaN / None).
    - ``predicted`` (the default for dice-per-effort): beyond the paper, once a model exists
      the current prediction's own outline of c on slice n, minus its contact with the
      classes delineated there (scoring's ``effort_pred_mm`` term), blended with the prior's
      ``R_nc`` by ``w = count[c, c] / (count[c, c] + PREDICTION_HALF_WEIGHT)``: a model
      that has seen few outlines of c predicts them poorly, so B leads while it is young and
      the prediction after :data:`PREDICTION_HALF_WEIGHT` delineations of c. No prediction
      of c on the slice (the model misses it) gives the prior's ``R_nc`` alone.

    Class ids are label values ``0..C-1`` and index ``B`` directly; whether 0 (background) is
    a class to delineate is the caller's choice.
    """

    def __init__(
        self, n_classes: int, prior_count: float = 1e-3, effort_floor: float = 1e-3
    ) -> None:
        """``prior_count`` is the paper's ε (pseudo-observations of length 0, also the
        shared-boundary prior of every estimator); ``effort_floor`` (mm) the paper estimator's
        smallest remaining effort, so that ``(1 - D̃) / R`` stays finite."""
        if n_classes < 1:
            raise AlsegError(f"n_classes must be at least 1, got {n_classes}")
        if prior_count <= 0 or effort_floor <= 0:
            raise AlsegError("prior_count and effort_floor must be positive")
        self.n_classes = int(n_classes)
        self.prior_count = float(prior_count)
        self.effort_floor = float(effort_floor)
        self.length_sum = np.zeros((n_classes, n_classes))
        self.count = np.zeros((n_classes, n_classes))
        self.count_delineated = np.zeros((n_classes, n_classes))

    @property
    def boundary_matrix(self) -> np.ndarray:
        """``B`` (C, C) in mm of the ``prior`` estimator, symmetric; NaN on the diagonal while
        no class has been delineated (no prior to go by)."""
        return self.boundary_matrix_of(ESTIMATOR_PRIOR)

    def boundary_matrix_of(self, estimator: Estimator) -> np.ndarray:
        """``B`` (C, C) in mm of ``estimator`` (``predicted`` uses the ``prior`` one)."""
        _checked_estimator(estimator)
        if estimator == ESTIMATOR_PAPER:
            return self.length_sum / (self.count_delineated + self.prior_count)
        boundary = self.length_sum / (self.count + self.prior_count)
        diagonal_sum, diagonal_count = np.diag(self.length_sum), np.diag(self.count)
        seen = diagonal_count > 0
        prior_mean = float((diagonal_sum[seen] / diagonal_count[seen]).mean()) if seen.any() else math.nan
        np.fill_diagonal(boundary, (diagonal_sum + PRIOR_PSEUDO_COUNT * prior_mean)
                         / (diagonal_count + PRIOR_PSEUDO_COUNT))
        return boundary

    def delineations(self, class_id: int) -> int:
        """Slices where class ``class_id`` was delineated with an outline (present)."""
        return int(self.count[class_id, class_id])

    def observe(
        self,
        slice_labels: np.ndarray,
        delineated_classes: Iterable[int],
        spacing: Spacing = (1.0, 1.0),
    ) -> None:
        """Add one annotated 2D slice ``(H, W)`` of class ids; only delineated classes count,
        and of those only the ones present add an outline (an empty ROI says "absent here")."""
        slice_labels = np.asarray(slice_labels)
        if slice_labels.ndim != 2:
            raise AlsegError(f"expected a 2D slice of labels, got shape {slice_labels.shape}")
        classes = sorted(self._checked_classes(delineated_classes))
        masks = {c: slice_labels == c for c in classes}
        present = {c: bool(masks[c].any()) for c in classes}
        for i, c in enumerate(classes):
            self._add(c, c, boundary_length(masks[c], spacing).mm if present[c] else 0.0, present[c])
            for other in classes[i + 1 :]:
                both = present[c] and present[other]
                shared = shared_boundary_length(masks[c], masks[other], spacing).mm if both else 0.0
                self._add(c, other, shared, both)

    def remaining_effort(
        self, delineated_on_slice: Iterable[int], allowed: Iterable[int], estimator: Estimator = ESTIMATOR_PRIOR
    ) -> np.ndarray:
        """``R_n`` (C,) in mm: ``B_cc - Σ_{c' delineated} B_cc'`` for allowed, undelineated c.

        Other classes get 0 (not queryable). Queryable ones are clipped at ``effort_floor``
        (``paper``) or at :data:`MIN_REMAINING_FRACTION` of ``B_cc`` (``prior``; NaN while
        unknown). ``predicted`` needs a prediction per ROI (:meth:`estimate`); here it is ``prior``.
        """
        _checked_estimator(estimator)
        delineated = self._checked_classes(delineated_on_slice)
        open_classes = sorted(self._checked_classes(allowed) - delineated)
        boundary = self.boundary_matrix_of(estimator)
        remaining = np.zeros(self.n_classes)
        for c in open_classes:
            traced = boundary[c, c] - sum(boundary[c, other] for other in delineated)
            if estimator == ESTIMATOR_PAPER:
                remaining[c] = max(traced, self.effort_floor)
            else:
                remaining[c] = max(traced, MIN_REMAINING_FRACTION * boundary[c, c])  # NaN stays NaN
        return remaining

    def estimate(
        self,
        class_id: int,
        delineated_on_slice: Iterable[int],
        allowed: Iterable[int],
        predicted_mm: float | None = None,
        estimator: Estimator = DEFAULT_ESTIMATOR,
    ) -> EffortEstimate:
        """The remaining effort of one ROI ``(slice n, class_id)`` and where it came from.

        ``predicted_mm``: the current prediction's outline of the class on n, minus its
        contact with the classes delineated there (None / NaN: no model, or c not predicted).
        ``mm`` is None where the data supports no number: nothing delineated yet
        (``prior``, ``predicted``), or a class never delineated with an outline (``paper``,
        which still ranks it by its floored ``R``, :meth:`remaining_effort`).
        """
        _checked_estimator(estimator)
        delineated = self._checked_classes(delineated_on_slice)
        c = int(class_id)
        if c not in self._checked_classes(allowed) - delineated:
            return EffortEstimate(0.0, "not queryable on this slice")
        seen = self.delineations(c)
        if estimator == ESTIMATOR_PAPER:
            remaining = float(self.remaining_effort(delineated, {c}, ESTIMATOR_PAPER)[c])
            if not seen:
                return EffortEstimate(None, "unknown: class not delineated yet (the paper's B prices it at "
                                            f"{self.effort_floor:g} mm)")
            return EffortEstimate(remaining, "B (paper)")
        remaining = float(self.remaining_effort(delineated, {c}, ESTIMATOR_PRIOR)[c])
        if not math.isfinite(remaining):
            return EffortEstimate(None, "unknown: no outline delineated yet")
        source = "B" if seen else "B (prior: mean outline of the delineated classes)"
        if estimator == ESTIMATOR_PRIOR or predicted_mm is None or not math.isfinite(predicted_mm) or not seen:
            return EffortEstimate(remaining, source, guess=not seen)
        weight = seen / (seen + PREDICTION_HALF_WEIGHT)
        floor = MIN_REMAINING_FRACTION * float(self.boundary_matrix[c, c])
        blended = max(weight * float(predicted_mm) + (1.0 - weight) * remaining, floor)
        return EffortEstimate(blended, f"prediction's outline {weight:.0%} + B {1 - weight:.0%}")

    def remaining_effort_table(
        self, slices: dict[int, set[int]], allowed: dict[int, set[int]], estimator: Estimator = ESTIMATOR_PRIOR
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
        rows = [self.remaining_effort(slices.get(n, set()), allowed[n], estimator) for n in range(n_slices)]
        return np.array(rows, dtype=float).reshape(n_slices, self.n_classes)

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {
            "n_classes": self.n_classes,
            "prior_count": self.prior_count,
            "effort_floor": self.effort_floor,
            "length_sum": self.length_sum.tolist(),
            "count": self.count.tolist(),
            "count_delineated": self.count_delineated.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict) -> EffortModel:
        """Inverse of :meth:`to_dict` (a state without ``count_delineated`` counted only outlines)."""
        try:
            model = cls(state["n_classes"], state["prior_count"], state["effort_floor"])
            length_sum = np.asarray(state["length_sum"], dtype=float)
            count = np.asarray(state["count"], dtype=float)
            count_delineated = np.asarray(state.get("count_delineated", state["count"]), dtype=float)
        except (KeyError, TypeError, ValueError) as error:
            raise AlsegError(f"invalid effort model state: {error}") from None
        shape = (model.n_classes, model.n_classes)
        if not length_sum.shape == count.shape == count_delineated.shape == shape:
            raise AlsegError(f"invalid effort model state: matrices are not {shape}")
        model.length_sum, model.count, model.count_delineated = length_sum, count, count_delineated
        return model

    def merge(self, other: EffortModel) -> None:
        """Add another model's observations (e.g. one per case, cached while the case is unchanged)."""
        if other.n_classes != self.n_classes:
            raise AlsegError(f"cannot merge effort models of {other.n_classes} and {self.n_classes} classes")
        self.length_sum += other.length_sum
        self.count += other.count
        self.count_delineated += other.count_delineated

    def _add(self, c: int, other: int, length_mm: float, present: bool) -> None:
        for row, col in {(c, other), (other, c)}:
            self.length_sum[row, col] += length_mm
            self.count[row, col] += float(present)
            self.count_delineated[row, col] += 1

    def _checked_classes(self, classes: Iterable[int]) -> set[int]:
        classes = {int(c) for c in classes}
        outside = sorted(c for c in classes if not 0 <= c < self.n_classes)
        if outside:
            raise AlsegError(f"class ids {outside} outside 0..{self.n_classes - 1}")
        return classes


def _checked_estimator(estimator: Estimator) -> None:
    if estimator not in ESTIMATORS:
        raise AlsegError(f"unknown effort estimator {estimator!r}; choose from: {', '.join(ESTIMATORS)}")


# s per click of segment with clicks: an assumption (not measured), replaced by the cost fitted
# from the annotator's own timing once MIN_CLICK_SUBMITS submits with clicks are timed
CLICK_SECONDS_PRIOR = 3.0
MIN_CLICK_SUBMITS = 3  # timed submits with clicks before the cost of a click is fitted


@dataclass(frozen=True)
class SecondsModel:
    """Annotation time ``seconds ≈ a + b · length_px + c · clicks``, fitted from timing events.

    ``per_class`` holds ``(a, b)`` for classes with at least 3 events; the others use the
    ``pooled`` fit over all events, which is ``None`` with fewer than 2 events.
    ``click_seconds`` is ``c``, the seconds a click of segment with clicks costs: the prior
    :data:`CLICK_SECONDS_PRIOR` until :data:`MIN_CLICK_SUBMITS` timed submits with clicks
    exist, then fitted (``click_seconds_fitted``).
    """

    per_class: dict[int, tuple[float, float]]
    pooled: tuple[float, float] | None
    click_seconds: float = CLICK_SECONDS_PRIOR
    click_seconds_fitted: bool = False

    @classmethod
    def fit(
        cls, class_ids: Iterable[int], lengths_px: Iterable[float], seconds: Iterable[float],
        clicks: Iterable[int] | None = None,
    ) -> SecondsModel:
        """Least-squares fits from parallel sequences, one entry per timed delineation (a
        submit); ``clicks``: the clicks of each (None: none). The lines are fitted on the
        seconds less ``c`` per click."""
        class_ids = np.asarray(list(class_ids), dtype=int)
        lengths_px = np.asarray(list(lengths_px), dtype=float)
        seconds = np.asarray(list(seconds), dtype=float)
        clicks = np.zeros_like(seconds) if clicks is None else np.asarray(list(clicks), dtype=float)
        if not class_ids.shape == lengths_px.shape == seconds.shape == clicks.shape:
            raise AlsegError("class_ids, lengths_px, seconds and clicks differ in length")
        if not (np.isfinite(lengths_px).all() and np.isfinite(seconds).all() and np.isfinite(clicks).all()):
            raise AlsegError("timing events contain NaN or infinite values")
        fitted = _click_seconds(lengths_px, seconds, clicks)
        per_click = CLICK_SECONDS_PRIOR if fitted is None else fitted
        seconds = seconds - per_click * clicks
        pooled = _line_fit(lengths_px, seconds) if len(seconds) >= 2 else None
        per_class = {
            int(c): _line_fit(lengths_px[class_ids == c], seconds[class_ids == c])
            for c in np.unique(class_ids)
            if np.count_nonzero(class_ids == c) >= 3
        }
        return cls(per_class=per_class, pooled=pooled, click_seconds=per_click,
                   click_seconds_fitted=fitted is not None)

    def predict(self, class_id: int, length_px: float, clicks: int = 0) -> float | None:
        """Seconds (≥ 0) to trace ``length_px`` of class ``class_id`` and make ``clicks``
        clicks; None when unfitted."""
        line = self.per_class.get(int(class_id), self.pooled)
        if line is None:
            return None
        intercept, slope = line
        return max(0.0, intercept + slope * float(length_px) + self.click_seconds * float(clicks))


def _click_seconds(lengths_px: np.ndarray, seconds: np.ndarray, clicks: np.ndarray) -> float | None:
    """Seconds per click, clipped at 0: least squares of the residual ``seconds - (a + b·px)`` on
    the clicks' own residual from a line in px (Frisch-Waugh: ``c`` of the joint fit ``a + b·px +
    c·clicks``, so clicks that come with long outlines are not charged their tracing). None with
    fewer than :data:`MIN_CLICK_SUBMITS` submits with clicks, or clicks a line in px explains."""
    if np.count_nonzero(clicks) < MIN_CLICK_SUBMITS:
        return None
    line = np.column_stack([np.ones_like(lengths_px), lengths_px])
    residual_clicks = clicks - line @ np.linalg.lstsq(line, clicks, rcond=None)[0]
    spread = float(residual_clicks @ residual_clicks)
    if spread <= 1e-9 * float(clicks @ clicks):
        return None
    residual_seconds = seconds - line @ np.linalg.lstsq(line, seconds, rcond=None)[0]
    return max(0.0, float(residual_seconds @ residual_clicks) / spread)


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``y ≈ a + b x`` with ``a, b >= 0``: a longer outline never takes less time.
    With one distinct x the slope is 0 and a = mean(y). A negative least-squares slope (two
    timings, the longer outline traced faster) gives way to the line through the origin
    (b = Σxy / Σx²); a negative intercept to the same (the slope alone carries the time)."""
    if np.ptp(x) == 0:
        return max(float(y.mean()), 0.0), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0 or intercept < 0:
        return 0.0, max(float((x * y).sum() / max((x * x).sum(), 1e-12)), 0.0)
    return float(intercept), float(slope)


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
_N_SEGMENTS = np.array([len(segments) for segments in _SEGMENTS])
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
