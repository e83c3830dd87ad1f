"""One fine-tuning round: warm-start from the active model, train a copy, hand back weights.

The active model is never touched: training runs on a deep copy, so a cancel, a
crash or a diverging loss leaves the caller with its last good weights (DESIGN:
"training can be cancelled without corrupting the last good model"). Progress is
reported as small :class:`TrainProgress` records, never as weights.

Items are 2D slices or 3D cases. Each step samples ``batch_size`` items, crops a
patch (half the time centred on a labelled foreground voxel, so small structures
are seen), augments image, labels and mask identically, and takes the Dice+CE loss
for fully labelled crops and the partial-label mixed CE (METHODS E) plus the Dice of each
delineated class for the rest.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

from ..errors import AlsegError
from .device import cuda_rng_devices, pick_device
from .inference import eval_mode
from .losses import delineated_dice_loss, dice_ce_loss, partial_label_ce
from .networks import MIN_INPUT_SIZE, SegmentationNet
from .preprocessing import normalise_image

# Measured on a 2-core CPU (benchmarks/bench_model.py): ~0.6 s/step in 2D, ~1.5 s/step in 3D.
DEFAULT_PATCH_2D = (160, 160)
DEFAULT_PATCH_3D = (64, 64, 64)
DEFAULT_BATCH_2D = 4
DEFAULT_BATCH_3D = 2
FOREGROUND_CROP_PROBABILITY = 0.5
FINAL_LOSS_WINDOW = 5
ROTATION_RADIANS = 0.26
SCALE_RANGE = 0.1
INTENSITY_RANGE = 0.1
AUGMENT_KEYS = ("image", "labels", "mask")


class TrainingAborted(AlsegError):
    """Training stopped because it could not go on (NaN/inf loss, bad values, no memory)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one fine-tuning round; defaults sized for a 2-core CPU.

    ``steps``: optimiser steps per round. ``batch_size``: crops per step (``None``:
    4 in 2D, 2 in 3D). ``patch_size``: crop size in voxels (``None``: 160x160 in 2D,
    64^3 in 3D; items smaller than the patch are used whole). ``flip_axes``: spatial
    axes randomly flipped when augmenting, empty by default because a left/right
    flip swaps lateralised atlas labels.
    ``pseudo_label_weight``: loss weight of items marked ``pseudo_label``.
    ``cosine_decay``: the learning rate falls from ``learning_rate`` to 0 over the round.
    Early stopping holds out ``validation_fraction`` of the items when there are at
    least ``min_items_for_validation``, checks every ``validate_every`` steps and
    stops after ``patience`` checks without improvement, keeping the best weights.
    ``device``: ``None`` picks CUDA when available.
    """

    steps: int = 60
    batch_size: int | None = None
    learning_rate: float = 1e-3
    cosine_decay: bool = True
    patch_size: tuple[int, ...] | None = None
    augment: bool = True
    flip_axes: tuple[int, ...] = ()
    pseudo_label_weight: float = 0.5
    validation_fraction: float = 0.2
    min_items_for_validation: int = 4
    validate_every: int = 10
    patience: int = 3
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        """Refuse impossible settings when they are made (a CLI flag), not rounds later."""
        batch_size = 1 if self.batch_size is None else self.batch_size
        if min(self.steps, batch_size, self.validate_every, self.patience) < 1:
            raise AlsegError("steps, batch_size, validate_every and patience must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise AlsegError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise AlsegError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")


@dataclass(frozen=True)
class TrainingItem:
    """One labelled slice (2D) or case (3D).

    ``image`` float ``(Cin, *S)``; ``labels`` int ``(*S)``; ``labelled_mask`` bool
    ``(*S)``, all True for full labels; ``allowed_classes`` bool ``(C,)``: the
    classes an unlabelled voxel may still be (``None``: any); ``weight`` scales the
    item's loss; ``pseudo_label`` marks an accepted prediction (weighted down).
    """

    image: np.ndarray
    labels: np.ndarray
    labelled_mask: np.ndarray
    allowed_classes: np.ndarray | None = None
    weight: float = 1.0
    pseudo_label: bool = False


@dataclass(frozen=True)
class TrainProgress:
    """What the UI shows after each step (a few numbers, never weights)."""

    step: int
    total_steps: int
    loss: float
    eta_seconds: float
    val_loss: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`fine_tune`.

    ``state_dict``: the new weights on the CPU (the best validated ones when early
    stopping was used); ``None`` when cancelled, so the caller keeps its model.
    ``metrics``: JSON-ready numbers and ``warnings`` (list of messages).
    """

    state_dict: dict[str, torch.Tensor] | None
    steps_done: int
    cancelled: bool
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _PreparedItem:
    image: np.ndarray
    labels: np.ndarray
    labelled_mask: np.ndarray
    allowed_classes: np.ndarray
    weight: float
    foreground: np.ndarray


@dataclass(frozen=True)
class _Batch:
    images: torch.Tensor
    labels: torch.Tensor
    labelled_mask: torch.Tensor
    allowed_classes: torch.Tensor
    weights: torch.Tensor


def fine_tune(
    net: SegmentationNet,
    items: Sequence[TrainingItem],
    config: TrainConfig | None = None,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a copy of ``net`` on ``items`` for one round; ``net`` itself is left as it was.

    ``should_stop()`` is polled before every step: cancelling costs at most one step.
    Raises :class:`AlsegError` for unusable items and :class:`TrainingAborted` when
    the loss turns NaN/inf. On CUDA out-of-memory the round is retried once with half
    the batch and patch before giving up with a clear message.
    """
    config = _resolved(config or TrainConfig(), net.spec.spatial_dims)
    prepared, warnings = _prepare_items(items, net, config)
    device = pick_device(config.device)
    try:
        return _train(net, prepared, config, device, progress, should_stop, warnings)
    except torch.cuda.OutOfMemoryError:
        _release_cuda_memory()
    smaller = _halved(config)
    try:
        return _train(net, prepared, smaller, device, progress, should_stop, warnings)
    except torch.cuda.OutOfMemoryError as error:
        _release_cuda_memory()
        raise TrainingAborted(
            f"out of GPU memory even with batch_size={smaller.batch_size} and patch_size={smaller.patch_size}: "
            "use a smaller patch_size or batch_size, or device='cpu'"
        ) from error


def _train(
    net: SegmentationNet,
    prepared: list[_PreparedItem],
    config: TrainConfig,
    device: torch.device,
    progress: Callable[[TrainProgress], None] | None,
    should_stop: Callable[[], bool] | None,
    warnings: list[str],
) -> TrainResult:
    rng = np.random.default_rng(config.seed)
    train_items, val_items = _split_validation(prepared, config, rng)
    augment = _augmenter(config, net.spec.spatial_dims) if config.augment else None
    working = copy.deepcopy(net).to(device).train()
    optimiser = torch.optim.AdamW(working.parameters(), lr=config.learning_rate)
    schedule = _schedule(optimiser, config)
    stopper = _EarlyStopping([_to_batch([_centre_crop(item, config.patch_size)], device) for item in val_items])
    losses: list[float] = []
    cancelled = False
    started = time.perf_counter()
    with torch.random.fork_rng(devices=cuda_rng_devices(device)):
        torch.manual_seed(config.seed)
        for step in range(1, config.steps + 1):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            chosen = [train_items[index] for index in rng.integers(len(train_items), size=config.batch_size)]
            crop_shape = _crop_shape(chosen, config.patch_size)
            crops = [_augmented(_random_crop(item, crop_shape, rng), augment) for item in chosen]
            losses.append(_train_step(working, optimiser, _to_batch(crops, device), step))
            if schedule is not None:
                schedule.step()
            due = step % config.validate_every == 0 or step == config.steps
            val_loss = stopper.check(working, step) if due else None
            if progress is not None:
                eta = (time.perf_counter() - started) / step * (config.steps - step)
                progress(TrainProgress(step, config.steps, losses[-1], eta, val_loss))
            if stopper.checks_without_gain >= config.patience:
                break
    metrics = _round_metrics(losses, stopper, config, device, time.perf_counter() - started, warnings)
    early_stopped = not cancelled and len(losses) < config.steps
    metrics.update(train_items=len(train_items), val_items=len(val_items), early_stopped=early_stopped)
    if cancelled:
        return TrainResult(None, len(losses), True, metrics)
    return TrainResult(stopper.best_state or _cpu_state(working), len(losses), False, metrics)


class _EarlyStopping:
    """Validation loss on fixed held-out crops; keeps the best weights seen.

    Step 0 (the weights before this round) is not a candidate: a round that ran to its
    first check always moves the model on, so new labels are never thrown away whole.
    """

    def __init__(self, val_batches: list[_Batch]) -> None:
        self.val_batches = val_batches
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.checks_without_gain = 0

    def check(self, working: SegmentationNet, step: int) -> float | None:
        if not self.val_batches:
            return None
        with eval_mode(working), torch.no_grad():
            val_loss = float(np.mean([_batch_loss(working(batch.images), batch).item() for batch in self.val_batches]))
        if val_loss < self.best_loss:
            self.best_loss, self.best_step, self.best_state = val_loss, step, _cpu_state(working)
            self.checks_without_gain = 0
        else:
            self.checks_without_gain += 1
        return val_loss


def _round_metrics(
    losses: list[float],
    stopper: _EarlyStopping,
    config: TrainConfig,
    device: torch.device,
    seconds: float,
    warnings: list[str],
) -> dict[str, Any]:
    """JSON-ready summary; ``final_loss`` averages the last few steps to smooth batch noise."""
    return {
        "initial_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(losses[-FINAL_LOSS_WINDOW:])) if losses else None,
        "best_val_loss": stopper.best_loss if stopper.best_state is not None else None,
        "best_step": stopper.best_step,
        "batch_size": config.batch_size,
        "patch_size": list(config.patch_size),
        "device": str(device),
        "seconds": seconds,
        "warnings": list(warnings),
    }


def _schedule(optimiser: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Cosine decay to 0 over the round: the round ends on settled weights, not mid-jump."""
    if not config.cosine_decay:
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)


def _train_step(working: SegmentationNet, optimiser: torch.optim.Optimizer, batch: _Batch, step: int) -> float:
    optimiser.zero_grad(set_to_none=True)
    loss = _batch_loss(working(batch.images), batch)
    if not torch.isfinite(loss):
        raise TrainingAborted(
            f"training aborted at step {step}: the loss became {loss.item()} "
            "(diverging; try a lower learning rate). The previous model is kept."
        )
    loss.backward()
    optimiser.step()
    return float(loss.item())


def _batch_loss(logits: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """Dice+CE over fully labelled crops; mixed CE plus the Dice of each delineated class
    over the rest (partial labels, METHODS E); mean over the batch."""
    fully_labelled = batch.labelled_mask.flatten(1).all(dim=1)
    partial = ~fully_labelled
    total = logits.new_zeros(())
    if fully_labelled.any():
        full_loss = dice_ce_loss(logits[fully_labelled], batch.labels[fully_labelled], batch.weights[fully_labelled])
        total = total + full_loss * fully_labelled.sum()
    if partial.any():
        partial_loss = partial_label_ce(
            logits[partial],
            batch.labels[partial],
            batch.labelled_mask[partial],
            batch.allowed_classes[partial],
            batch.weights[partial],
        )
        partial_loss = partial_loss + delineated_dice_loss(
            logits[partial], batch.labels[partial], batch.labelled_mask[partial], batch.allowed_classes[partial])
        total = total + partial_loss * partial.sum()
    return total / len(logits)


def _prepare_items(
    items: Sequence[TrainingItem], net: SegmentationNet, config: TrainConfig
) -> tuple[list[_PreparedItem], list[str]]:
    """Check every item, normalise its image and keep those with labelled voxels."""
    spec = net.spec
    prepared = []
    for index, item in enumerate(items):
        _check_item(index, item, spec.spatial_dims, spec.in_channels, spec.n_classes)
        mask = np.asarray(item.labelled_mask, dtype=bool)
        if not mask.any():
            continue
        labels = np.where(mask, np.asarray(item.labels), 0).astype(np.int64)
        known = item.allowed_classes
        allowed = np.ones(spec.n_classes, bool) if known is None else np.asarray(known, dtype=bool)
        weight = item.weight * (config.pseudo_label_weight if item.pseudo_label else 1.0)
        foreground = np.flatnonzero(labels > 0)
        prepared.append(
            _PreparedItem(normalise_image(item.image, spec.spatial_dims), labels, mask, allowed, weight, foreground)
        )
    if not prepared:
        raise AlsegError(
            f"training needs at least 1 labelled item (a slice or case with painted labels); "
            f"none of the {len(items)} item(s) given has any labelled voxel"
        )
    warnings = []
    if all(item.foreground.size == 0 for item in prepared):
        warnings.append(
            f"all {len(prepared)} labelled item(s) are background only: the model can only learn background; "
            "label some structures"
        )
    return prepared, warnings


def _check_item(index: int, item: TrainingItem, spatial_dims: int, in_channels: int, n_classes: int) -> None:
    image = np.asarray(item.image)
    if image.ndim != spatial_dims + 1 or image.shape[0] != in_channels:
        raise AlsegError(
            f"item {index}: image shape {image.shape} does not fit the model "
            f"({in_channels} channel(s) x {spatial_dims} spatial axes)"
        )
    spatial = image.shape[1:]
    if np.shape(item.labels) != spatial or np.shape(item.labelled_mask) != spatial:
        raise AlsegError(
            f"item {index}: labels {np.shape(item.labels)} and mask {np.shape(item.labelled_mask)} "
            f"must match the image's spatial shape {spatial}"
        )
    if item.allowed_classes is not None and np.shape(item.allowed_classes) != (n_classes,):
        raise AlsegError(f"item {index}: allowed_classes must have one flag per class ({n_classes})")
    if not (math.isfinite(item.weight) and item.weight >= 0):
        raise AlsegError(f"item {index}: weight must be a non-negative number, got {item.weight}")
    given = np.asarray(item.labels)[np.asarray(item.labelled_mask, dtype=bool)]
    if given.size and (given.min() < 0 or given.max() >= n_classes):
        raise AlsegError(
            f"item {index}: labels range {given.min()}..{given.max()} but the model has {n_classes} classes "
            f"(0..{n_classes - 1})"
        )
    if not np.isfinite(image).all():
        raise TrainingAborted(f"training aborted before it started: item {index}'s image holds NaN or infinite values")


def _resolved(config: TrainConfig, spatial_dims: int) -> TrainConfig:
    """Check the settings and fill in the per-dimension defaults of batch and patch size."""
    _check_config(config, spatial_dims)
    return replace(
        config,
        batch_size=config.batch_size or (DEFAULT_BATCH_2D if spatial_dims == 2 else DEFAULT_BATCH_3D),
        patch_size=tuple(config.patch_size or (DEFAULT_PATCH_2D if spatial_dims == 2 else DEFAULT_PATCH_3D)),
    )


def _check_config(config: TrainConfig, spatial_dims: int) -> None:
    """The settings that depend on the data's dimensionality (the rest: ``TrainConfig``)."""
    if config.patch_size is not None and (len(config.patch_size) != spatial_dims or min(config.patch_size) < 1):
        raise AlsegError(f"patch_size must hold {spatial_dims} positive sizes, got {config.patch_size}")
    if any(axis not in range(spatial_dims) for axis in config.flip_axes):
        raise AlsegError(f"flip_axes must be spatial axes 0..{spatial_dims - 1}, got {config.flip_axes}")


def _split_validation(
    prepared: list[_PreparedItem], config: TrainConfig, rng: np.random.Generator
) -> tuple[list[_PreparedItem], list[_PreparedItem]]:
    """Hold out a random ``validation_fraction`` (at least one item) when there are enough items."""
    if len(prepared) < config.min_items_for_validation or config.validation_fraction == 0:
        return prepared, []
    n_val = min(len(prepared) - 1, max(1, round(config.validation_fraction * len(prepared))))
    order = rng.permutation(len(prepared))
    return [prepared[i] for i in order[n_val:]], [prepared[i] for i in order[:n_val]]


def _halved(config: TrainConfig) -> TrainConfig:
    patch = tuple(max(MIN_INPUT_SIZE, size // 2) for size in config.patch_size)
    return replace(config, batch_size=max(1, config.batch_size // 2), patch_size=patch)


def _crop_shape(chosen: list[_PreparedItem], patch_size: tuple[int, ...]) -> tuple[int, ...]:
    """One crop shape per batch: the patch, shrunk to the smallest item on each axis."""
    smallest = np.min([item.labels.shape for item in chosen], axis=0)
    return tuple(int(min(size, patch)) for size, patch in zip(smallest, patch_size))


def _random_crop(item: _PreparedItem, crop_shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, np.ndarray]:
    if item.foreground.size and rng.random() < FOREGROUND_CROP_PROBABILITY:
        centre = np.unravel_index(item.foreground[rng.integers(item.foreground.size)], item.labels.shape)
        return _crop(item, _window_starts(centre, crop_shape, item.labels.shape), crop_shape)
    starts = [int(rng.integers(full - size + 1)) for size, full in zip(crop_shape, item.labels.shape)]
    return _crop(item, starts, crop_shape)


def _centre_crop(item: _PreparedItem, patch_size: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Deterministic validation crop, centred on the labelled foreground when there is some."""
    shape = item.labels.shape
    crop_shape = tuple(min(size, patch) for size, patch in zip(shape, patch_size))
    if item.foreground.size:
        coordinates = np.unravel_index(item.foreground, shape)
        centre = [int(np.mean(axis)) for axis in coordinates]
    else:
        centre = [size // 2 for size in shape]
    return _crop(item, _window_starts(centre, crop_shape, shape), crop_shape)


def _window_starts(centre: Sequence[int], crop_shape: tuple[int, ...], shape: tuple[int, ...]) -> list[int]:
    """Start of a crop centred on ``centre`` as far as the item's borders allow."""
    return [min(max(0, int(c) - size // 2), full - size) for c, size, full in zip(centre, crop_shape, shape)]


def _crop(item: _PreparedItem, starts: Sequence[int], crop_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    window = tuple(slice(start, start + size) for start, size in zip(starts, crop_shape))
    return {
        "image": item.image[(slice(None), *window)],
        "labels": item.labels[window][None],
        "mask": item.labelled_mask[window][None].astype(np.float32),
        "allowed": item.allowed_classes,
        "weight": item.weight,
    }


def _augmenter(config: TrainConfig, spatial_dims: int) -> Compose:
    """Random flips, small rotation/scale (labels and mask nearest) and intensity jitter."""
    rotation = (ROTATION_RADIANS,) if spatial_dims == 2 else (ROTATION_RADIANS / 2,) * 3
    transforms = [RandFlipd(AUGMENT_KEYS, prob=0.5, spatial_axis=axis) for axis in config.flip_axes]
    transforms += [
        RandAffined(
            AUGMENT_KEYS,
            prob=0.5,
            rotate_range=rotation,
            scale_range=(SCALE_RANGE,) * spatial_dims,
            mode=("bilinear", "nearest", "nearest"),
            padding_mode="reflection",
        ),
        RandScaleIntensityd("image", factors=INTENSITY_RANGE, prob=0.5),
        RandShiftIntensityd("image", offsets=INTENSITY_RANGE, prob=0.5),
    ]
    augmenter = Compose(transforms)
    augmenter.set_random_state(seed=config.seed)
    return augmenter


def _augmented(crop: dict[str, np.ndarray], augment: Compose | None) -> dict[str, np.ndarray]:
    if augment is None:
        return crop
    transformed = augment({key: crop[key] for key in AUGMENT_KEYS})
    return {**crop, **{key: np.asarray(transformed[key]) for key in AUGMENT_KEYS}}


def _to_batch(crops: list[dict[str, np.ndarray]], device: torch.device) -> _Batch:
    def stack(key: str, dtype: np.dtype) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(crop[key], dtype=dtype) for crop in crops])).to(device)

    return _Batch(
        images=stack("image", np.float32),
        labels=torch.from_numpy(np.stack([np.rint(crop["labels"][0]).astype(np.int64) for crop in crops])).to(device),
        labelled_mask=torch.from_numpy(np.stack([crop["mask"][0] > 0.5 for crop in crops])).to(device),
        allowed_classes=stack("allowed", bool),
        weights=torch.tensor([crop["weight"] for crop in crops], dtype=torch.float32, device=device),
    )


def _cpu_state(net: SegmentationNet) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in net.state_dict().items()}


def _release_cuda_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
