"""One round of pool scoring, computed once and shared by every strategy (DESIGN).

:func:`score_pool` predicts each region once: a case with the 3D net (granularity
``"case"``) or a slice with the 2D net (``"slice"``, ``"roi"``). It runs MC dropout once
(the head-only sampler of :mod:`napari_alseg.model.inference`) and derives every term
the requested ``needs`` call for (METHODS B, D, E), the encoder features (B), the
quality rating (A), the VAE latents and gradient steps (C), and a bounding box per
item to zoom to. Strategies (:mod:`napari_alseg.strategies`) only rank the result.

Partially labelled regions are scored on METHODS E's prediction: labelled voxels take
their label, unlabelled ones are renormalised over the classes still possible there
(``C_n``), so delineated classes stop looking uncertain. Validation regions are never
candidates; with labels they yield honest (features, Dice) examples for the quality
predictor (:attr:`PoolScores.quality_examples`).

Cancel: ``should_stop()`` is checked before each case or slice and before each VAE
stage; when it answers True, :class:`ScoringCancelled` is raised. No partial pool is
returned: it would rank items by whichever happened to be scored first.

torch is imported only inside the functions that run a model, so importing this module
(and :class:`PoolScores`) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from .effort import EffortModel, SecondsModel
from .errors import AlsegError
from .image_cache import image_shapes
from .quality import QualityPredictor, prediction_dice, quality_features
from .store.records import ScoredItem
from .strategies.base import GRANULARITIES, NEEDS, BBox, QueryItem, item_key
from .uncertainty import bootstrap_score, class_entropy, margin_score, mean_entropy, top_fraction_mean

if TYPE_CHECKING:
    from .model import McResult, ModelSpec, SegmentationNet, TrainConfig, TrainingItem
    from .vae import ConvVAE

BBOX_MARGIN = (2, 8, 8)  # voxels added on each side along (k, j, i)
BBOX_SLAB_VOXELS = 1 << 22  # voxels argmax-ed at once when boxing a prediction (32 MB of int64)
ROI_DILATION = 2  # px: an ROI's scoring region is its predicted area grown by this much
PRIMARY_TERMS = ("mc_top", "entropy_mc", "entropy", "margin")
DEFAULT_VAE_STEPS = 300


class ScoringCancelled(AlsegError):
    """``should_stop()`` asked to stop; nothing of the round is kept."""


@dataclass
class PoolScores:
    """Everything the strategies rank from, for one round.

    ``candidates``: unlabelled, non-validation items of ``granularity``; ``labelled``: items
    already labelled (ROIs: (slice, class) delineated). ``terms[item]``: named numbers
    (entropy, entropy_mc, margin, mc_top, mc_sum, bootstrap in nats / probability²;
    quality_*). ``features[item]``: bottleneck features ``(F,)`` of candidates and labelled
    items. ``bboxes[item]``: half-open ``((k0, k1), (j0, j1), (i0, i1))`` around the predicted
    foreground (an ROI: its class) plus :data:`BBOX_MARGIN`, the whole region when nothing
    is predicted. ``class_dice_history``: per round, Dice on the manual labels ``(C-1,)`` of classes
    1..C-1. ``allowed[(case, slice)]``: METHODS E ``C_n``. ``vae_latents``: latent means of
    items and of gradient seeds; ``gradient_latents[seed]``: ``z'`` after the gradient
    step. ``spacing[case]``: in-plane pixel size (row, col) in mm. ``quality_features``:
    :func:`~napari_alseg.quality.quality_features` of candidates, to pair later with the
    Dice the annotator's correction reveals; ``quality_examples``: (validation item,
    features, true Dice); ``quality_status``: why quality is unknown ("" when rated).
    ``vae``: the VAE used, to reuse next round.
    """

    granularity: str
    n_classes: int
    has_model: bool
    model_version: str | None
    candidates: list[QueryItem]
    labelled: list[QueryItem]
    terms: dict[QueryItem, dict[str, float]] = field(default_factory=dict)
    features: dict[QueryItem, np.ndarray] = field(default_factory=dict)
    bboxes: dict[QueryItem, BBox] = field(default_factory=dict)
    n_slices: dict[str, int] = field(default_factory=dict)
    class_dice_history: list[np.ndarray] = field(default_factory=list)
    effort: EffortModel | None = None
    allowed: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    vae_latents: dict[QueryItem, np.ndarray] | None = None
    gradient_latents: dict[QueryItem, np.ndarray] | None = None
    seconds_model: SecondsModel | None = None
    spacing: dict[str, tuple[float, float]] = field(default_factory=dict)
    quality_features: dict[QueryItem, np.ndarray] = field(default_factory=dict)
    quality_examples: list[tuple[QueryItem, np.ndarray, float]] = field(default_factory=list)
    quality_status: str = ""
    vae: Any = None

    def available(self) -> frozenset[str]:
        """Which of :data:`~napari_alseg.strategies.NEEDS` this pool can serve."""
        def has_term(name: str) -> bool:
            return any(name in terms for terms in self.terms.values())

        present = {
            "model": self.has_model,
            "mc": has_term("mc_top"),
            "features": bool(self.candidates) and all(item in self.features for item in self.candidates),
            "bootstrap": has_term("bootstrap"),
            "vae": self.vae_latents is not None and self.gradient_latents is not None,
            "quality": has_term("quality_class"),
            "effort": self.effort is not None,
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


@dataclass(frozen=True)
class _Prediction:
    """One region's prediction: probs ``(C, *S)``, MC mean/variance ``(C, *S)`` or None,
    bootstrap members ``(M, C, *S)`` or None, features ``(F,)`` or None."""

    probs: np.ndarray
    mc_probs: np.ndarray | None
    variance: np.ndarray | None
    members: np.ndarray | None
    features: np.ndarray | None


@dataclass(frozen=True)
class _Round:
    """The fixed inputs of one :func:`score_pool` call."""

    net: SegmentationNet
    spatial_dims: int
    images: Mapping[str, np.ndarray]
    shapes: Mapping[str, tuple[int, ...]]
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None]
    allowed: Mapping[str, np.ndarray]
    needs: frozenset[str]
    mc_samples: int
    bootstrap_nets: Sequence[SegmentationNet]
    quality_model: QualityPredictor | None
    patch_size: tuple[int, ...] | None
    device: Any
    seed: int

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


def score_pool(
    net: SegmentationNet | None,
    spec: ModelSpec | None,
    images: Mapping[str, np.ndarray],
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    *,
    granularity: str,
    n_classes: int,
    needs: Collection[str],
    mc_samples: int = 20,
    bootstrap_nets: Sequence[SegmentationNet] | None = None,
    quality_model: QualityPredictor | None = None,
    validation: Collection[QueryItem] = frozenset(),
    model_version: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: Any = None,
    allowed: Mapping[str, np.ndarray] | None = None,
    effort: EffortModel | None = None,
    seconds_model: SecondsModel | None = None,
    spacing: Mapping[str, tuple[float, float]] | None = None,
    class_dice_history: Sequence[np.ndarray] = (),
    recent: Collection[QueryItem] | None = None,
    vae: ConvVAE | None = None,
    vae_steps: int = DEFAULT_VAE_STEPS,
    patch_size: tuple[int, ...] | None = None,
    seed: int = 0,
) -> PoolScores:
    """Score every candidate of one round for the strategies whose ``needs`` are given.

    ``images``: case → ``(Cin, k, j, i)`` float32, read one region at a time in case order (a
    :class:`~napari_alseg.image_cache.LazyImages` loads each case only then, and gives every
    shape without loading); ``labels``: case → (class ids ``(k, j, i)``, labelled mask
    ``(k, j, i)`` bool) or None. A case (slice) is labelled when its mask is
    all True; an ROI when its class was delineated on the slice (labelled pixels of that
    class, or the whole slice labelled). ``net`` None: no model yet; only items and whole-
    region boxes are filled (random and slice-uniform still work). ``mc_samples``: T (S =
    20 in METHODS E). ``bootstrap_nets``: 2+ nets (:func:`train_bootstrap_nets`).
    ``validation``: items (or whole cases / slices) never suggested. ``allowed``: case →
    ``(k, C)`` bool, METHODS E ``C_n`` (``Session.allowed_classes``); None = all classes.
    ``effort``, ``seconds_model``, ``spacing``, ``class_dice_history`` pass through to
    dice-per-effort. ``recent``: items labelled last round, the gradient-vae seeds (None =
    all labelled). ``vae``: reuse a trained VAE instead of training one for ``vae_steps``.
    ``progress(done, total)`` after each case or slice and VAE stage; see the module
    docstring for ``should_stop``.
    """
    needs = _checked_needs(needs)
    shapes = image_shapes(images)
    spec = _checked_inputs(net, spec, shapes, labels, granularity, n_classes)
    allowed = dict(allowed or {})
    candidates, labelled = _items(granularity, shapes, labels, allowed, n_classes, set(validation))
    pool = PoolScores(
        granularity, n_classes, net is not None, model_version, candidates, labelled,
        n_slices={case: int(shape[1]) for case, shape in shapes.items()},
        class_dice_history=[np.asarray(d, dtype=float) for d in class_dice_history],
        effort=effort, seconds_model=seconds_model, spacing=dict(spacing or {}),
        allowed=_allowed_sets(shapes, allowed, n_classes),
    )
    pool.bboxes = {item: _whole_bbox(item, shapes[item.case][1:]) for item in candidates}
    if net is None:
        return pool
    scoring = _Round(net, spec.spatial_dims, images, shapes, labels, allowed, needs, mc_samples,
                     list(bootstrap_nets or []) if "bootstrap" in needs else [], quality_model,
                     patch_size, device, seed)
    _check_bootstrap(scoring)
    validation_regions = _quality_regions(scoring, granularity, validation) if "quality" in needs else []
    regions = _regions(pool, needs, validation_regions)
    total = len(regions) + (2 if "vae" in needs else 0)
    for done, region in enumerate(regions, start=1):
        _check_stop(should_stop)
        _score_region(scoring, pool, region, region in validation_regions)
        if progress is not None:
            progress(done, total)
    if "quality" in needs:
        pool.quality_status = _quality_status(quality_model)
    if "vae" in needs:
        _add_vae_latents(scoring, pool, recent, vae, vae_steps, progress, should_stop, len(regions), total)
    return pool


def train_bootstrap_nets(
    net: SegmentationNet,
    items: Sequence[TrainingItem],
    config: TrainConfig | None = None,
    n: int = 3,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> list[SegmentationNet]:
    """``n`` nets fine-tuned from ``net`` on bootstrap resamples of ``items`` (METHODS B).

    Each member draws ``len(items)`` items with replacement (``default_rng(seed)``) and
    trains with ``config`` under seed ``seed + member``. Raises :class:`ScoringCancelled`
    when ``should_stop`` ends a member's training.
    """
    from .model import TrainConfig, fine_tune

    if n < 2:
        raise AlsegError(f"bootstrapping needs at least 2 models to measure their variance, got n={n}")
    if not items:
        raise AlsegError("bootstrapping needs labelled items to resample")
    config = config or TrainConfig()
    rng = np.random.default_rng(seed)
    members = []
    for member in range(n):
        resample = [items[i] for i in rng.integers(len(items), size=len(items))]
        result = fine_tune(net, resample, replace(config, seed=seed + member), should_stop=should_stop)
        if result.cancelled or result.state_dict is None:
            raise ScoringCancelled("bootstrap training cancelled")
        trained = net.spec.build()
        trained.load_state_dict(result.state_dict)
        members.append(trained.eval())
    return members


# ---------------------------------------------------------------------------- items


def _items(
    granularity: str,
    shapes: Mapping[str, tuple[int, ...]],
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    allowed: Mapping[str, np.ndarray],
    n_classes: int,
    validation: set[QueryItem],
) -> tuple[list[QueryItem], list[QueryItem]]:
    """(candidates, labelled) in :func:`item_key` order; validation items in neither."""
    candidates: list[QueryItem] = []
    labelled: list[QueryItem] = []
    for case in sorted(shapes):
        given = labels.get(case)
        mask = None if given is None else np.asarray(given[1], dtype=bool)
        if granularity == "case":
            regions = [(QueryItem(case), mask)]
        else:
            regions = [(QueryItem(case, n), None if mask is None else mask[n]) for n in range(shapes[case][1])]
        for region, region_mask in regions:
            if _is_validation(region, validation):
                continue
            done = region_mask is not None and bool(region_mask.all())
            if granularity != "roi":
                (labelled if done else candidates).append(region)
                continue
            data = None if given is None else np.asarray(given[0])[region.slice_index]
            delineated = _delineated(data, region_mask, n_classes)
            possible = _allowed_row(allowed, region, n_classes)
            labelled += [QueryItem(case, region.slice_index, c) for c in sorted(delineated - {0})]
            candidates += [QueryItem(case, region.slice_index, c) for c in sorted(possible - delineated - {0})]
    return candidates, labelled


def _is_validation(region: QueryItem, validation: set[QueryItem]) -> bool:
    return region in validation or QueryItem(region.case) in validation


def _delineated(data: np.ndarray | None, mask: np.ndarray | None, n_classes: int) -> set[int]:
    """Classes given on a slice: all of them when it is fully labelled, else those painted."""
    if mask is None or not mask.any():
        return set()
    if mask.all():
        return set(range(n_classes))
    return {int(c) for c in np.unique(data[mask])}


def _allowed_row(allowed: Mapping[str, np.ndarray], region: QueryItem, n_classes: int) -> set[int]:
    rows = allowed.get(region.case)
    if rows is None:
        return set(range(n_classes))
    return {int(c) for c in np.flatnonzero(rows[region.slice_index])}


def _allowed_sets(shapes: Mapping[str, tuple[int, ...]], allowed: Mapping[str, np.ndarray],
                  n_classes: int) -> dict[tuple[str, int], set[int]]:
    return {(case, n): _allowed_row(allowed, QueryItem(case, n), n_classes)
            for case, shape in shapes.items() for n in range(shape[1])}


def _regions(pool: PoolScores, needs: frozenset[str], validation_regions: list[QueryItem]) -> list[QueryItem]:
    """Regions to predict: those with candidates, labelled ones when features are needed
    (non-similar compares with them), and rated validation regions."""
    wanted = {item.region for item in pool.candidates}
    if "features" in needs:
        wanted |= {item.region for item in pool.labelled}
    wanted |= set(validation_regions)
    return sorted(wanted, key=item_key)


def _quality_regions(scoring: _Round, granularity: str, validation: Collection[QueryItem]) -> list[QueryItem]:
    """Validation cases (slices) with full labels: their true Dice is an honest quality target."""
    if granularity == "roi":
        return []
    validation = set(validation)
    regions = []
    for case, shape in scoring.shapes.items():
        given = scoring.labels.get(case)
        if given is None:
            continue
        slices = [None] if granularity == "case" else range(shape[1])
        for n in slices:
            region = QueryItem(case, n)
            if _is_validation(region, validation) and scoring.region_labels(region)[1].all():
                regions.append(region)
    return regions


# ---------------------------------------------------------------------------- prediction


def _score_region(scoring: _Round, pool: PoolScores, region: QueryItem, is_validation: bool) -> None:
    items = [item for item in pool.candidates if item.region == region]
    prediction = _predict(scoring, region, with_mc=bool(items) or is_validation)
    if is_validation:
        _add_quality_example(scoring, pool, region, prediction)
        return
    prediction = _with_partial_labels(prediction, scoring, region)
    for item in items:
        pool.terms[item] = _item_terms(prediction, item, scoring)
        pool.bboxes[item] = _item_bbox(prediction.probs, item, scoring.shapes[item.case][1:])
        if "quality" in scoring.needs and item.class_id is None:
            features = quality_features(_normalised(scoring, region), prediction.probs, prediction.variance)
            pool.quality_features[item] = features
            pool.terms[item].update(_quality_terms(scoring.quality_model, features))
    if "features" in scoring.needs:
        for item in pool.candidates + pool.labelled:
            if item.region == region:
                pool.features[item] = prediction.features


def _predict(scoring: _Round, region: QueryItem, with_mc: bool) -> _Prediction:
    from .model import mc_dropout, predict_proba

    image = scoring.image(region)
    options = {"patch_size": scoring.patch_size, "device": scoring.device}
    probs = predict_proba(scoring.net, image, **options)
    mc: McResult | None = None
    if with_mc and scoring.needs & {"mc", "features", "quality"}:
        mc = mc_dropout(scoring.net, image, samples=scoring.mc_samples, seed=scoring.seed, **options)
    members = None
    if with_mc and scoring.bootstrap_nets:
        members = np.stack([predict_proba(member, image, **options) for member in scoring.bootstrap_nets])
    features = None
    if "features" in scoring.needs:
        features = mc.features if mc is not None else _bottleneck_features(scoring, image)
    return _Prediction(probs, None if mc is None else mc.mean_probs, None if mc is None else mc.variance,
                       members, features)


def _bottleneck_features(scoring: _Round, image: np.ndarray) -> np.ndarray:
    """Encoder bottleneck averaged over space ``(F,)``, for items that need no MC pass."""
    import torch

    from .model.inference import eval_mode
    from .model.preprocessing import normalise_image

    net = scoring.net
    inputs = torch.from_numpy(normalise_image(image, scoring.spatial_dims))[None]
    with eval_mode(net), torch.no_grad():
        return net.bottleneck_features(inputs.to(next(net.parameters()).device))[0].cpu().numpy()


def _with_partial_labels(prediction: _Prediction, scoring: _Round, region: QueryItem) -> _Prediction:
    """METHODS E prediction: labels kept, unlabelled voxels renormalised over ``C_n``."""
    given = scoring.region_labels(region)
    allowed = scoring.region_allowed(region)
    if (given is None or not given[1].any()) and allowed is None:
        return prediction
    labels, mask = (None, None) if given is None else (np.asarray(given[0]), np.asarray(given[1], dtype=bool))
    n_classes = prediction.probs.shape[0]
    if allowed is None:
        possible = np.ones((n_classes,) + (1,) * (prediction.probs.ndim - 1), dtype=bool)
    else:
        possible = np.asarray(allowed, dtype=bool).T.reshape((n_classes, *np.shape(allowed)[:-1]) + (1, 1))

    def posterior(probs: np.ndarray | None) -> np.ndarray | None:
        if probs is None:
            return None
        restricted = probs * possible
        total = restricted.sum(axis=0, keepdims=True)
        result = np.where(total > 0, restricted / np.where(total > 0, total, 1.0), probs)
        if mask is not None and mask.any():
            one_hot = np.moveaxis(np.eye(n_classes, dtype=probs.dtype)[np.clip(labels, 0, n_classes - 1)], -1, 0)
            result = np.where(mask, one_hot, result)
        return result.astype(np.float32)

    variance = prediction.variance
    if variance is not None and mask is not None:
        variance = np.where(mask, 0.0, variance).astype(np.float32)
    return replace(prediction, probs=posterior(prediction.probs), mc_probs=posterior(prediction.mc_probs),
                   variance=variance)


def _normalised(scoring: _Round, region: QueryItem) -> np.ndarray:
    from .model.preprocessing import normalise_image

    return normalise_image(scoring.image(region), scoring.spatial_dims)


# ---------------------------------------------------------------------------- terms


def _item_terms(prediction: _Prediction, item: QueryItem, scoring: _Round) -> dict[str, float]:
    maps = {"mc_probs": prediction.mc_probs, "variance": prediction.variance, "members": prediction.members}
    if item.class_id is None:
        return region_terms(prediction.probs, **maps)
    given = scoring.region_labels(item.region)
    unlabelled = np.ones(prediction.probs.shape[1:], bool) if given is None else ~np.asarray(given[1], bool)
    return roi_terms(prediction.probs, item.class_id, unlabelled, **maps)


def region_terms(
    probs: np.ndarray,
    mc_probs: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    members: np.ndarray | None = None,
) -> dict[str, float]:
    """Terms of a whole case or slice: mean entropy (E baseline), margins (B); with MC
    dropout (``mc_probs``, ``variance`` ``(C, *S)``) entropy_mc (E), mc_top = mean of the top
    0.1 % class-mean variances (B), mc_sum = their sum (D); with bootstrap ``members``
    ``(M, C, *S)`` the mean variance across models (B)."""
    terms = {"entropy": mean_entropy(probs), "margin": margin_score(probs)}
    if variance is not None:
        voxel_variance = np.asarray(variance).mean(axis=0)
        terms.update(
            entropy_mc=mean_entropy(mc_probs),
            mc_top=top_fraction_mean(voxel_variance),
            mc_sum=float(voxel_variance.sum()),
        )
    if members is not None:
        terms["bootstrap"] = bootstrap_score(members)
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
    predicted): binary entropy ``H_nc`` (METHODS E), margin of ``p_c``, and the variance
    of ``p_c``: top 0.1 % over the slice, sum over the region.
    """
    region = ndimage.binary_dilation(probs.argmax(axis=0) == class_id, iterations=ROI_DILATION) & unlabelled
    if not region.any():
        region = unlabelled if unlabelled.any() else np.ones_like(unlabelled)
    terms = {
        "entropy": class_entropy(probs, class_id, region),
        "margin": -float(np.abs(probs[class_id][region] - 0.5).mean()),
    }
    if variance is not None:
        class_variance = np.asarray(variance)[class_id]
        terms.update(
            entropy_mc=class_entropy(mc_probs, class_id, region),
            mc_top=top_fraction_mean(class_variance),
            mc_sum=float(class_variance[region].sum()),
        )
    if members is not None:
        terms["bootstrap"] = float(np.asarray(members)[:, class_id].var(axis=0)[region].mean())
    return terms


def _quality_terms(model: QualityPredictor | None, features: np.ndarray) -> dict[str, float]:
    """quality_p_poor/_adjust/_acceptable, quality_class (0/1/2) and quality_prob; NaN when unknown."""
    probabilities = np.full(3, np.nan) if model is None else model.predict_proba(features[None])[0]
    known = bool(np.isfinite(probabilities).all())
    return {
        "quality_p_poor": float(probabilities[0]),
        "quality_p_adjust": float(probabilities[1]),
        "quality_p_acceptable": float(probabilities[2]),
        "quality_class": float(probabilities.argmax()) if known else math.nan,
        "quality_prob": float(probabilities.max()) if known else math.nan,
    }


def _quality_status(model: QualityPredictor | None) -> str:
    if model is None:
        return "quality unknown: no quality predictor yet"
    return model.reason


def _add_quality_example(scoring: _Round, pool: PoolScores, region: QueryItem, prediction: _Prediction) -> None:
    labels, _mask = scoring.region_labels(region)
    features = quality_features(_normalised(scoring, region), prediction.probs, prediction.variance)
    pool.quality_examples.append((region, features, prediction_dice(prediction.probs, labels, pool.n_classes)))


# ---------------------------------------------------------------------------- boxes


def _item_bbox(probs: np.ndarray, item: QueryItem, case_shape: tuple[int, ...]) -> BBox:
    """Around the predicted foreground (an ROI: its class), whole region when none."""
    extent = _predicted_extent(probs, item.class_id)
    if extent is None:
        return _whole_bbox(item, case_shape)
    margins = BBOX_MARGIN if item.slice_index is None else BBOX_MARGIN[1:]
    bounds = tuple((max(0, first - margin), min(size, stop + margin))
                   for (first, stop), margin, size in zip(extent, margins, probs.shape[1:]))
    return bounds if item.slice_index is None else ((item.slice_index, item.slice_index + 1), *bounds)


def _predicted_extent(probs: np.ndarray, class_id: int | None) -> list[tuple[int, int]] | None:
    """``(first, last + 1)`` per spatial axis of the voxels predicted ``class_id`` (None: any
    foreground), or None when there are none.

    Computed a slab of ``BBOX_SLAB_VOXELS`` at a time along the first axis: a whole CT-size
    argmax is 8 bytes a voxel (630 MB for 512 x 512 x 300) and its coordinates more.
    """
    spatial = probs.shape[1:]
    seen = [np.zeros(size, bool) for size in spatial]
    step = max(1, BBOX_SLAB_VOXELS // max(1, math.prod(spatial[1:])))
    for start in range(0, spatial[0], step):
        hard = probs[:, start:start + step].argmax(axis=0)
        predicted = hard == class_id if class_id is not None else hard > 0
        for axis in range(len(spatial)):
            hit = predicted.any(axis=tuple(other for other in range(len(spatial)) if other != axis))
            if axis == 0:
                seen[0][start:start + len(hit)] = hit
            else:
                seen[axis] |= hit
    if not seen[0].any():
        return None
    return [(int(np.argmax(hits)), len(hits) - int(np.argmax(hits[::-1]))) for hits in seen]


def _whole_bbox(item: QueryItem, case_shape: tuple[int, ...]) -> BBox:
    whole = tuple((0, int(size)) for size in case_shape)
    return whole if item.slice_index is None else ((item.slice_index, item.slice_index + 1), *whole[1:])


# ---------------------------------------------------------------------------- VAE


def _add_vae_latents(
    scoring: _Round,
    pool: PoolScores,
    recent: Collection[QueryItem] | None,
    vae: ConvVAE | None,
    steps: int,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
    done: int,
    total: int,
) -> None:
    """METHODS C: a VAE on every slice (case), latents of all items, gradient steps of seeds."""
    from .vae import encode_latents, fit_vae, gradient_step_latents

    regions = _all_regions(scoring, pool.granularity)
    normalised = {region: _normalised(scoring, region) for region in regions}
    _check_stop(should_stop)
    pool.vae = vae or fit_vae(list(normalised.values()), scoring.spatial_dims, steps=steps, seed=scoring.seed,
                              should_stop=should_stop)
    latents = dict(zip(regions, encode_latents(pool.vae, list(normalised.values()))))
    if progress is not None:
        progress(done + 1, total)
    _check_stop(should_stop)
    pool.vae_latents = {item: latents[item.region] for item in pool.candidates + pool.labelled}
    pool.gradient_latents = {}
    for seed_region in _seed_regions(scoring, pool, recent):
        labels, mask = scoring.region_labels(seed_region)
        z, moved = gradient_step_latents(scoring.net, pool.vae, normalised[seed_region], labels, mask)
        pool.vae_latents[seed_region] = z
        pool.gradient_latents[seed_region] = moved
    if progress is not None:
        progress(total, total)


def _all_regions(scoring: _Round, granularity: str) -> list[QueryItem]:
    if granularity == "case":
        return [QueryItem(case) for case in sorted(scoring.shapes)]
    return [QueryItem(case, n) for case in sorted(scoring.shapes) for n in range(scoring.shapes[case][1])]


def _seed_regions(scoring: _Round, pool: PoolScores, recent: Collection[QueryItem] | None) -> list[QueryItem]:
    """Regions of the items labelled last round (all labelled when unknown) with labels."""
    seeds = pool.labelled if recent is None else list(recent)
    regions = sorted({item.region for item in seeds}, key=item_key)
    return [region for region in regions
            if (given := scoring.region_labels(region)) is not None and np.asarray(given[1]).any()]


# ---------------------------------------------------------------------------- checks


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise ScoringCancelled("scoring cancelled; the previous round's suggestions are kept")


def _checked_needs(needs: Collection[str]) -> frozenset[str]:
    needs = frozenset(needs)
    unknown = sorted(needs - NEEDS)
    if unknown:
        raise AlsegError(f"unknown scoring needs {unknown}; valid: {sorted(NEEDS)}")
    return needs


def _checked_inputs(
    net: SegmentationNet | None,
    spec: ModelSpec | None,
    shapes: Mapping[str, tuple[int, ...]],
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    granularity: str,
    n_classes: int,
) -> ModelSpec | None:
    if granularity not in GRANULARITIES:
        raise AlsegError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    for case, shape in shapes.items():
        if len(shape) != 4:
            raise AlsegError(f"case {case}: image must be (channels, k, j, i), got shape {shape}")
        given = labels.get(case)
        if given is not None and not np.shape(given[0]) == np.shape(given[1]) == shape[1:]:
            raise AlsegError(f"case {case}: labels and labelled mask must have the image's shape {shape[1:]}")
    if net is None:
        return spec
    spec = spec or net.spec
    expected_dims = 3 if granularity == "case" else 2
    if spec.spatial_dims != expected_dims:
        raise AlsegError(f"{granularity} items are scored with a {expected_dims}D net, got a {spec.spatial_dims}D one")
    if spec.n_classes != n_classes:
        raise AlsegError(f"the net predicts {spec.n_classes} classes but the project has {n_classes}")
    return spec


def _check_bootstrap(scoring: _Round) -> None:
    if len(scoring.bootstrap_nets) == 1:
        raise AlsegError("bootstrap scoring needs at least 2 models (train_bootstrap_nets with n >= 2)")
