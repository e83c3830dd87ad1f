"""The cohort in seconds: what the annotator spent, what finishing the rest would take with the
current model, and what tracing would have taken (the Effort tab's "time saved").

Tracing is priced at the stated speed of :class:`~napari_alseg.pricing.SecondsCosts` (the
cohort benchmark's), so the figures compare with its report; the spent seconds are the
annotator's own active time. The rest with the model is the scored pool's expected seconds
(:func:`~napari_alseg.pricing.expected_seconds`: review plus the outline the model itself
doubts); an item with nothing predicted is priced as tracing its estimated outline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..domain import TERM_EXPECTED_S, QueryItem
from ..pool import PoolScores
from ..pricing import SecondsCosts, trace_mm
from .accounting import ALL_CLASSES, EffortAccounting
from .labels import LabelsView


@dataclass(frozen=True)
class CohortSeconds:
    """Seconds of the cohort (the pool less the held-out items).

    ``spent_s``: active seconds of every submit so far; ``traced_done_s``: tracing the outlines
    of the items done from scratch; ``left_with_model_s``: reviewing and correcting the rest
    with the current model (None: no model, or the pool not scored with it yet);
    ``trace_rest_s``: tracing the rest (None: no outline traced yet to estimate it from).
    """

    items_done: int
    items_left: int
    spent_s: float
    traced_done_s: float
    left_with_model_s: float | None
    trace_rest_s: float | None

    @property
    def saved_s(self) -> float:
        """Tracing the done items less what they took."""
        return self.traced_done_s - self.spent_s


def cohort_seconds(pool: PoolScores, accounting: EffortAccounting, view: LabelsView,
                   costs: SecondsCosts = SecondsCosts()) -> CohortSeconds:
    """:class:`CohortSeconds` of the pool's items (its candidates and labelled items, cases or
    slices), each counted done or left by the labels as they are now (the pool may predate the
    last submits)."""
    summary = accounting.effort_summary()[ALL_CLASSES]
    classes = range(1, pool.n_classes)
    labels = view.all_labels()
    done: list[tuple[str, np.ndarray]] = []  # each done item's case and the labels of its region
    left: list[QueryItem] = []
    for item in [*pool.labelled, *pool.candidates]:
        given = labels.get(item.case)
        region = given if given is None or item.slice_index is None else (given[0][item.slice_index],
                                                                          given[1][item.slice_index])
        if region is not None and bool(np.all(region[1])):
            done.append((item.case, region[0]))
        else:
            left.append(item)
    traced_mm = sum(trace_mm(data, classes, view.in_plane_spacing(case)) for case, data in done)
    remaining_mm = {item: accounting.region_remaining(item.case, item.slice_index)[0] for item in left}
    known = math.isfinite(summary["remaining_mm"]) and any(math.isfinite(mm) for mm in remaining_mm.values())
    trace_rest = costs.trace_seconds_per_mm * float(np.nansum(list(remaining_mm.values()))) if known else None
    return CohortSeconds(len(done), len(left), float(summary["spent_s"]), costs.trace_seconds_per_mm * traced_mm,
                         _left_with_model(pool, remaining_mm, costs), trace_rest)


def _left_with_model(pool: PoolScores, remaining_mm: dict, costs: SecondsCosts) -> float | None:
    """Σ expected seconds over the items left; None before the pool was scored with a model."""
    expected = {item: pool.terms.get(item, {}).get(TERM_EXPECTED_S) for item in remaining_mm}
    if not pool.has_model or not expected or all(value is None for value in expected.values()):
        return None
    total = 0.0
    for item, seconds in expected.items():
        if seconds is not None and math.isfinite(seconds):
            total += seconds
        elif math.isfinite(remaining_mm[item]):
            total += costs.trace_seconds_per_mm * remaining_mm[item]
    return total
