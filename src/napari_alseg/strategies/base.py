"""What every query strategy shares: items, suggestions, the strategy record and ranking.

A strategy ranks the query items of one round from a :class:`~napari_alseg.scoring.PoolScores`
computed once and shared by all strategies (docs/DESIGN.md §5.5), and the session's
:class:`~napari_alseg.strategies.context.SelectionContext` where it prices effort. Pure numpy:
importing this package pulls in neither torch nor scikit-learn, so the CLI can list the
registry without the model backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..domain import (GRANULARITIES, NEEDS, TERM_UNCERTAINTY, BBox, Granularity, Need, QueryItem,  # noqa: F401 (re-exported)
                      item_key)
from ..quality import QualityEstimate, estimate_from_terms
from .context import SelectionContext

if TYPE_CHECKING:
    from ..pool import PoolScores


@dataclass(frozen=True)
class Suggestion:
    """One ranked query item and why it was chosen.

    ``terms``: the named numbers behind ``score`` (uncertainty, dice_gap, effort_px,
    effort_mm, effort_s, the quality_* numbers the pool keeps).
    ``bbox``: half-open voxel bounds ``((k0, k1), (j0, j1), (i0, i1))`` to zoom to, None =
    the whole case. ``message``: a note for the user, e.g. why the strategy fell back.
    ``quality``: the round's rating of the item's prediction (None: not rated);
    ``pseudo_label``: the prediction is proposed for one-click acceptance; ``effort_guess``:
    the effort terms are the prior's guess (no outline of the class traced yet).
    """

    item: QueryItem
    score: float
    strategy: str
    terms: Mapping[str, float]
    bbox: BBox | None
    message: str = ""
    quality: QualityEstimate | None = None
    pseudo_label: bool = False
    effort_guess: bool = False


SelectFunction = Callable[["PoolScores", int, int, SelectionContext], list[Suggestion]]
ScoresFunction = Callable[["PoolScores", int, int], list[Suggestion]]  # an engine that reads the scores alone


def from_scores(rank_scores: ScoresFunction) -> SelectFunction:
    """An engine that ranks by the pool's scores alone, as a :data:`SelectFunction` (the
    context is left unread)."""
    def select(pool: PoolScores, k: int, seed: int, _context: SelectionContext) -> list[Suggestion]:
        return rank_scores(pool, k, seed)

    return select


@dataclass(frozen=True)
class Strategy:
    """A named query engine. ``select(pool, k, seed, context)`` returns up to k suggestions,
    best first, from the round's scores and (an engine that prices effort) the session's
    :class:`~napari_alseg.strategies.context.SelectionContext`.

    ``granularity`` is the item kind the method was published for; ``granularities`` the
    kinds it can rank (a pool of another kind falls back to random, see
    :func:`napari_alseg.strategies.select`). ``needs`` names what the round's scoring must
    provide, a subset of :data:`NEEDS`.
    """

    name: str
    granularity: Granularity
    description: str
    needs: frozenset[Need]
    select: SelectFunction
    granularities: frozenset[Granularity] = field(default=frozenset(GRANULARITIES))


def rank(scores: Mapping[QueryItem, float], seed: int,
         then: Mapping[QueryItem, float] | None = None) -> list[QueryItem]:
    """Items by descending score; NaN last; exact ties by descending ``then`` (missing or NaN
    counts as lowest) when given, remaining ties in an order drawn from ``seed``.

    The draw comes from ``np.random.default_rng(seed)`` over the items in
    :func:`item_key` order, so it never depends on dict insertion order.
    """
    items = sorted(scores, key=item_key)
    values = np.array([scores[item] for item in items], dtype=float)
    shuffle = np.random.default_rng(seed).permutation(len(items))
    second = np.array([(then or {}).get(item, np.nan) for item in items], dtype=float)
    missing = np.isnan(values)
    order = np.lexsort((shuffle, -np.nan_to_num(second, nan=-np.inf), -np.where(missing, 0.0, values), missing))
    return [items[index] for index in order]


def suggestion(
    pool: PoolScores,
    item: QueryItem,
    score: float,
    strategy: str,
    extra_terms: Mapping[str, float] | None = None,
    message: str = "",
    *,
    pseudo_label: bool = False,
    effort_guess: bool = False,
) -> Suggestion:
    """A suggestion carrying the pool's terms for ``item`` plus ``extra_terms``, its bbox and
    the rating those terms hold."""
    terms = {**pool.terms.get(item, {}), **(extra_terms or {})}
    return Suggestion(item, float(score), strategy, terms, pool.bboxes.get(item), message,
                      estimate_from_terms(terms), pseudo_label, effort_guess)


def ranked_suggestions(
    pool: PoolScores,
    scores: Mapping[QueryItem, float],
    k: int,
    seed: int,
    strategy: str,
    term_name: str = TERM_UNCERTAINTY,
) -> list[Suggestion]:
    """The ``k`` best of ``scores`` as suggestions; the score is also kept as ``term_name``."""
    return [
        suggestion(pool, item, scores[item], strategy, {term_name: scores[item]})
        for item in rank(scores, seed)[:k]
    ]


def term_scores(pool: PoolScores, term: str) -> dict[QueryItem, float]:
    """``pool.terms[item][term]`` for every candidate; NaN where the term is missing."""
    return {item: float(pool.terms.get(item, {}).get(term, np.nan)) for item in pool.candidates}
