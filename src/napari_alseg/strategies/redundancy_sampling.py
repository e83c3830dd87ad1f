"""Uncertainty sampling with annotation-redundancy restriction (docs/METHODS.md §4, Kim et al.).

Take the ``2k`` candidates with the highest MC-dropout top-0.1 % variance, keep ``k`` of
them by cosine similarity of encoder bottleneck features: a greedy maximum cover
(*representative*) or the least similar to what is annotated or already picked
(*non-similar*). The list order is the pick order; ``score = -(pick position)`` and the
terms keep ``uncertainty`` and ``max_similarity`` (cosine to the closest labelled item).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, NEED_FEATURES, NEED_MC, NEED_MODEL, TERM_MC_TOP, TERM_UNCERTAINTY
from ..redundancy import cosine_similarity_matrix, top_then_restrict
from .base import QueryItem, SelectFunction, Strategy, Suggestion, from_scores, rank, suggestion, term_scores

if TYPE_CHECKING:
    from ..pool import PoolScores

UNCERTAINTY_TERM = TERM_MC_TOP


def restricted_ranker(strategy_name: str, method: str) -> SelectFunction:
    """A select function for ``method`` in :data:`napari_alseg.redundancy.RESTRICTION_METHODS`.

    Candidates without an uncertainty (NaN) cannot be compared and follow the picks.
    """

    def select(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
        scores = term_scores(pool, UNCERTAINTY_TERM)
        ordered = rank(scores, seed)
        scored = [item for item in ordered if np.isfinite(scores[item])]
        unscored = [item for item in ordered if not np.isfinite(scores[item])]
        annotated = _feature_matrix(pool, [item for item in pool.labelled if item in pool.features])
        picks: list[QueryItem] = []
        if scored:
            kept = top_then_restrict(
                np.array([scores[item] for item in scored]),
                _feature_matrix(pool, scored),
                min(k, len(scored)),
                method,
                annotated if len(annotated) else None,
            )
            picks = [scored[i] for i in kept]
        picks = (picks + unscored)[:k]
        closest = _max_similarity(pool, picks, annotated)
        return [
            suggestion(pool, item, -position, strategy_name,
                       {TERM_UNCERTAINTY: scores[item], "max_similarity": closest[position]})
            for position, item in enumerate(picks)
        ]

    return from_scores(select)


def _feature_matrix(pool: PoolScores, items: list[QueryItem]) -> np.ndarray:
    """``(N, F)`` bottleneck features of ``items`` (``(0, 0)`` when there are none)."""
    if not items:
        return np.empty((0, 0))
    return np.stack([np.asarray(pool.features[item], dtype=float) for item in items])


def _max_similarity(pool: PoolScores, picks: list[QueryItem], annotated: np.ndarray) -> list[float]:
    """Cosine of each pick to its most similar labelled item; NaN with nothing labelled."""
    if not picks or not len(annotated):
        return [float("nan")] * len(picks)
    similarity = cosine_similarity_matrix(_feature_matrix(pool, picks), annotated)
    return [float(value) for value in similarity.max(axis=1)]


REPRESENTATIVE = Strategy(
    name="representative",
    granularity=CASE,
    description=("Top-2k MC-dropout uncertain, then k by greedy max cover of feature similarity "
                 "(docs/METHODS.md §4.2)."),
    needs=frozenset({NEED_MODEL, NEED_MC, NEED_FEATURES}),
    select=restricted_ranker("representative", "representative"),
)
NON_SIMILAR = Strategy(
    name="non-similar",
    granularity=CASE,
    description=("Top-2k MC-dropout uncertain, then k least similar to labelled and picked items "
                 "(docs/METHODS.md §4.3)."),
    needs=frozenset({NEED_MODEL, NEED_MC, NEED_FEATURES}),
    select=restricted_ranker("non-similar", "non_similar"),
)
