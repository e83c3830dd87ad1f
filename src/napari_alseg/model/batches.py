"""Training batches: class-aware crops, augmentation, and a thread that makes them ahead.

Split from :mod:`.training` (the round's loop and schedule) so each holds one job. Items
are :class:`PreparedItem` (checked, normalised, on the working grid); a
:class:`BatchProducer` turns them into :class:`Batch` tensors on the CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import DTypeLike
from monai.transforms import Compose, MapTransform, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

if TYPE_CHECKING:
    from .config import TrainConfig

PREFETCH_BATCHES = 2
# Affine augmentation on half the crops, up to 15 degrees and 15 % scale. Stronger settings
# (90 % of crops, 20 degrees, 20 %, 8 % shift) and elastic deformation did not measure
# better (RESULTS.md, "Augmentation").
AFFINE_PROBABILITY = 0.5
ROTATION_RADIANS = 0.26
SCALE_RANGE = 0.15
INTENSITY_RANGE = 0.1
AUGMENT_KEYS = ("image", "labels", "mask")
# one crop: "image" (Cin, *crop), "labels" and "mask" (1, *crop), "allowed" (C,) arrays; "weight" a float
Crop = dict[str, Any]


@dataclass(frozen=True)
class PreparedItem:
    """A checked, normalised item; ``class_voxels[c]``: flat indices of voxels labelled c >= 1."""

    image: np.ndarray
    labels: np.ndarray
    labelled_mask: np.ndarray
    allowed_classes: np.ndarray
    weight: float
    class_voxels: dict[int, np.ndarray]

    @property
    def has_foreground(self) -> bool:
        return bool(self.class_voxels)


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    labelled_mask: torch.Tensor
    allowed_classes: torch.Tensor
    weights: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self
        return Batch(*(tensor.to(device, non_blocking=True) for tensor in
                        (self.images, self.labels, self.labelled_mask, self.allowed_classes, self.weights)))


class CropSampler:
    """Class-aware crops (MONAI ``RandCropByLabelClassesd``'s idea, over many items at once).

    Each crop is random with probability ``random_crop_fraction``; otherwise a class is
    drawn uniformly from those labelled in any item (with partial labels: only the
    classes actually delineated), then an item holding it, then one of its voxels, and
    the crop is centred there. Background is seen in every crop's surroundings.
    """

    def __init__(self, items: list[PreparedItem], config: TrainConfig, rng: np.random.Generator) -> None:
        self.items = items
        self.config = config
        self.rng = rng
        self.holders: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            for class_id in item.class_voxels:
                self.holders.setdefault(class_id, []).append(index)
        self.classes = sorted(self.holders)

    def batch(self) -> list[Crop]:
        picks = [self._pick() for _ in range(self.config.resolved_batch_size)]
        crop_shape = crop_shape_for([item for item, _ in picks], self.config.resolved_patch_size)
        return [self._crop(item, centre, crop_shape) for item, centre in picks]

    def _pick(self) -> tuple[PreparedItem, tuple[int, ...] | None]:
        rng = self.rng
        if not self.classes or rng.random() < self.config.random_crop_fraction:
            return self.items[int(rng.integers(len(self.items)))], None
        class_id = self.classes[int(rng.integers(len(self.classes)))]
        holders = self.holders[class_id]
        item = self.items[holders[int(rng.integers(len(holders)))]]
        voxels = item.class_voxels[class_id]
        centre = np.unravel_index(voxels[int(rng.integers(voxels.size))], item.labels.shape)
        return item, tuple(int(c) for c in centre)

    def _crop(self, item: PreparedItem, centre: tuple[int, ...] | None,
              crop_shape: tuple[int, ...]) -> Crop:
        shape = item.labels.shape
        if centre is None:
            starts = [int(self.rng.integers(full - size + 1)) for size, full in zip(crop_shape, shape)]
        else:
            starts = _window_starts(centre, crop_shape, shape)
        return _crop(item, starts, crop_shape)


class BatchProducer:
    """Batches made ahead in a background thread, so cropping and augmenting overlap the step.

    One thread draws from one seeded RNG, so the batches come in the same order with or
    without ``prefetch``. An error in the thread is raised in the caller at ``next()``.
    """

    def __init__(self, items: list[PreparedItem], config: TrainConfig, rng: np.random.Generator) -> None:
        self.sampler = CropSampler(items, config, rng)
        self.augment = augmenter(config, items[0].labels.ndim) if config.augment else None
        self.prefetch = config.prefetch
        self.queue: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def make(self) -> Batch:
        return to_batch([_augmented(crop, self.augment) for crop in self.sampler.batch()], torch.device("cpu"))

    def __enter__(self) -> Iterator[Batch]:
        if self.prefetch:
            self.thread = threading.Thread(target=self._fill, name="alseg-crops", daemon=True)
            self.thread.start()
        return self

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if not self.prefetch:
            return self.make()
        made = self.queue.get()
        if isinstance(made, BaseException):
            raise made
        return made

    def _fill(self) -> None:
        while not self.stopped.is_set():
            try:
                made: Batch | BaseException = self.make()
            except BaseException as error:  # handed to the training thread, which raises it
                made = error
            while not self.stopped.is_set():
                try:
                    self.queue.put(made, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(made, BaseException):
                return

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


def crop_shape_for(chosen: list[PreparedItem], patch_size: tuple[int, ...]) -> tuple[int, ...]:
    """One crop shape per batch: the patch, shrunk to the smallest item on each axis."""
    smallest = np.min([item.labels.shape for item in chosen], axis=0)
    return tuple(int(min(size, patch)) for size, patch in zip(smallest, patch_size))


def centre_crop(item: PreparedItem, patch_size: tuple[int, ...]) -> Crop:
    """Deterministic validation crop, centred on the labelled foreground when there is some."""
    shape = item.labels.shape
    crop_shape = tuple(min(size, patch) for size, patch in zip(shape, patch_size))
    if item.has_foreground:
        coordinates = np.unravel_index(np.concatenate(list(item.class_voxels.values())), shape)
        centre = [int(np.mean(axis)) for axis in coordinates]
    else:
        centre = [size // 2 for size in shape]
    return _crop(item, _window_starts(centre, crop_shape, shape), crop_shape)


def class_voxels_of(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Flat voxel indices per foreground class present in ``labels`` (unlabelled voxels are 0)."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    classes, starts = np.unique(flat[order], return_index=True)
    bounds = list(starts[1:]) + [flat.size]
    return {int(c): order[start:end] for c, start, end in zip(classes, starts, bounds) if c > 0}


def _window_starts(centre: Sequence[int], crop_shape: tuple[int, ...], shape: tuple[int, ...]) -> list[int]:
    """Start of a crop centred on ``centre`` as far as the item's borders allow."""
    return [min(max(0, int(c) - size // 2), full - size) for c, size, full in zip(centre, crop_shape, shape)]


def _crop(item: PreparedItem, starts: Sequence[int], crop_shape: tuple[int, ...]) -> Crop:
    window = tuple(slice(start, start + size) for start, size in zip(starts, crop_shape))
    channels_and_window = (slice(None), *window)
    return {
        "image": item.image[channels_and_window],
        "labels": item.labels[window][None],
        "mask": item.labelled_mask[window][None].astype(np.float32),
        "allowed": item.allowed_classes,
        "weight": item.weight,
    }


def augmenter(config: TrainConfig, spatial_dims: int) -> Compose:
    """Random flips, small rotation / scale (labels and mask nearest) and intensity jitter."""
    rotation = (ROTATION_RADIANS,) if spatial_dims == 2 else (ROTATION_RADIANS / 2,) * 3
    transforms: list[MapTransform] = [RandFlipd(AUGMENT_KEYS, prob=0.5, spatial_axis=axis) for axis in config.flip_axes or ()]
    transforms += [
        RandAffined(
            AUGMENT_KEYS,
            prob=AFFINE_PROBABILITY,
            rotate_range=rotation,
            scale_range=(SCALE_RANGE,) * spatial_dims,
            mode=("bilinear", "nearest", "nearest"),
            padding_mode="reflection",
        ),
        RandScaleIntensityd("image", factors=INTENSITY_RANGE, prob=0.5),
        RandShiftIntensityd("image", offsets=INTENSITY_RANGE, prob=0.5),
    ]
    composed = Compose(transforms)
    composed.set_random_state(seed=config.seed)
    return composed


def _augmented(crop: Crop, augment: Compose | None) -> Crop:
    if augment is None:
        return crop
    transformed = augment({key: crop[key] for key in AUGMENT_KEYS})
    return {**crop, **{key: np.asarray(transformed[key]) for key in AUGMENT_KEYS}}


def to_batch(crops: list[Crop], device: torch.device) -> Batch:
    def stack(key: str, dtype: DTypeLike) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(crop[key], dtype=dtype) for crop in crops])).to(device)

    return Batch(
        images=stack("image", np.float32),
        labels=torch.from_numpy(np.stack([np.rint(crop["labels"][0]).astype(np.int64) for crop in crops])).to(device),
        labelled_mask=torch.from_numpy(np.stack([crop["mask"][0] > 0.5 for crop in crops])).to(device),
        allowed_classes=stack("allowed", bool),
        weights=torch.tensor([crop["weight"] for crop in crops], dtype=torch.float32, device=device),
    )
