"""A small convolutional VAE and the gradient step of gradient-guided sampling (docs/METHODS.md §5).

Dai et al. train a VAE on every (unlabelled) slice, MSE reconstruction + KL, with a
3-dimensional latent space (2 for small sets: more dimensions spread few samples too
thinly). Inputs are resized (area averaging, differentiable) to 32×32 slices or 16³
cases, so the VAE is cheap on a CPU and the same net serves any image size.

:func:`gradient_step_latents` moves a labelled sample up the segmentation net's Dice
loss, ``x' = x + η ∇_x L_seg(x, y)`` with η = 1e-3, and encodes both ``x`` and ``x'``.
That step changes intensities by ~1e-6, below float32 resolution, so every encoding
runs in float64 (a double copy of the encoder): ``z' - z`` is then a real direction,
not rounding noise. Imports torch: load it lazily (see :mod:`napari_alseg.model`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AlsegError
from ..run_control import RunControl
from .modes import eval_mode
from .networks import SegmentationNet

INPUT_SIZE = {2: 32, 3: 16}
SMALL_SET_SIZE = 1000
LATENT_DIM = 3
SMALL_SET_LATENT_DIM = 2
DEFAULT_STEPS = 300
GRADIENT_STEP = 1e-3
DICE_SMOOTH = 1e-5


class ConvVAE(nn.Module):
    """Three stride-2 convolutions → Gaussian latent ``(D,)`` → three transposed convolutions.

    ``encode(x)`` takes ``(B, Cin, *S)`` of any size (resized inside) and returns the
    posterior mean and log-variance, each ``(B, D)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, latent_dim: int, width: int = 16) -> None:
        super().__init__()
        if spatial_dims not in INPUT_SIZE:
            raise AlsegError(f"the VAE works on 2D slices or 3D cases, got spatial_dims={spatial_dims}")
        self.spatial_dims, self.in_channels, self.latent_dim = spatial_dims, in_channels, latent_dim
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        deconv = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        widths = (in_channels, width, 2 * width, 4 * width)
        coarse = (INPUT_SIZE[spatial_dims] // 8,) * spatial_dims
        flat = widths[-1] * int(np.prod(coarse))
        down = [layer for a, b in zip(widths, widths[1:]) for layer in (conv(a, b, 4, 2, 1), nn.LeakyReLU(0.1))]
        self.encoder = nn.Sequential(*down, nn.Flatten())
        self.to_mean = nn.Linear(flat, latent_dim)
        self.to_log_variance = nn.Linear(flat, latent_dim)
        up = [nn.Linear(latent_dim, flat), nn.Unflatten(1, (widths[-1], *coarse))]
        reversed_widths = widths[::-1]
        for a, b in zip(reversed_widths, reversed_widths[1:]):
            up += [deconv(a, b, 4, 2, 1), nn.LeakyReLU(0.1)]
        self.decoder = nn.Sequential(*up[:-1])

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, Cin, *S)`` → ``(B, Cin, *INPUT_SIZE)`` by area averaging (differentiable)."""
        return F.interpolate(x, size=(INPUT_SIZE[self.spatial_dims],) * self.spatial_dims, mode="area")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(self.resize(x))
        return self.to_mean(hidden), self.to_log_variance(hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction of the resized input, posterior mean, log-variance."""
        mean, log_variance = self.encode(x)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        return self.decoder(latent), mean, log_variance


def latent_dim_for(n_samples: int) -> int:
    """3, or 2 below :data:`SMALL_SET_SIZE` samples (docs/METHODS.md §5.1)."""
    return SMALL_SET_LATENT_DIM if n_samples < SMALL_SET_SIZE else LATENT_DIM


def fit_vae(
    images: Sequence[np.ndarray],
    spatial_dims: int,
    *,
    latent_dim: int | None = None,
    steps: int = DEFAULT_STEPS,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    control: RunControl = RunControl.none(),
) -> ConvVAE:
    """Train a :class:`ConvVAE` on normalised images ``(Cin, *S)`` (sizes may differ) on the CPU.

    Loss per sample: summed squared reconstruction error + KL to N(0, I). A bounded
    number of Adam steps keeps this to seconds. A stop asked of ``control`` ends training
    early with the VAE as it is: the caller, which fits it as one stage of its run, raises.
    """
    if not images:
        raise AlsegError("the VAE needs at least one image")
    vae = ConvVAE(spatial_dims, images[0].shape[0], latent_dim or latent_dim_for(len(images)))
    data = torch.cat([vae.resize(torch.from_numpy(np.asarray(image, np.float32))[None]) for image in images])
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    vae.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            if control.stopped:
                break
            batch = data[rng.integers(len(data), size=min(batch_size, len(data)))]
            reconstruction, mean, log_variance = vae(batch)
            loss = vae_loss(reconstruction, batch, mean, log_variance)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return vae.eval()


def vae_loss(reconstruction: torch.Tensor, target: torch.Tensor, mean: torch.Tensor,
             log_variance: torch.Tensor) -> torch.Tensor:
    """MSE (summed over voxels) + KL divergence, averaged over the batch (docs/METHODS.md §5.1)."""
    squared_error = (reconstruction - target).pow(2).flatten(1).sum(dim=1)
    kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp()).sum(dim=1)
    return (squared_error + kl).mean()


def encode_latents(vae: ConvVAE, images: Sequence[np.ndarray]) -> np.ndarray:
    """Posterior means ``(N, D)`` float64 of normalised images ``(Cin, *S)``."""
    encoder = _double_copy(vae)
    with torch.no_grad():
        return np.stack([encoder.encode(torch.from_numpy(np.asarray(image, np.float64))[None])[0][0].numpy()
                         for image in images])


def gradient_step_latents(
    seg_net: SegmentationNet,
    vae: ConvVAE,
    image: np.ndarray,
    labels: np.ndarray,
    labelled_mask: np.ndarray,
    step: float = GRADIENT_STEP,
) -> tuple[np.ndarray, np.ndarray]:
    """``(z, z')`` float64 ``(D,)`` for ``x`` and ``x' = x + η ∇_x L_seg(x, y)``.

    ``image`` ``(Cin, *S)`` normalised, as the net sees it; ``labels``/``labelled_mask``
    ``(*S)``. ``L_seg`` is the soft Dice loss over the labelled voxels.
    """
    device = next(seg_net.parameters()).device
    inputs = torch.from_numpy(np.array(image, np.float32))[None].to(device).requires_grad_(True)
    target = torch.from_numpy(np.array(labels, np.int64))[None].to(device)
    mask = torch.from_numpy(np.array(labelled_mask, bool))[None].to(device)
    with eval_mode(seg_net), torch.enable_grad():
        (gradient,) = torch.autograd.grad(masked_dice_loss(seg_net(inputs), target, mask), inputs)
    encoder = _double_copy(vae)
    original, gradient = inputs.detach().cpu().double(), gradient.cpu().double()
    with torch.no_grad():
        z = encoder.encode(original)[0][0].numpy()
        moved = encoder.encode(original + step * gradient)[0][0].numpy()
    return z, moved


def masked_dice_loss(logits: torch.Tensor, labels: torch.Tensor, labelled_mask: torch.Tensor) -> torch.Tensor:
    """``1 - mean_c`` soft Dice over labelled voxels: logits ``(B, C, *S)``, labels/mask ``(B, *S)``."""
    probs = torch.softmax(logits, dim=1)
    mask = labelled_mask.unsqueeze(1).to(probs.dtype)
    target = F.one_hot(labels.clamp_min(0), probs.shape[1]).movedim(-1, 1).to(probs.dtype)
    axes = tuple(range(2, probs.dim()))
    overlap = (probs * target * mask).sum(dim=axes)
    total = (probs * mask).sum(dim=axes) + (target * mask).sum(dim=axes)
    return 1.0 - ((2 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)).mean()


def _double_copy(vae: ConvVAE) -> ConvVAE:
    return copy.deepcopy(vae).cpu().double().eval()
