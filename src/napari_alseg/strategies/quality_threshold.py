"""Quality-threshold active learning with pseudo-labels (docs/METHODS.md §6.4, Boehringer et al. 2023).

Scoring rates each candidate's prediction with :class:`napari_alseg.quality.QualityPredictor`
(terms ``quality_dice`` with its 80 % interval ``quality_dice_low`` / ``_high``,
``quality_class`` 0 Poor / 1 Adjust / 2 Acceptable: the band of that Dice, ``quality_p_poor``,
``quality_p_adjust``, ``quality_p_acceptable``, ``quality_prob``). Two outputs:

* :func:`select_quality_threshold` (the registered strategy) gives the annotator the
  predictions that need an expert, lowest predicted Dice first (score ``1 - Dice``; a
  rating without one: ``p_poor + 0.5 p_adjust``); items of unknown quality follow them.
  Only when fewer than k remain does it fill with Acceptable ones, marked
  ``pseudo_label``. An Acceptable rating counts only once the predictor rests on
  :data:`~napari_alseg.quality.MIN_FIT_CASES` examples; before, the item goes to the expert.
* :func:`pseudo_label_candidates` lists the Acceptable predictions the session offers for
  one-click acceptance as pseudo-labels, most confident first.

Without ratings (no model, or quality not scored) every quality is NaN and the strategy
ranks by MC-dropout top-0.1 % variance instead, saying so in the message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..domain import (
    CASE, NEED_MC, NEED_MODEL, NEED_QUALITY, SLICE, TERM_MC_TOP, TERM_QUALITY_CLASS,
    TERM_QUALITY_DICE, TERM_QUALITY_EXAMPLES, TERM_QUALITY_P_ACCEPTABLE, TERM_QUALITY_P_ADJUST, TERM_QUALITY_P_POOR,
)
from ..quality import ACCEPTABLE, MIN_FIT_CASES
from .base import QueryItem, Strategy, Suggestion, from_scores, rank, ranked_suggestions, suggestion, term_scores

if TYPE_CHECKING:
    from ..pool import PoolScores

FALLBACK_NOTE = "ranked by MC-dropout uncertainty instead"


def select_quality_threshold(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
    """Expert items first (Poor, Adjust, unknown), then Acceptable ones flagged as pseudo-labels."""
    quality = term_scores(pool, TERM_QUALITY_CLASS)
    if not any(np.isfinite(value) for value in quality.values()):
        message = f"{pool.quality_status or 'quality unknown'}: {FALLBACK_NOTE}"
        return [replace(s, message=message)
                for s in ranked_suggestions(pool, term_scores(pool, TERM_MC_TOP), k, seed, "quality-threshold")]
    badness = _badness(pool)
    offerable = _offerable(pool)
    for_expert = {item: badness[item] for item in quality if item not in offerable}
    acceptable = {item: badness[item] for item in quality if item in offerable}
    picks = [(item, False) for item in rank(for_expert, seed)]
    picks += [(item, True) for item in rank(acceptable, seed)]
    return [suggestion(pool, item, badness[item], "quality-threshold", pseudo_label=pseudo)
            for item, pseudo in picks[:k]]


def pseudo_label_candidates(pool: PoolScores, threshold: float = 0.5) -> list[Suggestion]:
    """Candidates predicted Acceptable with ``P(Acceptable) >= threshold``, most confident first.

    Each is marked ``pseudo_label``; the session shows them for one-click acceptance
    (kind pseudo-accepted) or rejection. Empty when quality is unknown.
    """
    confidence = term_scores(pool, TERM_QUALITY_P_ACCEPTABLE)
    chosen = {item: confidence[item] for item in _offerable(pool) if confidence[item] >= threshold}
    return [suggestion(pool, item, chosen[item], "quality-threshold", pseudo_label=True)
            for item in rank(chosen, seed=0)]


def _offerable(pool: PoolScores) -> set[QueryItem]:
    """Candidates rated Acceptable by a predictor calibrated on at least :data:`MIN_FIT_CASES`
    predictions of known Dice: a rating that is still the model's own soft Dice (or nearly)
    sends the item to the expert, never into training unchecked."""
    quality = term_scores(pool, TERM_QUALITY_CLASS)
    basis = term_scores(pool, TERM_QUALITY_EXAMPLES)
    return {item for item, value in quality.items() if value == ACCEPTABLE and basis[item] >= MIN_FIT_CASES}


def _badness(pool: PoolScores) -> dict[QueryItem, float]:
    """``1 - predicted Dice`` per candidate where the rating has one, else ``p_poor + 0.5 p_adjust``
    (0 = surely Acceptable, 1 = surely Poor)."""
    poor = term_scores(pool, TERM_QUALITY_P_POOR)
    adjust = term_scores(pool, TERM_QUALITY_P_ADJUST)
    dice = term_scores(pool, TERM_QUALITY_DICE)
    return {item: 1.0 - dice[item] if np.isfinite(dice[item]) else poor[item] + 0.5 * adjust[item]
            for item in pool.candidates}


QUALITY_THRESHOLD = Strategy(
    name="quality-threshold",
    granularity=CASE,
    description=("Predicted-quality triage: Poor/Adjust to the expert, Acceptable offered as pseudo-labels "
                 "(docs/METHODS.md §6.4)."),
    needs=frozenset({NEED_MODEL, NEED_MC, NEED_QUALITY}),
    select=from_scores(select_quality_threshold),
    granularities=frozenset({CASE, SLICE}),
)
