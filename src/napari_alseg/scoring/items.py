"""Which items a round ranks: candidates, labelled items, regions to predict (no model needed)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, NEED_FEATURES, ROI, Granularity, Need, QueryItem, item_key
from ..pool import PoolScores

if TYPE_CHECKING:
    from .predict import RoundInputs

def candidate_items(
    granularity: Granularity,
    shapes: Mapping[str, tuple[int, ...]],
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    allowed: Mapping[str, np.ndarray],
    n_classes: int,
    validation: set[QueryItem],
) -> tuple[list[QueryItem], list[QueryItem]]:
    """(candidates, labelled) in :func:`item_key` order; validation items in neither."""
    candidates: list[QueryItem] = []
    labelled: list[QueryItem] = []
    for case in sorted(shapes):
        given = labels.get(case)
        mask = None if given is None else np.asarray(given[1], dtype=bool)
        if granularity == CASE:
            regions = [(QueryItem(case), mask)]
        else:
            regions = [(QueryItem(case, n), None if mask is None else mask[n]) for n in range(shapes[case][1])]
        for region, region_mask in regions:
            if is_validation(region, validation):
                continue
            done = region_mask is not None and bool(region_mask.all())
            if granularity != ROI:
                (labelled if done else candidates).append(region)
                continue
            data = None if given is None else np.asarray(given[0])[region.slice_index]
            delineated = _delineated(data, region_mask, n_classes)
            possible = _allowed_row(allowed, region, n_classes)
            labelled += [QueryItem(case, region.slice_index, c) for c in sorted(delineated - {0})]
            candidates += [QueryItem(case, region.slice_index, c) for c in sorted(possible - delineated - {0})]
    return candidates, labelled


def is_validation(region: QueryItem, validation: set[QueryItem]) -> bool:
    return region in validation or QueryItem(region.case) in validation


def _delineated(data: np.ndarray | None, mask: np.ndarray | None, n_classes: int) -> set[int]:
    """Classes given on a slice: all of them when it is fully labelled, else those painted."""
    if data is None or mask is None or not mask.any():
        return set()
    if mask.all():
        return set(range(n_classes))
    return {int(c) for c in np.unique(data[mask])}


def _allowed_row(allowed: Mapping[str, np.ndarray], region: QueryItem, n_classes: int) -> set[int]:
    rows = allowed.get(region.case)
    if rows is None:
        return set(range(n_classes))
    return {int(c) for c in np.flatnonzero(rows[region.slice_index])}


def allowed_sets(shapes: Mapping[str, tuple[int, ...]], allowed: Mapping[str, np.ndarray],
                  n_classes: int) -> dict[tuple[str, int], set[int]]:
    return {(case, n): _allowed_row(allowed, QueryItem(case, n), n_classes)
            for case, shape in shapes.items() for n in range(shape[1])}


def regions_to_predict(pool: PoolScores, needs: frozenset[Need], validation_regions: list[QueryItem]) -> list[QueryItem]:
    """Regions to predict: those with candidates, labelled ones when features are needed
    (non-similar compares with them), and rated validation regions."""
    wanted = {item.region for item in pool.candidates}
    if NEED_FEATURES in needs:
        wanted |= {item.region for item in pool.labelled}
    wanted |= set(validation_regions)
    return sorted(wanted, key=item_key)


def quality_regions(scoring: RoundInputs, granularity: Granularity, validation: Collection[QueryItem]) -> list[QueryItem]:
    """Validation cases (slices) with full labels: their true Dice is an honest quality target
    (an ROI pool rates whole slices)."""
    validation = set(validation)
    regions = []
    for case, shape in scoring.shapes.items():
        given = scoring.labels.get(case)
        if given is None:
            continue
        slices = [None] if granularity == CASE else range(shape[1])
        for n in slices:
            region = QueryItem(case, n)
            region_labels = scoring.region_labels(region)
            if is_validation(region, validation) and region_labels is not None and region_labels[1].all():
                regions.append(region)
    return regions

