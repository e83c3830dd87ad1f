"""Prediction and MC-dropout scoring of one image at a time.

Images are numpy ``(Cin, *S)`` (raw or normalised intensities); results are float32
numpy ``(C, *S)`` on the CPU, ready for scoring and napari. Images larger than
``patch_size`` go through MONAI's ``sliding_window_inference`` (Gaussian blending).
``device=None`` runs where the net's weights are; naming a device moves the net there.

MC dropout (docs/METHODS.md §3.3): only the network's dropout modules are switched to
training mode; normalisation layers stay in eval mode. :func:`mc_dropout` runs the
backbone once and re-samples only the dropout head; :func:`mc_dropout_full_passes`
is the reference that runs ``T`` whole forward passes. Both draw sample ``t`` of a
window's dropout mask with :func:`_dropped_features` from a generator of its own seeded
with ``seed + window_index * samples + t`` (numpy's SFC64 on the CPU, ``torch.Generator``
on other devices; the caller's random streams are untouched), so they use the same masks
and, for an image that fits one patch, agree up to float rounding:
``tests/test_model_inference.py`` pins 1e-5 on the mean-probability and variance maps
and a relative 1e-5 on the scores made from them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ..errors import AlsegError
from .device import pick_device
from .guidance import click_maps
from .modes import eval_mode, mc_dropout_mode
from .head_moments import SampleMoments, softmax_moments
from .networks import SegmentationNet, crop_spatial
from .preprocessing import normalise_image

WINDOW_OVERLAP = 0.25
# Largest per-chunk tensor of MC samples (floats, 32 MiB): bounds memory for 3D windows.
MC_CHUNK_ELEMENTS = 2**23


@dataclass(frozen=True)
class McResult:
    """MC-dropout summary of one image.

    ``mean_probs`` ``(C, *S)``: mean softmax over samples; ``variance`` ``(C, *S)``:
    population variance of the softmax over samples (before any argmax);
    ``features`` ``(F,)``: encoder bottleneck averaged over space (``h_i`` of docs/METHODS.md §4.1).
    """

    mean_probs: np.ndarray
    variance: np.ndarray
    features: np.ndarray
    samples: int


def predict_proba(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    patch_size: tuple[int, ...] | None = None,
    device: str | torch.device | None = None,
    clicks: Sequence[tuple[tuple[int, ...], int]] = (),
) -> np.ndarray:
    """Softmax probabilities ``(C, *S)`` of a ``(Cin, *S)`` image, dropout off.

    ``clicks``: ``(voxel of *S, class it is)`` pairs for a guided net; their maps
    (:func:`.guidance.click_maps`, on the image's grid) go through the windows with the image.
    """
    inputs = _prepare_input(net, image, patch_size, device)
    if clicks:
        inputs = torch.cat([inputs, _click_input(net, clicks, inputs)], dim=1)

    def softmax(window: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(window), dim=1)

    with eval_mode(net), torch.no_grad():
        probs = _run_windows(inputs, patch_size, softmax)
    return _to_numpy(probs[0])


def mc_dropout(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    samples: int = 20,
    seed: int = 0,
    patch_size: tuple[int, ...] | None = None,
    device: str | torch.device | None = None,
) -> McResult:
    """MC-dropout mean, variance and features, running the backbone once per window.

    The ``T`` head samples of a window go through :func:`~.head_moments.softmax_moments`
    in chunks along the batch axis (:data:`MC_CHUNK_ELEMENTS`), on the grid the net works
    on. A zoomed net's window moments (mean and second moment) are then interpolated to
    the native grid, as its probabilities are (:meth:`SegmentationNet.forward`), so its
    variance is that of the mixture of neighbouring working voxels' samples. Each sliding
    window keeps the mean and second moment of its samples; MONAI blends both moments
    across windows, so the variance where windows overlap is likewise that of the mixture
    of the windows' samples. The moments are kept and blended in float64 (see
    :class:`SampleMoments`).
    """
    _check_samples(samples)
    inputs = _prepare_input(net, image, patch_size, device)
    window_index = itertools.count()
    window_features: list[torch.Tensor] = []
    block = net.last_block

    def head_moments(window: torch.Tensor) -> torch.Tensor:
        decoder_features, skip, bottleneck = net.backbone(window.to(torch.float32))
        window_features.append(_spatial_mean(bottleneck))
        first_seed = seed + next(window_index) * samples
        native_shape = tuple(window.shape[2:])
        chunks = _chunks(block.dropout, decoder_features, range(first_seed, first_seed + samples),
                         decoder_features[0].numel())
        return _native_moments(net, *softmax_moments(block, chunks, skip, net.working_shape(native_shape)),
                               native_shape)

    with mc_dropout_mode(net), torch.no_grad():
        moments = _run_windows(inputs.to(torch.float64), patch_size, head_moments)[0]
    return _mc_result(moments, window_features, samples)


def mc_dropout_full_passes(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    samples: int = 20,
    seed: int = 0,
    patch_size: tuple[int, ...] | None = None,
    device: str | torch.device | None = None,
) -> McResult:
    """Reference MC dropout: ``T`` complete forward passes per window (what :func:`mc_dropout` saves).

    Each pass runs the backbone and the head with the dropout mask :func:`mc_dropout`
    draws for that sample (:func:`_dropped_features`); the passes' softmax moments go to
    the native grid and across windows as :func:`mc_dropout`'s do. The features come from
    the first pass's bottleneck.
    """
    _check_samples(samples)
    inputs = _prepare_input(net, image, patch_size, device)
    window_index = itertools.count()
    window_features: list[torch.Tensor] = []
    block = net.last_block

    def pass_moments(window: torch.Tensor) -> torch.Tensor:
        first_seed = seed + next(window_index) * samples
        native_shape = tuple(window.shape[2:])
        working_shape = net.working_shape(native_shape)
        statistics = SampleMoments((net.spec.n_classes, *working_shape), window.device)
        for sample in range(samples):
            decoder_features, skip, bottleneck = net.backbone(window.to(torch.float32))
            if sample == 0:
                window_features.append(_spatial_mean(bottleneck))
            dropped = _dropped_features(block.dropout, decoder_features, [first_seed + sample])
            statistics.update(torch.softmax(crop_spatial(block.decode(dropped, skip), working_shape), dim=1))
            statistics.advance(1)
        return _native_moments(net, *statistics.mean_and_variance(), native_shape)

    with mc_dropout_mode(net), torch.no_grad():
        moments = _run_windows(inputs.to(torch.float64), patch_size, pass_moments)[0]
    return _mc_result(moments, window_features, samples)


def _native_moments(net: SegmentationNet, mean: torch.Tensor, variance: torch.Tensor,
                    native_shape: tuple[int, ...]) -> torch.Tensor:
    """A window's ``(C, *W)`` mean and variance -> ``(1, 2C, *S)`` mean and second moment on the
    native grid: the two moments windows blend (and a zoomed net interpolates) linearly."""
    return net.to_native(torch.cat([mean, variance + mean * mean])[None], native_shape)


def _mc_result(moments: torch.Tensor, window_features: list[torch.Tensor], samples: int) -> McResult:
    """``moments`` ``(2C, *S)``: blended mean probabilities, then blended second moments."""
    n_classes = moments.shape[0] // 2
    mean_probs, second_moment = moments[:n_classes], moments[n_classes:]
    variance = (second_moment - mean_probs * mean_probs).clamp_min(0.0)
    return McResult(_to_numpy(mean_probs), _to_numpy(variance), _mean_features(window_features), samples)


def _dropped_features(dropout: nn.Dropout, features: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """``len(seeds)`` dropout samples of ``features`` ``(1, F, *H)``: ``(t, F, *H)``, channels-last in memory.

    What ``nn.Dropout`` does in training mode (each element kept with probability
    ``1 - p`` and scaled by ``1 / (1 - p)``), nothing in eval mode, with masks drawn
    channel fastest from generators seeded with ``seeds``: on the CPU numpy's SFC64
    (:func:`_keep_mask`; masked features ~2.5x cheaper per sample than with ``torch.rand``,
    3-4x than with ``nn.Dropout``'s own Bernoulli draw), elsewhere ``torch.rand`` on the
    device. Channels-last is the layout the half-resolution convolution runs fastest on.
    """
    if not dropout.training or dropout.p == 0:
        return features.expand(len(seeds), *features.shape[1:])
    scaled = (features.movedim(1, -1) * (1 / (1 - dropout.p))).contiguous()
    if features.device.type == "cpu":
        keep = np.empty((len(seeds), scaled.numel()), np.bool_)
        for sample_keep, sample_seed in zip(keep, seeds):
            _keep_mask(np.random.SFC64(sample_seed), dropout.p, sample_keep)
        dropped = torch.from_numpy(np.multiply(keep, scaled.numpy().reshape(1, -1), dtype=np.float32))
    else:
        dropped = torch.empty((len(seeds), scaled.numel()), device=features.device, dtype=features.dtype)
        for sample, sample_seed in zip(dropped, seeds):
            torch.rand(sample.shape, generator=torch.Generator(features.device).manual_seed(sample_seed), out=sample)
        dropped.ge_(dropout.p).mul_(scaled.reshape(1, -1))
    return dropped.view(len(seeds), *scaled.shape[1:]).movedim(-1, 1)


def _keep_mask(bits: np.random.BitGenerator, p: float, out: np.ndarray) -> None:
    """``out[i] = u_i >= round(p * 2^32)`` for uniform 32-bit integers ``u_i``: true with probability ``1 - p``.

    Each ``u_i``'s top byte comes from the raw stream for every element, and its low 24
    bits only where that byte ties with the threshold's (1 element in 256), so a mask
    costs about one random byte per element.
    """
    threshold_top, threshold_low = divmod(round(p * 2**32), 2**24)
    top = bits.random_raw(-(-out.size // 8)).view(np.uint8)[: out.size]
    np.greater(top, threshold_top, out=out)
    ties = np.flatnonzero(top == threshold_top)
    out[ties] = (bits.random_raw(ties.size) & (2**24 - 1)) >= threshold_low


def _chunks(
    dropout: nn.Dropout, features: torch.Tensor, seeds: Sequence[int], elements_per_sample: int
) -> Iterator[torch.Tensor]:
    """:func:`_dropped_features` in chunks whose largest tensor holds at most :data:`MC_CHUNK_ELEMENTS` floats."""
    per_chunk = max(1, MC_CHUNK_ELEMENTS // elements_per_sample)
    for start in range(0, len(seeds), per_chunk):
        yield _dropped_features(dropout, features, seeds[start : start + per_chunk])


def _run_windows(
    inputs: torch.Tensor, patch_size: tuple[int, ...] | None, predictor: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``predictor`` on the whole ``(1, Cin, *S)`` input if it fits one patch, else on windows."""
    spatial = tuple(inputs.shape[2:])
    if patch_size is None or all(size <= patch for size, patch in zip(spatial, patch_size)):
        return predictor(inputs)
    roi_size = tuple(min(size, patch) for size, patch in zip(spatial, patch_size))
    # a predictor of one tensor gives one tensor (MONAI annotates the tuple and dict outputs too)
    return cast(torch.Tensor, sliding_window_inference(
        inputs, roi_size, sw_batch_size=1, predictor=predictor, overlap=WINDOW_OVERLAP, mode="gaussian"
    ))


def _prepare_input(
    net: SegmentationNet, image: np.ndarray, patch_size: tuple[int, ...] | None, device: str | torch.device | None
) -> torch.Tensor:
    """Normalised ``(1, Cin, *S)`` tensor on the run device; moves ``net`` there if one is named."""
    spec = net.spec
    if patch_size is not None and (len(patch_size) != spec.spatial_dims or min(patch_size) < 1):
        raise AlsegError(f"patch_size must hold {spec.spatial_dims} positive sizes, got {patch_size}")
    image = np.asarray(image)
    if image.ndim != spec.spatial_dims + 1 or image.shape[0] != spec.in_channels:
        raise AlsegError(
            f"the model expects an image of {spec.in_channels} channel(s) x {spec.spatial_dims} spatial axes, "
            f"got shape {image.shape}"
        )
    if device is None:
        run_device = next(net.parameters()).device
    else:
        run_device = device if isinstance(device, torch.device) else pick_device(device)
        net.to(run_device)
    return torch.from_numpy(normalise_image(image, spec.spatial_dims))[None].to(run_device)


def _click_input(net: SegmentationNet, clicks: Sequence[tuple[tuple[int, ...], int]],
                 inputs: torch.Tensor) -> torch.Tensor:
    """Click maps ``(1, C, *S)`` beside ``inputs`` ``(1, Cin, *S)``; AlsegError for a net that reads none."""
    if not net.spec.guidance:
        raise AlsegError("this model does not read clicks: train a guided one (plan: guidance) to predict with them")
    maps = click_maps(net.spec, tuple(inputs.shape[2:]), clicks)
    return torch.from_numpy(maps)[None].to(inputs.device)


def _check_samples(samples: int) -> None:
    if samples < 2:
        raise AlsegError(f"MC dropout needs at least 2 samples to estimate a variance, got {samples}")


def _spatial_mean(features: torch.Tensor) -> torch.Tensor:
    """``(1, F, *S)`` -> ``(F,)``."""
    return features.mean(dim=tuple(range(2, features.dim())))[0]


def _mean_features(window_features: list[torch.Tensor]) -> np.ndarray:
    return _to_numpy(torch.stack(window_features).mean(dim=0))


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()
