"""The named numbers of one item (docs/METHODS.md §3, §6.1, §7.4), from one region's prediction."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..domain import (
    QUALITY_PROBABILITY_TERMS, TERM_BOOTSTRAP, TERM_ENTROPY, TERM_ENTROPY_MC, TERM_FOREGROUND, TERM_MARGIN,
    TERM_EFFORT_PREDICTED_MM, TERM_MC_SUM, TERM_MC_TOP, TERM_QUALITY_CLASS, TERM_QUALITY_EXAMPLES,
    TERM_QUALITY_DICE, TERM_QUALITY_DICE_HIGH, TERM_QUALITY_DICE_LOW, TERM_QUALITY_PROB, NEED_EFFORT, NEED_SECONDS,
    TERM_EXPECTED_S, QueryItem,
)
from ..effort.boundary import roi_trace_length
from ..pricing import expected_seconds
from ..quality import QualityPredictor
from ..uncertainty import bootstrap_score, class_entropy, margin_score, mean_entropy, top_fraction_mean

if TYPE_CHECKING:
    from .predict import RegionPrediction, RoundInputs

ROI_DILATION = 2  # px: an ROI's scoring region is its predicted area grown by this much


def item_terms(prediction: RegionPrediction, item: QueryItem, scoring: RoundInputs) -> dict[str, float]:
    maps = {"mc_probs": prediction.mc_probs, "variance": prediction.variance, "members": prediction.members}
    given = scoring.region_labels(item.region)
    unlabelled = np.ones(prediction.probs.shape[1:], bool) if given is None else ~np.asarray(given[1], bool)
    if item.class_id is None:
        terms = region_terms(prediction.probs, unlabelled=unlabelled, **maps)
        if NEED_SECONDS in scoring.needs:
            terms[TERM_EXPECTED_S] = expected_seconds(prediction.probs, scoring.spacing.get(item.case, (1.0, 1.0)))
        return terms
    terms = roi_terms(prediction.probs, item.class_id, unlabelled, **maps)
    if NEED_EFFORT in scoring.needs:
        spacing = scoring.spacing.get(item.case, (1.0, 1.0))
        terms[TERM_EFFORT_PREDICTED_MM] = predicted_outline_mm(prediction.probs, item.class_id, given, spacing)
    return terms


def predicted_outline_mm(probs: np.ndarray, class_id: int, given: tuple[np.ndarray, np.ndarray] | None,
                         spacing: tuple[float, float]) -> float:
    """The boundary (mm) of class ``class_id`` in the prediction of a slice ``probs`` ``(C, H, W)``
    (the partial-label posterior: argmax), minus its contact with the classes 1..C-1 delineated on
    the slice (``given``: labels, labelled mask ``(H, W)``), which is free (docs/METHODS.md §7.3).

    NaN when the class is not predicted on the slice: no outline to go by (the effort model
    then uses B alone), rather than a zero that would price the ROI as free.
    """
    predicted = probs.argmax(axis=0) == class_id
    if not predicted.any():
        return math.nan
    neighbours = []
    if given is not None:
        labels, mask = np.asarray(given[0]), np.asarray(given[1], bool)
        neighbours = [mask & (labels == c) for c in np.unique(labels[mask]) if c not in (0, class_id)]
    return roi_trace_length(predicted, neighbours, spacing).mm


def foreground(probs: np.ndarray, unlabelled: np.ndarray | None = None, class_id: int | None = None) -> float:
    """Expected foreground voxels still to label: ``Σ (1 - p_0)`` (or ``Σ p_c`` for class
    ``class_id``) over the ``unlabelled`` voxels of ``probs`` ``(C, *S)``.

    Unlabelled voxels only: labelled ones carry their (one-hot) labels after the partial-label
    posterior, and foreground already delineated is not what a new query buys (nnActive draws
    its foreground patches from what is not yet annotated).
    """
    expected = probs[class_id] if class_id is not None else 1.0 - probs[0]
    if unlabelled is None:
        return float(np.asarray(expected, dtype=np.float64).sum())
    return float(np.asarray(expected, dtype=np.float64)[np.asarray(unlabelled, bool)].sum())


def region_terms(
    probs: np.ndarray,
    mc_probs: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    members: np.ndarray | None = None,
    unlabelled: np.ndarray | None = None,
) -> dict[str, float]:
    """Terms of a whole case or slice: mean entropy (E baseline), margins (B), the predicted
    :func:`foreground` over ``unlabelled`` voxels (None: all; nnActive's baseline); with MC
    dropout (``mc_probs``, ``variance`` ``(C, *S)``) entropy_mc (E), mc_top = mean of the top
    0.1 % class-mean variances (B), mc_sum = their sum (D); with bootstrap ``members``
    ``(M, C, *S)`` the mean variance across models (B)."""
    terms = {TERM_ENTROPY: mean_entropy(probs), TERM_MARGIN: margin_score(probs),
             TERM_FOREGROUND: foreground(probs, unlabelled)}
    if mc_probs is not None and variance is not None:
        voxel_variance = np.asarray(variance).mean(axis=0)
        terms.update({
            TERM_ENTROPY_MC: mean_entropy(mc_probs),
            TERM_MC_TOP: top_fraction_mean(voxel_variance),
            TERM_MC_SUM: float(voxel_variance.sum()),
        })
    if members is not None:
        terms[TERM_BOOTSTRAP] = bootstrap_score(members)
    return terms


def roi_terms(
    probs: np.ndarray,
    class_id: int,
    unlabelled: np.ndarray,
    mc_probs: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    members: np.ndarray | None = None,
) -> dict[str, float]:
    """Terms of a (slice, class) item, as :func:`region_terms` but for class ``class_id`` only.

    The scoring region is the class's predicted area grown by :data:`ROI_DILATION` px,
    restricted to ``unlabelled`` pixels (the whole unlabelled slice when the class is not
    predicted): binary entropy ``H_nc`` (docs/METHODS.md §3.1), margin of ``p_c``, and the variance
    of ``p_c``: top 0.1 % over the slice, sum over the region. The predicted
    :func:`foreground` is ``Σ p_c`` over the slice's unlabelled pixels (not the region: a
    class the model misses still has its small expected area).
    """
    region = ndimage.binary_dilation(probs.argmax(axis=0) == class_id, iterations=ROI_DILATION) & unlabelled
    if not region.any():
        region = unlabelled if unlabelled.any() else np.ones_like(unlabelled)
    terms = {
        TERM_ENTROPY: class_entropy(probs, class_id, region),
        TERM_MARGIN: -float(np.abs(probs[class_id][region] - 0.5).mean()),
        TERM_FOREGROUND: foreground(probs, unlabelled, class_id),
    }
    if mc_probs is not None and variance is not None:
        class_variance = np.asarray(variance)[class_id]
        terms.update({
            TERM_ENTROPY_MC: class_entropy(mc_probs, class_id, region),
            TERM_MC_TOP: top_fraction_mean(class_variance),
            TERM_MC_SUM: float(class_variance[region].sum()),
        })
    if members is not None:
        terms[TERM_BOOTSTRAP] = float(np.asarray(members)[:, class_id].var(axis=0)[region].mean())
    return terms


def quality_terms(model: QualityPredictor | None, features: np.ndarray) -> dict[str, float]:
    """quality_dice with its interval (quality_dice_low, _high), quality_class (0/1/2: the band
    of quality_dice), quality_p_poor/_adjust/_acceptable, quality_prob (that of the class) and
    quality_examples (the rated predictions the predictor was fitted on); NaN without a model."""
    if model is None:
        names = (*QUALITY_PROBABILITY_TERMS, TERM_QUALITY_CLASS, TERM_QUALITY_PROB, TERM_QUALITY_EXAMPLES,
                 TERM_QUALITY_DICE, TERM_QUALITY_DICE_LOW, TERM_QUALITY_DICE_HIGH)
        return dict.fromkeys(names, math.nan)
    probabilities = model.predict_proba(features[None])[0]
    estimate = model.estimate(features[None])[0]
    return {
        **{name: float(p) for name, p in zip(QUALITY_PROBABILITY_TERMS, probabilities)},
        TERM_QUALITY_CLASS: float(estimate.quality_class),
        TERM_QUALITY_PROB: float(probabilities[estimate.quality_class]),
        TERM_QUALITY_EXAMPLES: float(model.n_examples),
        TERM_QUALITY_DICE: estimate.dice,
        TERM_QUALITY_DICE_LOW: estimate.low,
        TERM_QUALITY_DICE_HIGH: estimate.high,
    }


def quality_status(model: QualityPredictor | None) -> str:
    if model is None:
        return "quality unknown: no quality predictor yet"
    return model.reason
