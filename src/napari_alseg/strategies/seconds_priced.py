"""Uncertainty per expected second: an engine that prices each case or slice in the annotator's time.

``entropy`` asks for the items the model is least sure of, whatever they cost to label.
What a clinician spends is seconds, and correcting a prediction costs its review plus the
outline to redraw, so this engine ranks by ``entropy / expected seconds``
(:func:`~napari_alseg.pricing.expected_seconds`: review per slice showing a structure, plus
each predicted outline times the disagreement the model itself expects). Of two equally
uncertain items the cheaper comes first. An item with nothing predicted has no outline to
go by and is priced at the pool's median.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, NEED_MODEL, NEED_SECONDS, SLICE, TERM_ENTROPY, TERM_EXPECTED_S
from .base import Strategy, Suggestion, from_scores, ranked_suggestions, term_scores

if TYPE_CHECKING:
    from ..pool import PoolScores

NAME = "entropy-per-second"
MIN_SECONDS = 1.0  # no item is cheaper than opening it: keeps a near-empty prediction from dividing by ~0


def price_per_item(pool: PoolScores) -> dict:
    """Expected seconds of every candidate; NaN (nothing predicted) becomes the pool's median."""
    seconds = term_scores(pool, TERM_EXPECTED_S)
    known = [value for value in seconds.values() if math.isfinite(value)]
    typical = float(np.median(known)) if known else MIN_SECONDS
    return {item: max(value if math.isfinite(value) else typical, MIN_SECONDS) for item, value in seconds.items()}


def select(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
    entropy = term_scores(pool, TERM_ENTROPY)
    price = price_per_item(pool)
    scores = {item: entropy[item] / price[item] for item in pool.candidates}
    return ranked_suggestions(pool, scores, k, seed, NAME)


ENTROPY_PER_SECOND = Strategy(
    NAME, CASE, "Mean voxel entropy per expected second of review and correction (the annotator's time).",
    frozenset({NEED_MODEL, NEED_SECONDS}), from_scores(select), granularities=frozenset({CASE, SLICE}),
)
