"""Uncertainty sampling: rank by one per-item uncertainty term (docs/METHODS.md §3).

The terms are computed once per round by :func:`napari_alseg.scoring.score_pool` from
:mod:`napari_alseg.uncertainty`; here each strategy only ranks by its own term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..domain import (
    CASE, NEED_BOOTSTRAP, NEED_MC, NEED_MODEL, ROI, TERM_BOOTSTRAP, TERM_ENTROPY, TERM_ENTROPY_MC, TERM_MARGIN,
    TERM_MC_SUM, TERM_MC_TOP, Granularity, Need,
)
from .base import SelectFunction, Strategy, Suggestion, from_scores, ranked_suggestions, term_scores

if TYPE_CHECKING:
    from ..pool import PoolScores


def term_ranker(strategy_name: str, term: str) -> SelectFunction:
    """A select function ranking candidates by ``pool.terms[item][term]`` (higher first)."""

    def select(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
        return ranked_suggestions(pool, term_scores(pool, term), k, seed, strategy_name)

    return from_scores(select)


def _strategy(name: str, term: str, granularity: Granularity, needs: set[Need], description: str) -> Strategy:
    return Strategy(name, granularity, description, frozenset(needs), term_ranker(name, term))


ENTROPY = _strategy(
    "entropy", TERM_ENTROPY, ROI, {NEED_MODEL},
    "Mean voxel entropy of the prediction (per ROI: binary entropy H_nc of its class; docs/METHODS.md §3.1).",
)
ENTROPY_MC = _strategy(
    "entropy-mc", TERM_ENTROPY_MC, ROI, {NEED_MODEL, NEED_MC},
    "Entropy of the MC-dropout mean prediction, S = 20 samples (docs/METHODS.md §3.6).",
)
MARGINS = _strategy(
    "margins", TERM_MARGIN, CASE, {NEED_MODEL},
    "Foreground probabilities nearest 0.5: u = -mean|p - 0.5| (docs/METHODS.md §3.2).",
)
MC_DROPOUT_TOP = _strategy(
    "mc-dropout-top", TERM_MC_TOP, CASE, {NEED_MODEL, NEED_MC},
    "Mean of the top 0.1 % MC-dropout voxel variances: small uncertain structures (docs/METHODS.md §3.4).",
)
MC_DROPOUT_SUM = _strategy(
    "mc-dropout-sum", TERM_MC_SUM, CASE, {NEED_MODEL, NEED_MC},
    "Sum over voxels of the class-mean MC-dropout variance: broad uncertain volume (docs/METHODS.md §3.5).",
)
BOOTSTRAP = _strategy(
    "bootstrap", TERM_BOOTSTRAP, CASE, {NEED_MODEL, NEED_BOOTSTRAP},
    "Mean variance across models trained on bootstrap resamples of the labels (docs/METHODS.md §3.7).",
)
