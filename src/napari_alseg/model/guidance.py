"""Clicks as network input (DeepEdit's recipe): click maps, and the clicks training simulates.

A guided :class:`~.networks.SegmentationNet` (``ModelSpec.guidance``) reads one map per
class after the image's channels: map ``c`` holds the clicks saying "this voxel is class c"
(a negative click on a class says background, class 0), each a Gaussian blob of peak 1 and
sigma :data:`GUIDANCE_SIGMA` working-grid voxels, blobs max-combined. Prediction draws the
maps on the image's (native) grid with the sigma scaled by the net's zoom, so they reach the
working grid at that size; training draws them on its crops, already on the working grid.

Training (:class:`ClickSimulator`): on a share of the steps the batch is first predicted
without clicks and without gradients; per crop, 1 to :data:`MAX_ERROR_CLICKS` clicks go into
the largest error regions among the labelled voxels (one per region, largest first, near its
middle), each of the true class there; :data:`INITIAL_CLICK_FRACTION` of the crops also get one click inside
each labelled foreground class, as an annotator's first click. The other steps train without
clicks (zero maps), so the same weights still segment on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from ..errors import AlsegError
from .batches import Batch
from .modes import eval_mode
from .networks import ModelSpec, SegmentationNet

GUIDANCE_SIGMA = 2.0  # blob sigma, working-grid voxels
BLOB_REACH = 3.0  # a blob is drawn out to this many sigmas (exp(-4.5) ~ 0.01 there)
MAX_ERROR_CLICKS = 3
INITIAL_CLICK_FRACTION = 0.5
GUIDANCE_STREAM = 7919  # the click simulator's RNG stream, apart from the crop sampler's

ClassClick = tuple[tuple[int, ...], int]  # (voxel in the item's spatial axes, the class it is)


def add_blobs(maps: torch.Tensor, clicks: Sequence[ClassClick], sigma: Sequence[float]) -> None:
    """Max-combine a Gaussian blob (peak 1, ``sigma`` voxels per axis) per click into
    ``maps`` ``(C, *S)``, in its class's map; drawn only within :data:`BLOB_REACH` sigmas."""
    for position, class_id in clicks:
        window: list[slice] = []
        blob = torch.ones((), dtype=maps.dtype, device=maps.device)  # the outer product of the profiles
        for centre, size, width in zip(position, maps.shape[1:], sigma):
            reach = math.ceil(BLOB_REACH * width)
            low, high = max(0, centre - reach), min(size, centre + reach + 1)
            offsets = torch.arange(low, high, dtype=maps.dtype, device=maps.device) - centre
            profile = torch.exp(-0.5 * (offsets / width) ** 2)
            blob = blob[..., None] * profile
            window.append(slice(low, high))
        index: tuple[int | slice, ...] = (class_id, *window)
        target = maps[index]
        target.copy_(torch.maximum(target, blob))


def click_maps(spec: ModelSpec, shape: tuple[int, ...], clicks: Sequence[ClassClick]) -> np.ndarray:
    """Click maps ``(C, *shape)`` float32 of an image on its native grid, for a guided net of ``spec``.

    Sigma is :data:`GUIDANCE_SIGMA` / zoom native voxels per axis: the net's linear resampling
    to its working grid then gives the blobs training drew. One-line AlsegError for a click
    outside the image or of an unknown class.
    """
    for position, class_id in clicks:
        if len(position) != len(shape) or not all(0 <= p < n for p, n in zip(position, shape)):
            raise AlsegError(f"click at {tuple(position)} lies outside the image {tuple(shape)}")
        if not 0 <= class_id < spec.n_classes:
            raise AlsegError(f"click of class {class_id}: the model has classes 0..{spec.n_classes - 1}")
    zoom = spec.zoom or (1.0,) * spec.spatial_dims
    maps = torch.zeros(spec.n_classes, *shape)
    add_blobs(maps, [(tuple(int(p) for p in position), int(c)) for position, c in clicks],
              [GUIDANCE_SIGMA / factor for factor in zoom])
    return maps.numpy()


class ClickSimulator:
    """The inputs of each training step of a guided net: the images alone, or with simulated clicks.

    ``guided_fraction`` of the steps (drawn from its own RNG stream of ``seed``) get clicks;
    ``guided_steps`` counts them.
    """

    def __init__(self, n_classes: int, guided_fraction: float, seed: int) -> None:
        self.n_classes = n_classes
        self.guided_fraction = guided_fraction
        self.rng = np.random.default_rng((seed, GUIDANCE_STREAM))
        self.guided_steps = 0

    def inputs(self, net: SegmentationNet, batch: Batch) -> torch.Tensor:
        """``(B, Cin + C, *W)`` with click maps on a guided step, else ``batch.images`` ``(B, Cin, *W)``."""
        if self.rng.random() >= self.guided_fraction:
            return batch.images
        with eval_mode(net), torch.no_grad():
            predicted = net.working_forward(batch.images).argmax(dim=1).cpu().numpy()
        labels, labelled = batch.labels.cpu().numpy(), batch.labelled_mask.cpu().numpy()
        maps = batch.images.new_zeros(len(predicted), self.n_classes, *predicted.shape[1:])
        sigma = (GUIDANCE_SIGMA,) * (predicted.ndim - 1)
        initial = self.rng.random(len(predicted)) < INITIAL_CLICK_FRACTION
        for index in range(len(predicted)):
            clicks = simulated_clicks(predicted[index], labels[index], labelled[index], self.rng,
                                      initial=bool(initial[index]))
            add_blobs(maps[index], clicks, sigma)
        self.guided_steps += 1
        return torch.cat([batch.images, maps], dim=1)


def simulated_clicks(prediction: np.ndarray, labels: np.ndarray, labelled: np.ndarray,
                     rng: np.random.Generator, *, initial: bool = False) -> list[ClassClick]:
    """Clicks on one crop: 1 to :data:`MAX_ERROR_CLICKS` into the largest regions (one class each)
    where ``prediction`` differs from ``labels`` among ``labelled`` voxels, each of the true class;
    with ``initial``, first one inside each labelled foreground class. All arrays ``(*W)``;
    unlabelled voxels never get a click."""
    clicks = _initial_clicks(labels, labelled, rng) if initial else []
    wrong = labelled & (prediction != labels)
    count = int(rng.integers(1, MAX_ERROR_CLICKS + 1))
    regions = []
    for class_id in np.unique(labels[wrong]):
        components, _ = ndimage.label(wrong & (labels == class_id))
        sizes = np.bincount(components.ravel())[1:]
        boxes = ndimage.find_objects(components)
        for index in np.argsort(-sizes, kind="stable")[:count]:
            box = boxes[index]
            regions.append((int(sizes[index]), int(class_id), box, components[box] == index + 1))
    regions.sort(key=lambda region: -region[0])
    return clicks + [(_deep_voxel(mask, box, rng), class_id) for _, class_id, box, mask in regions[:count]]


def _initial_clicks(labels: np.ndarray, labelled: np.ndarray, rng: np.random.Generator) -> list[ClassClick]:
    """One click inside each foreground class labelled on the crop."""
    clicks = []
    for class_id in np.unique(labels[labelled]):
        if class_id == 0:
            continue
        mask = labelled & (labels == class_id)
        (box,) = ndimage.find_objects(mask.astype(np.uint8))
        clicks.append((_deep_voxel(mask[box], box, rng), int(class_id)))
    return clicks


def _deep_voxel(mask: np.ndarray, box: tuple[slice, ...], rng: np.random.Generator) -> tuple[int, ...]:
    """A voxel of ``mask`` (the region within ``box``) drawn uniformly from those at least half as
    deep (voxels to the region's edge) as its deepest: near its middle, where the simulated
    annotator clicks (:func:`~napari_alseg.simulation.clicker.next_click`), but not always on
    the one voxel. Returned in the crop's coordinates."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]
    deep = np.flatnonzero(depth >= depth.max() / 2)
    pick = np.unravel_index(deep[int(rng.integers(deep.size))], mask.shape)
    return tuple(int(axis.start + offset) for axis, offset in zip(box, pick))
