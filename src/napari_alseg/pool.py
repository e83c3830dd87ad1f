"""The record of one round of pool scoring: what every strategy ranks from (docs/DESIGN.md §3.3).

It lies below both :mod:`napari_alseg.scoring` (which fills it) and
:mod:`napari_alseg.strategies` (which rank it), so neither imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .domain import (
    NEED_BOOTSTRAP, NEED_FEATURES, NEED_MC, NEED_MODEL, NEED_QUALITY, NEED_SECONDS, NEED_VAE, TERM_BOOTSTRAP,
    TERM_EXPECTED_S, TERM_MC_TOP, TERM_QUALITY_CLASS, UNCERTAINTY_TERMS, BBox, Granularity, Need, QueryItem,
    item_key,
)
from .store.records import ScoredItem

PRIMARY_TERMS = UNCERTAINTY_TERMS  # the stored score of an item: the first of these present


@dataclass
class PoolScores:
    """Everything the strategies rank from, for one round.

    ``candidates``: unlabelled, non-validation items of ``granularity``; ``labelled``: items
    already labelled (ROIs: (slice, class) delineated). ``terms[item]``: named numbers
    (entropy, entropy_mc, margin, mc_top, mc_sum, bootstrap in nats / probability²;
    quality_*). ``features[item]``: bottleneck features ``(F,)`` of candidates and labelled
    items. ``bboxes[item]``: half-open ``((k0, k1), (j0, j1), (i0, i1))`` around the predicted
    foreground (an ROI: its class) plus :data:`BBOX_MARGIN`, the whole region when nothing
    is predicted. ``allowed[(case, slice)]``: ``C_n`` (docs/METHODS.md §7.1). ``vae_latents``: latent means of
    items and of gradient seeds; ``gradient_latents[seed]``: ``z'`` after the gradient
    step. ``quality_features``:
    :func:`~napari_alseg.quality.quality_features` of candidates, to pair later with the
    Dice the annotator's correction reveals; ``quality_examples``: (validation item,
    features, true Dice); ``quality_status``: why quality is unknown ("" when rated); ``quality_note``: a caveat on
    the ratings (e.g. one class only among the examples); ``region_quality``: an ROI pool's
    ratings of its unlabelled slices (quality terms per slice).
    ``vae``: the VAE used, to reuse next round. What an engine ranks by beside the scores
    (effort, seconds, Dice history, marked ranges) is not here: the session hands it to
    :func:`~napari_alseg.strategies.select` as a
    :class:`~napari_alseg.strategies.context.SelectionContext`.
    """

    granularity: Granularity
    n_classes: int
    has_model: bool
    model_version: str | None
    candidates: list[QueryItem]
    labelled: list[QueryItem]
    terms: dict[QueryItem, dict[str, float]] = field(default_factory=dict)
    features: dict[QueryItem, np.ndarray] = field(default_factory=dict)
    bboxes: dict[QueryItem, BBox] = field(default_factory=dict)
    n_slices: dict[str, int] = field(default_factory=dict)
    allowed: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    vae_latents: dict[QueryItem, np.ndarray] | None = None
    gradient_latents: dict[QueryItem, np.ndarray] | None = None
    quality_features: dict[QueryItem, np.ndarray] = field(default_factory=dict)
    quality_examples: list[tuple[QueryItem, np.ndarray, float]] = field(default_factory=list)
    quality_status: str = ""
    quality_note: str = ""
    region_quality: dict[QueryItem, dict[str, float]] = field(default_factory=dict)
    vae: Any = None

    def available(self) -> frozenset[Need]:
        """Which of :data:`~napari_alseg.strategies.NEEDS` this pool can serve (the effort
        model is the selection context's)."""
        def has_term(name: str) -> bool:
            return any(name in terms for terms in self.terms.values())

        present = {
            NEED_MODEL: self.has_model,
            NEED_MC: has_term(TERM_MC_TOP),
            NEED_FEATURES: bool(self.candidates) and all(item in self.features for item in self.candidates),
            NEED_BOOTSTRAP: has_term(TERM_BOOTSTRAP),
            NEED_VAE: self.vae_latents is not None and self.gradient_latents is not None,
            NEED_QUALITY: has_term(TERM_QUALITY_CLASS),
            NEED_SECONDS: has_term(TERM_EXPECTED_S),
        }
        return frozenset(need for need, ok in present.items() if ok)

    def to_scored_items(self) -> list[ScoredItem]:
        """Candidates for ``project.store_scores``: finite terms only; score = the first of
        :data:`PRIMARY_TERMS` present (``-inf`` when none, e.g. without a model)."""
        scored = []
        for item in sorted(self.candidates, key=item_key):
            terms = {name: float(value) for name, value in self.terms.get(item, {}).items() if math.isfinite(value)}
            score = next((terms[name] for name in PRIMARY_TERMS if name in terms), -math.inf)
            scored.append(ScoredItem(item.case, item.slice_index, item.class_id, score, terms))
        return scored
