"""One region's prediction for scoring: probabilities, MC dropout, bootstrap members, features.

Partially labelled regions get the partial-label posterior (docs/METHODS.md §7.2,
:func:`with_partial_labels`): the same posterior the model uses
(:func:`napari_alseg.model.losses.renormalise_prediction`). Outside the body the prediction is
certain background, as the dock shows it (:func:`within_body`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..body import background_outside, body_mask
from ..domain import NEED_FEATURES, NEED_MC, NEED_QUALITY, Need, QueryItem
from ..quality import QualityPredictor

if TYPE_CHECKING:
    from ..model import McResult, SegmentationNet

@dataclass(frozen=True)
class RegionPrediction:
    """One region's prediction: probs ``(C, *S)``, MC mean/variance ``(C, *S)`` or None,
    bootstrap members ``(M, C, *S)`` or None, features ``(F,)`` or None."""

    probs: np.ndarray
    mc_probs: np.ndarray | None
    variance: np.ndarray | None
    members: np.ndarray | None
    features: np.ndarray | None


@dataclass(frozen=True)
class RoundInputs:
    """The fixed inputs of one :func:`score_pool` call."""

    net: SegmentationNet
    spatial_dims: int
    images: Mapping[str, np.ndarray]
    shapes: Mapping[str, tuple[int, ...]]
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None]
    allowed: Mapping[str, np.ndarray]
    needs: frozenset[Need]
    mc_samples: int
    bootstrap_nets: Sequence[SegmentationNet]
    quality_model: QualityPredictor | None
    patch_size: tuple[int, ...] | None
    device: Any
    seed: int
    spacing: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # case -> in-plane (row, col) mm

    def image(self, region: QueryItem) -> np.ndarray:
        image = self.images[region.case]
        return image if region.slice_index is None else image[:, region.slice_index]

    def region_labels(self, region: QueryItem) -> tuple[np.ndarray, np.ndarray] | None:
        given = self.labels.get(region.case)
        if given is None:
            return None
        data, mask = given
        return (data, mask) if region.slice_index is None else (data[region.slice_index], mask[region.slice_index])

    def region_allowed(self, region: QueryItem) -> np.ndarray | None:
        """``(C,)`` for a slice, ``(k, C)`` for a case; None = every class possible."""
        allowed = self.allowed.get(region.case)
        if allowed is None:
            return None
        return allowed if region.slice_index is None else allowed[region.slice_index]



def predict_region(scoring: RoundInputs, region: QueryItem, with_mc: bool) -> RegionPrediction:
    from ..model import mc_dropout, predict_proba

    image = scoring.image(region)
    options = {"patch_size": scoring.patch_size, "device": scoring.device}
    probs = predict_proba(scoring.net, image, **options)
    mc: McResult | None = None
    if with_mc and scoring.needs & {NEED_MC, NEED_FEATURES, NEED_QUALITY}:
        mc = mc_dropout(scoring.net, image, samples=scoring.mc_samples, seed=scoring.seed, **options)
    members = None
    if with_mc and scoring.bootstrap_nets:
        members = np.stack([predict_proba(member, image, **options) for member in scoring.bootstrap_nets])
    features = None
    if NEED_FEATURES in scoring.needs:
        features = mc.features if mc is not None else _bottleneck_features(scoring, image)
    return within_body(RegionPrediction(probs, None if mc is None else mc.mean_probs,
                                        None if mc is None else mc.variance, members, features), image)


def within_body(prediction: RegionPrediction, image: np.ndarray) -> RegionPrediction:
    """The prediction the annotator is shown (:func:`~napari_alseg.body.background_outside`):
    certain background, no variance, wherever every channel of ``image`` ``(K, *S)`` is empty.

    Scored otherwise, a young model's stray probability in the air counted as expected
    foreground (the brain stack's end slices, mostly air, topped dice-per-effort's queue) and
    as entropy; what the pool is ranked by is now what Go, the prefill and the heat map show."""
    body = body_mask(image)
    if body.all():
        return prediction
    members = prediction.members
    return replace(
        prediction,
        probs=background_outside(prediction.probs, body),
        mc_probs=None if prediction.mc_probs is None else background_outside(prediction.mc_probs, body),
        variance=None if prediction.variance is None else np.where(body, prediction.variance, 0.0).astype(np.float32),
        members=None if members is None else np.stack([background_outside(member, body) for member in members]),
    )


def _bottleneck_features(scoring: RoundInputs, image: np.ndarray) -> np.ndarray:
    """Encoder bottleneck averaged over space ``(F,)``, for items that need no MC pass."""
    import torch

    from ..model.modes import eval_mode
    from ..model.preprocessing import normalise_image

    net = scoring.net
    inputs = torch.from_numpy(normalise_image(image, scoring.spatial_dims))[None]
    with eval_mode(net), torch.no_grad():
        return net.bottleneck_features(inputs.to(next(net.parameters()).device))[0].cpu().numpy()


def with_partial_labels(prediction: RegionPrediction, scoring: RoundInputs, region: QueryItem) -> RegionPrediction:
    """The partial-label posterior (docs/METHODS.md §7.2): labels kept, unlabelled voxels
    renormalised over ``C_n``."""
    given = scoring.region_labels(region)
    allowed = scoring.region_allowed(region)
    if (given is None or not given[1].any()) and allowed is None:
        return prediction
    labels, mask = (None, None) if given is None else (np.asarray(given[0]), np.asarray(given[1], dtype=bool))
    from ..model.losses import renormalise_prediction_array

    n_classes = prediction.probs.shape[0]
    possible = None if allowed is None else (
        np.asarray(allowed, dtype=bool).T.reshape((n_classes, *np.shape(allowed)[:-1]) + (1, 1)))

    def posterior(probs: np.ndarray) -> np.ndarray:
        return renormalise_prediction_array(probs, labels, mask, possible).astype(np.float32, copy=False)

    variance = prediction.variance
    if variance is not None and mask is not None:
        variance = np.where(mask, 0.0, variance).astype(np.float32)
    mc_probs = None if prediction.mc_probs is None else posterior(prediction.mc_probs)
    return replace(prediction, probs=posterior(prediction.probs), mc_probs=mc_probs, variance=variance)


def normalised_image(scoring: RoundInputs, region: QueryItem) -> np.ndarray:
    from ..model.preprocessing import normalise_image

    return normalise_image(scoring.image(region), scoring.spatial_dims)
