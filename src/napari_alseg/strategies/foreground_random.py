"""The foreground-aware random baseline (nnActive, Lüth et al. 2025, arXiv 2511.19183).

nnActive found that no active-learning method reliably beat a random baseline adapted
to the foreground-background imbalance of medical images: its "Random Label" draws one
query in three uniformly and two in three centred on foreground. nnActive's simulation
reads the foreground from the ground truth; a real annotator's session has only the
current model, so here an item's foreground is its *predicted* foreground, the pool's
:data:`~napari_alseg.domain.TERM_FOREGROUND` term (expected foreground voxels of a case
or slice, expected pixels of class c for an ROI ``(slice, c)``).

Our items are whole cases, slices or ROIs rather than patches, so the same mixture
becomes one sampling weight per item::

    weight_i = (1 - FOREGROUND_SHARE) / N  +  FOREGROUND_SHARE * foreground_i / sum(foreground)

and ``k`` items are drawn without replacement in proportion to it (Efraimidis & Spirakis:
the k largest keys ``u_i ** (1 / weight_i)``, ``u_i`` uniform from the seed), i.e. the
first pick follows ``weight`` exactly and each later one the weights of what is left.
The uniform share keeps every item reachable, including those where the model misses
the foreground, which are the ones worth labelling.

Before any model exists, or when a round's scoring did not compute the foreground term,
this is plain random (:func:`~napari_alseg.strategies.baseline.select_random`), and the
suggestions' message says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, GRANULARITIES, NEED_MODEL, ROI, TERM_FOREGROUND
from .base import QueryItem, Strategy, Suggestion, from_scores, item_key, suggestion
from .baseline import select_random

if TYPE_CHECKING:
    from ..pool import PoolScores

FOREGROUND_SHARE = 2.0 / 3.0  # nnActive's Random Label: two of its three patch kinds sit on foreground
NAME = "random-foreground"
ROI_NAME = "random-foreground-roi"  # the same draw over ROIs: what a 2D stack's session ranks for it


def foreground_weights(foreground: np.ndarray, share: float = FOREGROUND_SHARE) -> np.ndarray:
    """Sampling probabilities ``(N,)`` summing to 1 from predicted foreground ``(N,)`` (voxels).

    Negative or NaN foreground counts as none; with no foreground anywhere the weights
    are uniform.
    """
    foreground = np.nan_to_num(np.asarray(foreground, float), nan=0.0).clip(min=0.0)
    uniform = np.full(len(foreground), 1.0 / max(len(foreground), 1))
    total = foreground.sum()
    if total <= 0.0:
        return uniform
    return (1.0 - share) * uniform + share * foreground / total


def select_random_foreground(pool: PoolScores, k: int, seed: int, name: str = NAME) -> list[Suggestion]:
    """``k`` candidates drawn without replacement in proportion to :func:`foreground_weights`.

    The score is the draw's key ``log(u) / weight`` (larger first). Without a model, or
    without the foreground term on every candidate, it is plain random with a message.
    """
    items: list[QueryItem] = sorted(pool.candidates, key=item_key)
    foreground = np.array([pool.terms.get(item, {}).get(TERM_FOREGROUND, np.nan) for item in items], float)
    if not pool.has_model or np.isnan(foreground).any():
        reason = "no model yet" if not pool.has_model else "no predicted foreground this round"
        return [_with_message(s, name, f"{name}: {reason}: random suggestions") for s in select_random(pool, k, seed)]
    weights = foreground_weights(foreground)
    draws = np.random.default_rng(seed).random(len(items))
    keys = np.log(np.maximum(draws, np.finfo(float).tiny)) / weights
    order = np.argsort(-keys, kind="stable")[:k]
    return [suggestion(pool, items[i], keys[i], name, {TERM_FOREGROUND: float(foreground[i])}) for i in order]


def select_random_foreground_roi(pool: PoolScores, k: int, seed: int) -> list[Suggestion]:
    return select_random_foreground(pool, k, seed, name=ROI_NAME)


def _with_message(s: Suggestion, name: str, message: str) -> Suggestion:
    return replace(s, strategy=name, message=message)


RANDOM_FOREGROUND = Strategy(
    name=NAME,
    granularity=CASE,
    description=("Random items drawn in proportion to their predicted foreground, one third uniformly "
                 "(nnActive's foreground-aware random); plain random before a model exists."),
    needs=frozenset({NEED_MODEL}),
    select=from_scores(select_random_foreground),
    granularities=frozenset(GRANULARITIES),
)
# A session ranks the published granularity's items (a 2D stack: slices for random-foreground);
# as random-roi beside random, this one makes it rank ROIs (slice, class), weighted by p_c.
RANDOM_FOREGROUND_ROI = Strategy(
    name=ROI_NAME,
    granularity=ROI,
    description=("Random ROIs drawn in proportion to their class's predicted pixels, one third uniformly "
                 "(nnActive's foreground-aware random); random ROIs before a model exists."),
    needs=frozenset({NEED_MODEL}),
    select=from_scores(select_random_foreground_roi),
    granularities=frozenset({ROI}),
)
