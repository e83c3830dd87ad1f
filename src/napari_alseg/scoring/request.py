"""What one round of scoring is asked to do (:class:`ScoreRequest`) and the checks on it."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import CASE, GRANULARITIES, NEEDS, Granularity, Need, QueryItem
from ..errors import AlsegError
from ..quality import QualityPredictor

if TYPE_CHECKING:
    from ..model import ModelSpec, SegmentationNet
    from ..model.vae import ConvVAE
    from .predict import RoundInputs

DEFAULT_VAE_STEPS = 300
# what a cancelled round of scoring says (a Cancelled: shown as information); nothing of it is kept
SCORING_CANCELLED = "scoring cancelled; the previous round's suggestions are kept"


@dataclass(frozen=True)
class ScoreRequest:
    """The inputs of one :func:`~napari_alseg.scoring.score_pool` round.

    ``images``: case → ``(Cin, k, j, i)`` float32, read one region at a time in case order (a
    :class:`~napari_alseg.image_cache.LazyImages` loads each case only then, and gives every
    shape without loading); ``labels``: case → (class ids ``(k, j, i)``, labelled mask
    ``(k, j, i)`` bool) or None. A case (slice) is labelled when its mask is
    all True; an ROI when its class was delineated on the slice (labelled pixels of that
    class, or the whole slice labelled). ``net`` None: no model yet; only items and whole-
    region boxes are filled (random and slice-uniform still work). ``spec``: the net's (its
    own when None). ``granularity``: one of :data:`~napari_alseg.domain.GRANULARITIES`;
    ``needs``: a subset of :data:`~napari_alseg.domain.NEEDS`. ``mc_samples``: T (S = 20 in
    docs/METHODS.md §3.6). ``bootstrap_nets``: 2+ nets (:func:`train_bootstrap_nets`).
    ``validation``: items (or whole cases / slices) never suggested. ``allowed``: case →
    ``(k, C)`` bool, ``C_n`` of docs/METHODS.md §7.1 (``Session.allowed_classes``); None = all classes.
    ``spacing``: case → in-plane pixel size (row, col) mm, for the outlines and seconds the
    terms price (1 mm where missing). ``recent``: items labelled last round, the gradient-vae
    seeds (None = all labelled). ``vae``: reuse a trained VAE instead of training one for
    ``vae_steps``. ``patch_size``: sliding windows (native voxels), None = whole region.
    ``quality_examples``: (item, quality features, true Dice) known before this round
    (out-of-fold estimates, corrections, earlier validation); with no ``quality_model`` the
    round fits its quality predictor on them plus its own validation examples, which
    replace earlier ones of the same item.
    """

    net: SegmentationNet | None
    spec: ModelSpec | None
    images: Mapping[str, np.ndarray]
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None]
    granularity: Granularity
    n_classes: int
    needs: Collection[Need] = frozenset()
    mc_samples: int = 20
    bootstrap_nets: Sequence[SegmentationNet] | None = None
    quality_model: QualityPredictor | None = None
    quality_examples: Sequence[tuple[QueryItem, np.ndarray, float]] = ()
    validation: Collection[QueryItem] = frozenset()
    model_version: str | None = None
    device: Any = None
    allowed: Mapping[str, np.ndarray] | None = None
    spacing: Mapping[str, tuple[float, float]] | None = None
    recent: Collection[QueryItem] | None = None
    vae: ConvVAE | None = None
    vae_steps: int = DEFAULT_VAE_STEPS
    patch_size: tuple[int, ...] | None = None
    seed: int = 0


def checked_needs(needs: Collection[Need]) -> frozenset[Need]:
    unknown = sorted(frozenset(needs) - NEEDS)
    if unknown:
        raise AlsegError(f"unknown scoring needs {unknown}; valid: {sorted(NEEDS)}")
    return frozenset(Need(need) for need in needs)


def checked_inputs(
    net: SegmentationNet | None,
    spec: ModelSpec | None,
    shapes: Mapping[str, tuple[int, ...]],
    labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    granularity: Granularity,
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
    expected_dims = 3 if granularity == CASE else 2
    if spec.spatial_dims != expected_dims:
        raise AlsegError(f"{granularity} items are scored with a {expected_dims}D net, got a {spec.spatial_dims}D one")
    if spec.n_classes != n_classes:
        raise AlsegError(f"the net predicts {spec.n_classes} classes but the project has {n_classes}")
    return spec


def check_bootstrap(scoring: RoundInputs) -> None:
    if len(scoring.bootstrap_nets) == 1:
        raise AlsegError("bootstrap scoring needs at least 2 models (train_bootstrap_nets with n >= 2)")
