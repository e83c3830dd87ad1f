"""One fine-tuning round: warm-start from the active model, train a copy, hand back weights.

The active model is never touched: training runs on a deep copy, so a cancel, a
crash or a diverging loss leaves the caller with its last good weights (docs/DESIGN.md
§5.3). Progress goes to the round's :class:`~napari_alseg.run_control.RunControl`, each step's
:class:`TrainProgress` record as its detail, never weights; a cancel raises
:class:`TrainingCancelled`.

Items are 2D slices or 3D cases. A round runs for a wall-clock budget (``seconds``,
what the annotator waits for) or a step count (reproducible runs); the learning rate
warms up and then decays to 0 over that budget. Each step takes ``batch_size`` crops:
most are centred on a labelled voxel of a class drawn uniformly from the classes
delineated so far (so a 20-pixel structure is seen as often as cortex), the rest are
random. Crops are prepared and augmented in a background thread while the network
steps. Fully labelled crops pay cross-entropy plus a batch Dice; partial labels pay the
mixed CE of docs/METHODS.md §7.2 plus the Dice of each delineated class. A guided net (one
that reads clicks) trains a share of its steps with clicks simulated on its own errors
(:mod:`.guidance`), the rest without.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AlsegError, Cancelled
from ..plan import BUDGETS, CPU
from ..run_control import RunControl
from .device import cuda_rng_devices, pick_device
from .modes import eval_mode
from .losses import batch_dice_ce_loss, delineated_dice_loss, partial_label_ce
from .networks import MIN_INPUT_SIZE, SegmentationNet
from .batches import Batch, BatchProducer, PreparedItem, centre_crop, class_voxels_of, to_batch
from .config import TrainConfig
from .guidance import ClickSimulator
from .preprocessing import normalise_image

FINAL_LOSS_WINDOW = 5


class TrainingAborted(AlsegError):
    """Training stopped because it could not go on (NaN/inf loss, bad values, no memory)."""


class TrainingCancelled(Cancelled):
    """The run's control asked training to stop; it did after ``steps_done`` steps, and no
    weights come back (the caller keeps its model)."""

    def __init__(self, steps_done: int) -> None:
        super().__init__(f"training cancelled after {steps_done} steps")
        self.steps_done = steps_done


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
    """What the UI shows after each step (a few numbers, never weights).

    ``total_steps`` is an estimate for a time-budgeted round (steps so far at the
    current pace); ``eta_seconds`` is the time left.
    """

    step: int
    total_steps: int
    loss: float
    eta_seconds: float
    val_loss: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a finished :func:`fine_tune` (a cancelled one raises instead).

    ``state_dict``: the new weights on the CPU (the best validated ones when early
    stopping was used). ``metrics``: JSON-ready numbers and ``warnings`` (list of messages).
    """

    state_dict: dict[str, torch.Tensor]
    steps_done: int
    metrics: dict[str, Any] = field(default_factory=dict)


def fine_tune(
    net: SegmentationNet,
    items: Sequence[TrainingItem],
    config: TrainConfig | None = None,
    *,
    control: RunControl = RunControl.none(),
) -> TrainResult:
    """Train a copy of ``net`` on ``items`` for one round; ``net`` itself is left as it was.

    ``control`` gets ``(step, total steps, TrainProgress)`` after every step and is asked
    before every step: cancelling costs at most one step and raises :class:`TrainingCancelled`.
    Raises :class:`AlsegError` for unusable items and :class:`TrainingAborted` when
    the loss turns NaN/inf. On CUDA out-of-memory the round is retried once with half
    the batch and patch before giving up with a clear message.
    """
    config = _resolved(config or TrainConfig(), net.spec.spatial_dims)
    prepared, warnings = _prepare_items(items, net, config)
    config = replace(config, patch_size=net.working_shape(config.resolved_patch_size))
    device = pick_device(config.device)
    try:
        return _train(net, prepared, config, device, control, warnings)
    except torch.cuda.OutOfMemoryError:
        _release_cuda_memory()
    smaller = _halved(config)
    try:
        return _train(net, prepared, smaller, device, control, warnings)
    except torch.cuda.OutOfMemoryError as error:
        _release_cuda_memory()
        raise TrainingAborted(
            f"out of GPU memory even with batch_size={smaller.batch_size} and patch_size={smaller.patch_size}: "
            "use a smaller patch_size or batch_size, or device='cpu'"
        ) from error


def _train(
    net: SegmentationNet,
    prepared: list[PreparedItem],
    config: TrainConfig,
    device: torch.device,
    control: RunControl,
    warnings: list[str],
) -> TrainResult:
    rng = np.random.default_rng(config.seed)
    train_items, val_items = _split_validation(prepared, config, rng)
    working = copy.deepcopy(net).to(device).train()
    optimiser = torch.optim.AdamW(working.parameters(), lr=config.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")  # mixed precision on CUDA only
    stopper = _EarlyStopping([to_batch([centre_crop(item, config.resolved_patch_size)], device) for item in val_items])
    clock = _RoundClock(config)
    clicks = ClickSimulator(net.spec.n_classes, config.guided_fraction, config.seed) if net.spec.guidance else None
    losses: list[float] = []
    with torch.random.fork_rng(devices=cuda_rng_devices(device)), BatchProducer(train_items, config, rng) as batches:
        torch.manual_seed(config.seed)
        while not clock.done(len(losses)):
            if control.stopped:
                raise TrainingCancelled(len(losses))
            for group in optimiser.param_groups:
                group["lr"] = config.learning_rate * clock.learning_rate_factor(len(losses))
            step = len(losses) + 1
            losses.append(_train_step(working, optimiser, scaler, next(batches).to(device), step, clicks))
            due = step % config.validate_every == 0 or clock.done(step)
            val_loss = stopper.check(working, step) if due else None
            total = clock.total_steps(step)
            control.report(step, total, TrainProgress(step, total, losses[-1], clock.seconds_left(step), val_loss))
            if stopper.checks_without_gain >= config.patience:
                break
    metrics = _round_metrics(losses, stopper, config, device, clock.elapsed(), warnings)
    early_stopped = stopper.checks_without_gain >= config.patience
    metrics.update(train_items=len(train_items), val_items=len(val_items), early_stopped=early_stopped)
    if clicks is not None:
        metrics["guided_steps"] = clicks.guided_steps
    return TrainResult(stopper.best_state or _cpu_state(working), len(losses), metrics)


class _RoundClock:
    """How far a round has gone, as a fraction of its step count or time budget (the larger)."""

    def __init__(self, config: TrainConfig) -> None:
        self.steps = config.steps
        self.seconds = config.budget_seconds
        self.warmup = config.warmup_fraction
        self.cosine = config.cosine_decay
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fraction(self, steps_done: int) -> float:
        by_steps = steps_done / self.steps if self.steps else 0.0
        by_time = self.elapsed() / self.seconds if self.seconds else 0.0
        return max(by_steps, by_time)

    def done(self, steps_done: int) -> bool:
        return self.fraction(steps_done) >= 1.0

    def learning_rate_factor(self, steps_done: int) -> float:
        """Linear warm-up, then cosine decay to 0 over the rest of the round: it ends on settled weights."""
        fraction = min(1.0, self.fraction(steps_done))
        if fraction < self.warmup:
            return (fraction + 1e-3) / self.warmup
        if not self.cosine:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * (fraction - self.warmup) / (1.0 - self.warmup)))

    def total_steps(self, steps_done: int) -> int:
        fraction = self.fraction(steps_done)
        return max(steps_done, round(steps_done / fraction)) if fraction > 0 else steps_done

    def seconds_left(self, steps_done: int) -> float:
        fraction = min(1.0, self.fraction(steps_done))
        return self.elapsed() * (1.0 - fraction) / fraction if fraction > 0 else 0.0


class _EarlyStopping:
    """Validation loss on fixed held-out crops; keeps the best weights seen.

    Step 0 (the weights before this round) is not a candidate: a round that ran to its
    first check always moves the model on, so new labels are never thrown away whole.
    """

    def __init__(self, val_batches: list[Batch]) -> None:
        self.val_batches = val_batches
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.checks_without_gain = 0

    def check(self, working: SegmentationNet, step: int) -> float | None:
        if not self.val_batches:
            return None
        with eval_mode(working), torch.no_grad():
            losses = [_batch_loss(working.working_forward(batch.images), batch).item() for batch in self.val_batches]
            val_loss = float(np.mean(losses))
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
        "patch_size": list(config.resolved_patch_size),
        "learning_rate": config.learning_rate,
        "device": str(device),
        "seconds": seconds,
        "warnings": list(warnings),
    }


def _train_step(working: SegmentationNet, optimiser: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                batch: Batch, step: int, clicks: ClickSimulator | None = None) -> float:
    """One optimiser step; float16 autocast with loss scaling when ``scaler`` is enabled (CUDA).

    ``clicks`` (guided nets) may add simulated clicks to the input, at the cost of a forward pass.
    """
    optimiser.zero_grad(set_to_none=True)
    with torch.autocast(batch.images.device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
        inputs = batch.images if clicks is None else clicks.inputs(working, batch)
        loss = _batch_loss(working.working_forward(inputs), batch)
    if not torch.isfinite(loss):
        raise TrainingAborted(
            f"training aborted at step {step}: the loss became {loss.item()} "
            "(diverging; try a lower learning rate). The previous model is kept."
        )
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    scaler.update()
    return float(loss.item())


def _batch_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """CE + batch Dice over fully labelled crops; mixed CE plus the Dice of each delineated
    class over the rest (partial labels, docs/METHODS.md §7.2); weighted by the crops of each kind."""
    fully_labelled = batch.labelled_mask.flatten(1).all(dim=1)
    partial = ~fully_labelled
    total = logits.new_zeros(())
    if fully_labelled.any():
        full_loss = batch_dice_ce_loss(logits[fully_labelled], batch.labels[fully_labelled], batch.weights[fully_labelled])
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
) -> tuple[list[PreparedItem], list[str]]:
    """Check every item, normalise its image, put it on the net's working grid, keep those with labels."""
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
        image, labels, mask = _on_working_grid(net, normalise_image(item.image, spec.spatial_dims), labels, mask)
        prepared.append(PreparedItem(image, labels, mask, allowed, weight, class_voxels_of(labels)))
    if not prepared:
        raise AlsegError(
            f"training needs at least 1 labelled item (a slice or case with painted labels); "
            f"none of the {len(items)} item(s) given has any labelled voxel"
        )
    warnings = []
    if not any(item.has_foreground for item in prepared):
        warnings.append(
            f"all {len(prepared)} labelled item(s) are background only: the model can only learn background; "
            "label some structures"
        )
    return prepared, warnings


def _on_working_grid(net: SegmentationNet, image: np.ndarray, labels: np.ndarray,
                     mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample an item to the net's working grid: image linearly, labels and mask nearest.

    Done once per round, so crops, augmentation, the network and the loss all run on the
    coarser grid (nnU-Net resamples its data the same way); prediction resamples inside
    the net and answers on the native grid.
    """
    working = net.working_shape(labels.shape)
    if working == labels.shape:
        return image, labels, mask
    mode = "bilinear" if labels.ndim == 2 else "trilinear"
    resampled = F.interpolate(torch.from_numpy(image)[None], size=working, mode=mode, align_corners=False)[0]
    nearest = F.interpolate(torch.from_numpy(np.stack([labels, mask]).astype(np.float32))[None], size=working,
                            mode="nearest-exact")[0]
    return resampled.numpy(), nearest[0].numpy().astype(np.int64), nearest[1].numpy() > 0.5


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
        batch_size=config.batch_size or BUDGETS[(CPU, spatial_dims)].batch,
        patch_size=tuple(config.patch_size or (BUDGETS[(CPU, spatial_dims)].max_patch,) * spatial_dims),
    )


def _check_config(config: TrainConfig, spatial_dims: int) -> None:
    """The settings that depend on the data's dimensionality (the rest: ``TrainConfig``)."""
    if config.patch_size is not None and (len(config.patch_size) != spatial_dims or min(config.patch_size) < 1):
        raise AlsegError(f"patch_size must hold {spatial_dims} positive sizes, got {config.patch_size}")
    if any(axis not in range(spatial_dims) for axis in config.flip_axes or ()):
        raise AlsegError(f"flip_axes must be spatial axes 0..{spatial_dims - 1}, got {config.flip_axes}")


def _split_validation(
    prepared: list[PreparedItem], config: TrainConfig, rng: np.random.Generator
) -> tuple[list[PreparedItem], list[PreparedItem]]:
    """Hold out a random ``validation_fraction`` (at least one item) when there are enough items."""
    if len(prepared) < config.min_items_for_validation or config.validation_fraction == 0:
        return prepared, []
    n_val = min(len(prepared) - 1, max(1, round(config.validation_fraction * len(prepared))))
    order = rng.permutation(len(prepared))
    return [prepared[i] for i in order[n_val:]], [prepared[i] for i in order[:n_val]]


def _halved(config: TrainConfig) -> TrainConfig:
    patch = tuple(max(MIN_INPUT_SIZE, size // 2) for size in config.resolved_patch_size)
    return replace(config, batch_size=max(1, config.resolved_batch_size // 2), patch_size=patch)


def _cpu_state(net: SegmentationNet) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in net.state_dict().items()}


def _release_cuda_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
