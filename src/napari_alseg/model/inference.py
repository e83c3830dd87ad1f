"""Prediction and MC-dropout scoring of one image at a time.

Images are numpy ``(Cin, *S)`` (raw or normalised intensities); results are float32
numpy ``(C, *S)`` on the CPU, ready for scoring and napari. Images larger than
``patch_size`` go through MONAI's ``sliding_window_inference`` (Gaussian blending).
``device=None`` runs where the net's weights are; naming a device moves the net there.

MC dropout (METHODS B, D): only the network's dropout modules are switched to
training mode; normalisation layers stay in eval mode. :func:`mc_dropout` runs the
backbone once and re-samples only the dropout head; :func:`mc_dropout_full_passes`
is the reference that runs ``T`` whole forward passes. Both seed torch's RNG with
``seed + window_index * samples + t`` before sample ``t`` of a window (in a forked
RNG state, so the caller's random stream is untouched); the backbone has no dropout,
so both draw the same masks and, for an image that fits one patch, agree up to
float rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ..errors import AlsegError
from .device import cuda_rng_devices, pick_device
from .networks import SegmentationNet, crop_spatial
from .preprocessing import normalise_image

WINDOW_OVERLAP = 0.25
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@dataclass(frozen=True)
class McResult:
    """MC-dropout summary of one image.

    ``mean_probs`` ``(C, *S)``: mean softmax over samples; ``variance`` ``(C, *S)``:
    population variance of the softmax over samples (before any argmax);
    ``features`` ``(F,)``: encoder bottleneck averaged over space (METHODS B's ``h_i``).
    """

    mean_probs: np.ndarray
    variance: np.ndarray
    features: np.ndarray
    samples: int


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Every module in eval mode; each module's previous train/eval flag restored after."""
    with _modes_restored(net):
        net.eval()
        yield net


@contextmanager
def mc_dropout_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Only dropout modules in training mode (BatchNorm/InstanceNorm stay in eval); restored after."""
    with _modes_restored(net):
        net.eval()
        for module in net.modules():
            if isinstance(module, DROPOUT_TYPES):
                module.train()
        yield net


def predict_proba(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    patch_size: tuple[int, ...] | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Softmax probabilities ``(C, *S)`` of a ``(Cin, *S)`` image, dropout off."""
    inputs = _prepare_input(net, image, patch_size, device)

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

    Each sliding window keeps the running mean and second moment of its ``T`` head
    samples; MONAI blends both moments across windows, so the variance where windows
    overlap is that of the mixture of the windows' samples (slightly larger than the
    variance of blended samples; identical where windows do not overlap).
    """
    _check_samples(samples)
    inputs = _prepare_input(net, image, patch_size, device)
    window_index = itertools.count()
    window_features: list[torch.Tensor] = []

    def head_moments(window: torch.Tensor) -> torch.Tensor:
        decoder_features, skip, bottleneck = net.backbone(window)
        window_features.append(_spatial_mean(bottleneck))
        first_seed = seed + next(window_index) * samples
        total = total_squares = 0.0
        for sample in range(samples):
            with _seeded(first_seed + sample, window.device):
                logits = crop_spatial(net.head(decoder_features, skip), tuple(window.shape[2:]))
            probs = torch.softmax(logits, dim=1)
            total = total + probs
            total_squares = total_squares + probs * probs
        return torch.cat([total / samples, total_squares / samples], dim=1)

    with mc_dropout_mode(net), torch.no_grad():
        moments = _run_windows(inputs, patch_size, head_moments)[0]
    n_classes = net.spec.n_classes
    mean_probs, second_moment = moments[:n_classes], moments[n_classes:]
    variance = (second_moment - mean_probs * mean_probs).clamp_min(0.0)
    return McResult(_to_numpy(mean_probs), _to_numpy(variance), _mean_features(window_features), samples)


def mc_dropout_full_passes(
    net: SegmentationNet,
    image: np.ndarray,
    *,
    samples: int = 20,
    seed: int = 0,
    patch_size: tuple[int, ...] | None = None,
    device: str | torch.device | None = None,
) -> McResult:
    """Reference MC dropout: ``T`` complete forward passes (what :func:`mc_dropout` saves)."""
    _check_samples(samples)
    inputs = _prepare_input(net, image, patch_size, device)
    window_features: list[torch.Tensor] = []
    sample_probs = []
    with mc_dropout_mode(net), torch.no_grad():
        for sample in range(samples):
            predictor = _full_pass_predictor(net, seed, samples, sample, window_features)
            sample_probs.append(_run_windows(inputs, patch_size, predictor)[0])
    stacked = torch.stack(sample_probs)
    mean_probs, variance = stacked.mean(dim=0), stacked.var(dim=0, unbiased=False)
    return McResult(_to_numpy(mean_probs), _to_numpy(variance), _mean_features(window_features), samples)


def _full_pass_predictor(
    net: SegmentationNet, seed: int, samples: int, sample: int, window_features: list[torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Softmax of one whole forward pass per window, seeded like :func:`mc_dropout`'s head."""
    window_index = itertools.count()

    def softmax(window: torch.Tensor) -> torch.Tensor:
        with _seeded(seed + next(window_index) * samples + sample, window.device):
            logits = net(window)
        if sample == 0:
            window_features.append(net.bottleneck_features(window)[0])
        return torch.softmax(logits, dim=1)

    return softmax


def _run_windows(
    inputs: torch.Tensor, patch_size: tuple[int, ...] | None, predictor: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``predictor`` on the whole ``(1, Cin, *S)`` input if it fits one patch, else on windows."""
    spatial = tuple(inputs.shape[2:])
    if patch_size is None or all(size <= patch for size, patch in zip(spatial, patch_size)):
        return predictor(inputs)
    roi_size = tuple(min(size, patch) for size, patch in zip(spatial, patch_size))
    return sliding_window_inference(
        inputs, roi_size, sw_batch_size=1, predictor=predictor, overlap=WINDOW_OVERLAP, mode="gaussian"
    )


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


@contextmanager
def _modes_restored(net: nn.Module) -> Iterator[None]:
    previous = [(module, module.training) for module in net.modules()]
    try:
        yield
    finally:
        for module, training in previous:
            module.training = training


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for one dropout sample without disturbing the caller's stream."""
    with torch.random.fork_rng(devices=cuda_rng_devices(device)):
        torch.manual_seed(seed)
        yield


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
