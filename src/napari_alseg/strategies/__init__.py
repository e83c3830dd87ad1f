"""Query strategies: every engine of docs/METHODS.md, ranked from one shared round of scores.

:func:`select` is the one entry point (widget, CLI, session and simulation call it); it
handles bad input so that each strategy only ranks. :data:`STRATEGIES` is the registry,
by name, that every front end lists. Importing this package is cheap (numpy only).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..domain import (NEED_BOOTSTRAP, NEED_EFFORT, NEED_FEATURES, NEED_MC, NEED_MODEL, NEED_QUALITY, NEED_SECONDS,
                      NEED_VAE)
from ..errors import AlsegError
from .base import GRANULARITIES, NEEDS, QueryItem, Strategy, Suggestion, rank
from .context import SelectionContext, traced_spans
from .baseline import RANDOM, RANDOM_ROI, SLICE_UNIFORM, select_random
from .dice_per_effort import DICE_PER_EFFORT, DICE_PER_EFFORT_PAPER
from .foreground_random import RANDOM_FOREGROUND, RANDOM_FOREGROUND_ROI
from .gradient_vae import GRADIENT_VAE
from .quality_threshold import QUALITY_THRESHOLD, pseudo_label_candidates
from .redundancy_sampling import NON_SIMILAR, REPRESENTATIVE
from .seconds_priced import ENTROPY_PER_SECOND
from .uncertainty_sampling import BOOTSTRAP, ENTROPY, ENTROPY_MC, MARGINS, MC_DROPOUT_SUM, MC_DROPOUT_TOP

if TYPE_CHECKING:
    from ..pool import PoolScores

__all__ = [
    "GRANULARITIES",
    "NEEDS",
    "STRATEGIES",
    "QueryItem",
    "SelectionContext",
    "Strategy",
    "Suggestion",
    "get_strategy",
    "pseudo_label_candidates",
    "rank",
    "select",
    "traced_spans",
]

STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        RANDOM, RANDOM_ROI, SLICE_UNIFORM, RANDOM_FOREGROUND, RANDOM_FOREGROUND_ROI, ENTROPY, ENTROPY_MC, MARGINS,
        MC_DROPOUT_TOP, MC_DROPOUT_SUM, BOOTSTRAP, REPRESENTATIVE, NON_SIMILAR, GRADIENT_VAE, QUALITY_THRESHOLD, DICE_PER_EFFORT,
        DICE_PER_EFFORT_PAPER, ENTROPY_PER_SECOND,
    )
}

_MISSING = {
    NEED_MODEL: "no model yet",
    NEED_MC: "no MC-dropout scores this round",
    NEED_FEATURES: "no encoder features this round",
    NEED_BOOTSTRAP: "no bootstrap models this round",
    NEED_VAE: "no VAE latents this round",
    NEED_QUALITY: "no quality ratings this round",
    NEED_EFFORT: "no effort model",
    NEED_SECONDS: "no expected seconds this round",
}


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name``; an unknown name is a user mistake."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise AlsegError(f"unknown strategy {name!r}; choose from: {', '.join(STRATEGIES)}") from None


def select(strategy_name: str, pool: PoolScores, k: int, seed: int,
           context: SelectionContext = SelectionContext()) -> list[Suggestion]:
    """Up to ``k`` distinct candidates of ``pool``, best first, by strategy ``strategy_name``.

    ``context``: what the session knows beside the scores (effort, seconds, Dice history,
    marked ranges), read by the engines that price effort; an empty one serves the others.
    Empty pool, all items labelled or ``k = 0`` give ``[]``; fewer candidates than k give
    them all. A strategy whose needs the pool and the context lack (no model, a score not
    computed, no effort model) or that does not rank this granularity falls back to random,
    with the reason in every suggestion's ``message``. Items whose score is NaN are ranked
    last, and the message says so. Ties follow ``np.random.default_rng(seed)``, so a seed
    repeats a round.
    """
    strategy = get_strategy(strategy_name)
    if k < 0:
        raise AlsegError(f"k must be non-negative, got {k}")
    if k == 0 or not pool.candidates:
        return []
    reason = _fallback_reason(strategy, pool, context)
    if reason:
        return [replace(s, message=reason) for s in select_random(pool, k, seed)]
    return _note_missing_scores(strategy.select(pool, k, seed, context))


def _fallback_reason(strategy: Strategy, pool: PoolScores, context: SelectionContext) -> str:
    if pool.granularity not in strategy.granularities:
        kinds = " or ".join(sorted(strategy.granularities))
        return f"{strategy.name} ranks {kinds} items, not {pool.granularity} items: random suggestions"
    missing = sorted(strategy.needs - pool.available() - context.available())
    if missing:
        return f"{strategy.name}: {'; '.join(_MISSING[need] for need in missing)}: random suggestions"
    return ""


def _note_missing_scores(suggestions: list[Suggestion]) -> list[Suggestion]:
    missing = sum(1 for s in suggestions if np.isnan(s.score))
    if not missing:
        return suggestions
    note = f"{missing} item(s) had no score (NaN) and were ranked last"
    return [replace(s, message=f"{s.message}; {note}" if s.message else note) for s in suggestions]
