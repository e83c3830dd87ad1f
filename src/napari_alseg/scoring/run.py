"""The round itself: :func:`score_pool` predicts each region once and fills the pool."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..domain import NEED_BOOTSTRAP, NEED_FEATURES, NEED_QUALITY, NEED_VAE, ROI, QueryItem
from ..image_cache import image_shapes
from ..pool import PoolScores
from ..quality import QualityPredictor, class_quality_features, prediction_dice, quality_features
from ..run_control import RunControl
from .boxes import item_bbox, whole_bbox
from .items import allowed_sets, candidate_items, quality_regions, regions_to_predict
from .predict import RegionPrediction, RoundInputs, normalised_image, predict_region, with_partial_labels
from .request import SCORING_CANCELLED, ScoreRequest, check_bootstrap, checked_inputs, checked_needs
from .terms import item_terms, quality_status, quality_terms
from .vae_latents import add_vae_latents

if TYPE_CHECKING:
    import torch

    from ..model import SegmentationNet

def score_pool(request: ScoreRequest, *, control: RunControl = RunControl.none()) -> PoolScores:
    """Score every candidate of one round for the strategies whose ``request.needs`` are given.

    Pure: reads the request's images and labels, returns a new pool and changes nothing
    else, so it may run in a worker thread. ``control`` gets ``(done, total)`` after each case
    or slice and VAE stage and is asked before each: a stop raises
    :class:`~napari_alseg.errors.Cancelled` (see :class:`ScoreRequest` for the inputs).
    """
    r = request
    needs = checked_needs(r.needs)
    shapes = image_shapes(r.images)
    spec = checked_inputs(r.net, r.spec, shapes, r.labels, r.granularity, r.n_classes)
    allowed = dict(r.allowed or {})
    candidates, labelled = candidate_items(r.granularity, shapes, r.labels, allowed, r.n_classes, set(r.validation))
    pool = PoolScores(
        r.granularity, r.n_classes, r.net is not None, r.model_version, candidates, labelled,
        n_slices={case: int(shape[1]) for case, shape in shapes.items()},
        allowed=allowed_sets(shapes, allowed, r.n_classes),
    )
    pool.bboxes = {item: whole_bbox(item, shapes[item.case][1:]) for item in candidates}
    if r.net is None or spec is None:  # spec is None only without a net
        return pool
    scoring = RoundInputs(r.net, spec.spatial_dims, r.images, shapes, r.labels, allowed, needs, r.mc_samples,
                          list(r.bootstrap_nets or []) if NEED_BOOTSTRAP in needs else [], r.quality_model,
                          r.patch_size, r.device, r.seed, dict(r.spacing or {}))
    check_bootstrap(scoring)
    validation_regions = quality_regions(scoring, r.granularity, r.validation) if NEED_QUALITY in needs else []
    # validation first: its true Dice under this very model teaches the predictor that rates the rest
    regions = sorted(regions_to_predict(pool, needs, validation_regions), key=lambda q: q not in validation_regions)
    total = len(regions) + (2 if NEED_VAE in needs else 0)
    for done, region in enumerate(regions, start=1):
        control.check(SCORING_CANCELLED)
        if region not in validation_regions and scoring.quality_model is None and NEED_QUALITY in needs:
            scoring = replace(scoring, quality_model=fit_quality_model(r.quality_examples, pool.quality_examples, r.seed))
        _score_region(scoring, pool, region, region in validation_regions)
        control.report(done, total)
    if NEED_QUALITY in needs:
        model = scoring.quality_model or fit_quality_model(r.quality_examples, pool.quality_examples, r.seed)
        pool.quality_status, pool.quality_note = quality_status(model), model.note
    if NEED_VAE in needs:
        add_vae_latents(scoring, pool, r.recent, r.vae, r.vae_steps, control, len(regions), total)
    return pool


def fit_quality_model(known: Sequence[tuple[QueryItem, np.ndarray, float]],
                      fresh: Sequence[tuple[QueryItem, np.ndarray, float]], seed: int = 0) -> QualityPredictor:
    """The quality predictor fitted on every prediction of known Dice: ``known`` examples with
    ``fresh`` ones (this round's validation) replacing those of the same item."""
    examples = {item: (features, dice) for item, features, dice in [*known, *fresh]}
    predictor = QualityPredictor(seed=seed)
    if examples:
        predictor.fit(np.stack([np.asarray(f, dtype=float) for f, _d in examples.values()]),
                      np.array([d for _f, d in examples.values()], dtype=float))
    return predictor


def rated_prediction(net: SegmentationNet, image: np.ndarray, labels: np.ndarray, n_classes: int, *,
                     spatial_dims: int, mc_samples: int = 20, patch_size: tuple[int, ...] | None = None,
                     device: str | torch.device | None = None, seed: int = 0) -> tuple[np.ndarray, float]:
    """``(quality features, true Dice)`` of ``net``'s prediction of one fully labelled region
    (image ``(Cin, *S)``, labels ``(*S)``), computed as a round rates a candidate.

    Honest only when ``net`` never trained on the region (out-of-fold, or labelled since).
    """
    from ..model import mc_dropout, predict_proba
    from ..model.preprocessing import normalise_image

    probs = predict_proba(net, image, patch_size=patch_size, device=device)
    variance = mc_dropout(net, image, samples=mc_samples, seed=seed, patch_size=patch_size, device=device).variance
    features = quality_features(normalise_image(image, spatial_dims), probs, variance)
    return features, prediction_dice(probs, labels, n_classes)


def _score_region(scoring: RoundInputs, pool: PoolScores, region: QueryItem, is_validation: bool) -> None:
    items = [item for item in pool.candidates if item.region == region]
    prediction = predict_region(scoring, region, with_mc=bool(items) or is_validation)
    if is_validation:
        _add_quality_example(scoring, pool, region, prediction)
        return
    prediction = with_partial_labels(prediction, scoring, region)
    for item in items:
        pool.terms[item] = item_terms(prediction, item, scoring)
        pool.bboxes[item] = item_bbox(prediction.probs, item, scoring.shapes[item.case][1:])
        if NEED_QUALITY not in scoring.needs:
            continue
        if item.class_id is None:
            features = quality_features(normalised_image(scoring, region), prediction.probs, _variance(prediction))
            pool.quality_features[item] = features
            pool.terms[item].update(quality_terms(scoring.quality_model, features))
        else:  # an ROI: its class's features, for the example its submit gives
            pool.quality_features[item] = class_quality_features(
                normalised_image(scoring, region), prediction.probs, _variance(prediction), item.class_id)
    if NEED_QUALITY in scoring.needs and pool.granularity == ROI and items and _unlabelled(scoring, region):
        # an ROI pool rates its untouched slices whole; each ROI of one carries the slice's rating
        features = quality_features(normalised_image(scoring, region), prediction.probs, _variance(prediction))
        pool.quality_features[region] = features
        pool.region_quality[region] = quality_terms(scoring.quality_model, features)
        for item in items:
            pool.terms[item].update(pool.region_quality[region])
    if NEED_FEATURES in scoring.needs and prediction.features is not None:
        for item in pool.candidates + pool.labelled:
            if item.region == region:
                pool.features[item] = prediction.features


def _variance(prediction: RegionPrediction) -> np.ndarray:
    """The MC-dropout variance quality features read: a round that rates runs MC dropout."""
    if prediction.variance is None:
        raise ValueError("quality features need the MC-dropout variance, and this prediction has none")
    return prediction.variance


def _unlabelled(scoring: RoundInputs, region: QueryItem) -> bool:
    given = scoring.region_labels(region)
    return given is None or not np.asarray(given[1]).any()


def _add_quality_example(scoring: RoundInputs, pool: PoolScores, region: QueryItem,
                         prediction: RegionPrediction) -> None:
    given = scoring.region_labels(region)
    if given is None:
        raise ValueError(f"validation region {region} has no labels to rate the prediction against")
    labels, _mask = given
    features = quality_features(normalised_image(scoring, region), prediction.probs, _variance(prediction))
    pool.quality_examples.append((region, features, prediction_dice(prediction.probs, labels, pool.n_classes)))
