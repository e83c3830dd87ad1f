"""Quality-threshold active learning with pseudo-labels (METHODS A, Boehringer et al. 2023).

Scoring rates each candidate's prediction with :class:`napari_alseg.quality.QualityPredictor`
(terms ``quality_class`` 0 Poor / 1 Adjust / 2 Acceptable, ``quality_p_poor``,
``quality_p_adjust``, ``quality_p_acceptable``, ``quality_prob``). Two outputs:

* :func:`select_quality_threshold` (the registered strategy) gives the annotator the
  predictions that need an expert, Poor before Adjust (score
  ``p_poor + 0.5 p_adjust``); items of unknown quality follow them. Only when fewer
  than k remain does it fill with Acceptable ones, marked ``pseudo_label = 1.0``.
* :func:`pseudo_label_candidates` lists the Acceptable predictions the session offers for
  one-click acceptance as pseudo-labels, most confident first.

Without a fitted predictor (too few rated cases) every quality is NaN and the strategy
ranks by MC-dropout top-0.1 % variance instead, saying so in the message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..quality import ACCEPTABLE
from .base import QueryItem, Strategy, Suggestion, rank, ranked_suggestions, suggestion, term_scores

if TYPE_CHECKING:
    from ..scoring import PoolScores

FALLBACK_NOTE = "ranked by MC-dropout uncertainty instead"


def select_quality_threshold(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
    """Expert items first (Poor, Adjust, unknown), then Acceptable ones flagged as pseudo-labels."""
    quality = term_scores(pool, "quality_class")
    if not any(np.isfinite(value) for value in quality.values()):
        message = f"{pool.quality_status or 'quality unknown'}: {FALLBACK_NOTE}"
        return [replace(s, message=message)
                for s in ranked_suggestions(pool, term_scores(pool, "mc_top"), k, seed, "quality-threshold")]
    badness = _badness(pool)
    for_expert = {item: badness[item] for item, value in quality.items() if value != ACCEPTABLE}
    acceptable = {item: badness[item] for item, value in quality.items() if value == ACCEPTABLE}
    picks = [(item, 0.0) for item in rank(for_expert, seed)]
    picks += [(item, 1.0) for item in rank(acceptable, seed)]
    return [suggestion(pool, item, badness[item], "quality-threshold", {"pseudo_label": pseudo})
            for item, pseudo in picks[:k]]


def pseudo_label_candidates(pool: PoolScores, threshold: float = 0.5) -> list[Suggestion]:
    """Candidates predicted Acceptable with ``P(Acceptable) >= threshold``, most confident first.

    Each carries ``pseudo_label = 1.0``; the session shows them for one-click acceptance
    (kind pseudo-accepted) or rejection. Empty when quality is unknown.
    """
    quality = term_scores(pool, "quality_class")
    confidence = term_scores(pool, "quality_p_acceptable")
    chosen = {item: confidence[item] for item, value in quality.items()
              if value == ACCEPTABLE and confidence[item] >= threshold}
    return [suggestion(pool, item, chosen[item], "quality-threshold", {"pseudo_label": 1.0})
            for item in rank(chosen, seed=0)]


def _badness(pool: PoolScores) -> dict[QueryItem, float]:
    """``p_poor + 0.5 p_adjust`` per candidate (0 = surely Acceptable, 1 = surely Poor)."""
    poor = term_scores(pool, "quality_p_poor")
    adjust = term_scores(pool, "quality_p_adjust")
    return {item: poor[item] + 0.5 * adjust[item] for item in pool.candidates}


QUALITY_THRESHOLD = Strategy(
    name="quality-threshold",
    granularity="case",
    description="Predicted-quality triage: Poor/Adjust to the expert, Acceptable offered as pseudo-labels (METHODS A).",
    needs=frozenset({"model", "mc", "quality"}),
    select=select_quality_threshold,
    granularities=frozenset({"case", "slice"}),
)
