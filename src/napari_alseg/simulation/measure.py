"""What one round cost and achieved: the row ``rounds.csv`` gets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, PSEUDO_ACCEPTED, ROI, QueryItem
from ..effort.boundary import boundary_length
from ..errors import AlsegError
from ..metrics import VAL_DICE_PER_CLASS, class_means, dice_per_class, mean_dice, per_class
from ..session import Catalog, Session
from .files import BASE_COLUMNS, SECONDS_PER_PX, TAIL_COLUMNS

if TYPE_CHECKING:
    from .oracle import Oracle


@dataclass(frozen=True)
class PoolTotals:
    """The pool (every non-test case or slice) and what labelling all of it would take.

    ``boundary_mm``: Σ over pool slices and classes 1..C-1 of the ground-truth outline
    (:func:`~napari_alseg.effort.boundary.boundary_length`), i.e. every structure traced on its
    own: the 100 % of the papers' "% of total boundary length". ``n_items``: pool items
    in the strategy's unit (cases, slices, or ROIs = (slice, class) pairs the slice
    ranges allow), the 100 % of "% of data" (docs/METHODS.md §10.2).
    """

    regions: tuple[QueryItem, ...]
    boundary_mm: float
    n_items: int

    @classmethod
    def of(cls, session: Session) -> PoolTotals:
        catalog = session.catalog
        held_out = set(catalog.validation_items())
        regions = []
        boundary_mm = 0.0
        n_items = 0
        roi = session.queries.pool_granularity == ROI
        for record in catalog.cases:
            if (record.name, None) in held_out:
                continue
            truth = catalog.ground_truth(record.name)
            if truth is None:
                raise AlsegError(f"case {record.name!r} has no ground truth: the simulated oracle needs it")
            spacing = session.view.in_plane_spacing(record.name)
            slices = [n for n in range(record.n_slices) if (record.name, n) not in held_out]
            for n in slices:
                boundary_mm += sum(boundary_length(truth[n] == c, spacing).mm
                                   for c in range(1, catalog.n_classes))
            if catalog.granularity == CASE:
                regions.append(QueryItem(record.name))
            else:
                regions += [QueryItem(record.name, n) for n in slices]
            n_items += _roi_count(catalog, record.name, slices) if roi else 0
        return cls(tuple(regions), boundary_mm, n_items if roi else len(regions))


def _roi_count(catalog: Catalog, case: str, slices: list[int]) -> int:
    """(slice, class) pairs of ``slices`` inside each class's slice range (all slices without one)."""
    ranges = catalog.weak_annotations(case)
    count = 0
    for class_id in range(1, catalog.n_classes):
        weak = ranges.get(class_id)
        count += len(slices) if weak is None else sum(weak.first_slice <= n <= weak.last_slice for n in slices)
    return count


def round_row(session: Session, oracle: Oracle, totals: PoolTotals, strategy: str, seed: int, round_index: int,
               wall_seconds: float) -> dict[str, str]:
    """One CSV row: cumulative effort from the project's events, Dice on test and pool."""
    catalog = session.catalog
    events = [e for e in catalog.events() if e.label_version is not None]
    boundary_px = sum(e.boundary_px or 0.0 for e in events)
    boundary_mm = sum(e.boundary_mm or 0.0 for e in events)
    items = {(e.case, e.slice_index, e.class_id) for e in events if e.kind != PSEUDO_ACCEPTED}
    metrics = catalog.metrics()
    row = {
        "strategy": strategy, "seed": seed, "round": round_index, "labelled_items": len(items),
        "labelled_slices": labelled_slices(catalog),
        "effort_items_pct": 100.0 * len(items) / max(totals.n_items, 1),
        "effort_boundary_px": boundary_px, "effort_boundary_mm": boundary_mm,
        "effort_boundary_pct": 100.0 * boundary_mm / totals.boundary_mm if totals.boundary_mm else math.nan,
        "effort_seconds_est": SECONDS_PER_PX * boundary_px,
        "dice_test": metrics.get("val_dice", math.nan),
    }
    dice = per_class(metrics, VAL_DICE_PER_CLASS, len(catalog.class_names))
    for name, value in zip(catalog.class_names[1:], dice):
        row[dice_column(name)] = float(value)
    row.update(dice_pool=pool_dice(session, oracle, totals), wall_seconds=wall_seconds,
               model_version=session.learner.model_version)
    return {key: format_value(value) for key, value in row.items()}


def labelled_slices(catalog: Catalog) -> int:
    """Distinct slices holding any label (a labelled case counts all its slices)."""
    slices: set[tuple[str, int]] = set()
    for record in catalog.cases:
        for item in catalog.labelled_items(record.name):
            indices = range(record.n_slices) if item.slice_index is None else [item.slice_index]
            slices.update((record.name, n) for n in indices)
    return len(slices)


def pool_dice(session: Session, oracle: Oracle, totals: PoolTotals) -> float:
    """Mean class Dice of the predictions on the pool not yet fully labelled (NaN when none).

    Predictions keep the labels given so far (what a prefill would show), so partially
    labelled slices count what is still left to fix. Per class averaged over regions,
    then over classes, as the test Dice is.
    """
    per_region = []
    for region in totals.regions:
        if is_labelled(session, region):
            continue
        truth = oracle.truth(region.case)
        truth = truth if region.slice_index is None else truth[region.slice_index]
        prediction = session.predict_labels(region.case, region.slice_index)
        per_region.append(dice_per_class(prediction, truth, session.catalog.n_classes))
    return class_mean(per_region)


def class_mean(per_region: list[np.ndarray]) -> float:
    if not per_region:
        return math.nan
    return mean_dice(class_means(per_region))


def dice_column(class_name: str) -> str:
    return "dice_test_" + "_".join(class_name.split())


def columns_of(catalog: Catalog) -> tuple[str, ...]:
    return (*BASE_COLUMNS, *(dice_column(name) for name in catalog.class_names[1:]), *TAIL_COLUMNS)


def format_value(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value)




def is_labelled(session: Session, region: QueryItem) -> bool:
    snapshot = session.catalog.current_labels(region.case)
    if snapshot is None:
        return False
    mask = snapshot.labelled if region.slice_index is None else snapshot.labelled[region.slice_index]
    return bool(mask.all())
