"""The boundary-effort matrix ``B`` and the remaining effort ``R`` it gives (docs/METHODS.md §7.4):
the running mean outline of every class and the boundary each pair shares, from the
delineated slices, priced in mm by one of three estimators."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..domain import Kind
from ..errors import AlsegError
from .boundary import Spacing, boundary_length, shared_boundary_length


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
