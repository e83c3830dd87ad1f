"""Baselines every method is measured against (docs/METHODS.md §2): random and slice-uniform."""

from __future__ import annotations

from itertools import zip_longest
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, ROI, SLICE
from ..redundancy import longest_unlabelled_run_order
from .base import QueryItem, Strategy, Suggestion, from_scores, item_key, suggestion

if TYPE_CHECKING:
    from ..pool import PoolScores


def select_random(pool: PoolScores, k: int, seed: int, name: str = "random") -> list[Suggestion]:
    """``k`` candidates drawn uniformly without replacement; the score is the random draw."""
    items = sorted(pool.candidates, key=item_key)
    draws = np.random.default_rng(seed).random(len(items))
    order = np.argsort(-draws, kind="stable")[:k]
    return [suggestion(pool, items[i], draws[i], name) for i in order]


def select_random_roi(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
    return select_random(pool, k, seed, name="random-roi")


def select_slice_uniform(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
    """Whole slices (all their open ROIs) in the order that shortens the longest unlabelled run.

    The ROI study's uniform baseline (docs/METHODS.md §2.2). A slice still counts as
    unlabelled while it holds a candidate. Several cases are interleaved round-robin (cases
    in a seeded order), so every case's largest gap is filled first. Score =
    ``-(position in that order)``.
    """
    by_slice: dict[QueryItem, list[QueryItem]] = {}
    for item in sorted(pool.candidates, key=item_key):
        by_slice.setdefault(item.region, []).append(item)
    cases = sorted({region.case for region in by_slice})
    case_order = np.random.default_rng(seed).permutation(len(cases))
    per_case = [_case_slice_order(pool, cases[i], by_slice) for i in case_order]
    slices = [region for picks in zip_longest(*per_case) for region in picks if region is not None]
    items = [item for region in slices for item in by_slice[region]][:k]
    return [suggestion(pool, item, -position, "slice-uniform") for position, item in enumerate(items)]


def _case_slice_order(
    pool: PoolScores, case: str, by_slice: dict[QueryItem, list[QueryItem]]
) -> list[QueryItem]:
    open_slices = {region.slice_index for region in by_slice if region.case == case}
    done = set(range(pool.n_slices[case])) - open_slices
    return [QueryItem(case, n) for n in longest_unlabelled_run_order(pool.n_slices[case], done)]


RANDOM = Strategy(
    name="random",
    granularity=CASE,
    description="Uniformly random unlabelled items (baseline of every study).",
    needs=frozenset(),
    select=from_scores(select_random),
)
RANDOM_ROI = Strategy(
    name="random-roi",
    granularity=ROI,
    description=("Uniformly random (slice, class) ROIs: the random baseline of ROI annotation "
                 "(docs/METHODS.md §2.1)."),
    needs=frozenset(),
    select=from_scores(select_random_roi),
    granularities=frozenset({ROI}),
)
SLICE_UNIFORM = Strategy(
    name="slice-uniform",
    granularity=ROI,
    description=("All ROIs of one slice at a time, slices spread to shorten the longest unlabelled run "
                 "(docs/METHODS.md §2.2)."),
    needs=frozenset(),
    select=from_scores(select_slice_uniform),
    granularities=frozenset({SLICE, ROI}),
)
