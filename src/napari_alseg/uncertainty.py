"""Per-item uncertainty scores from softmax probability maps (docs/METHODS.md §3).

Conventions: ``probs`` is ``(C, *spatial)`` softmax probabilities with class 0 the
background; ``samples`` is ``(T, C, *spatial)`` for T Monte-Carlo or bootstrap members.
Every score is a Python float where higher means more uncertain (worth labelling).

NaN policy: any NaN in the input raises :class:`AlsegError`. A NaN probability means the
model diverged; silently zeroing it would rank that item by an arbitrary number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import entr

from .errors import AlsegError


def entropy_map(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats, natural log, 0·log 0 = 0) per voxel: ``(*spatial)``."""
    return entr(_checked_probs(probs)).sum(axis=0)


def mean_entropy(probs: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean voxel entropy (nats) over ``mask`` (all voxels if None); 0 for an empty mask."""
    return _masked_mean(entropy_map(probs), mask)


def class_entropy(
    probs: np.ndarray, class_id: int, region_mask: np.ndarray | None = None
) -> float:
    """Entropy ``H_nc`` (nats) of a (slice, class) item: binary entropy of ``p_c`` over a region.

    Binary (c vs not-c) because delineating c only resolves whether a pixel is c; confusion
    among other classes inside the region is not this item's business. ``region_mask`` is
    the predicted region of c (caller may dilate it or drop labelled pixels); None means
    ``argmax == class_id``. Empty region → 0.
    """
    probs = _checked_probs(probs)
    if not 0 <= class_id < probs.shape[0]:
        raise AlsegError(f"class {class_id} outside 0..{probs.shape[0] - 1}")
    p_class = probs[class_id]
    if region_mask is None:
        region_mask = probs.argmax(axis=0) == class_id
    return _masked_mean(entr(p_class) + entr(1.0 - p_class), region_mask)


def margin_score(probs: np.ndarray) -> float:
    """Margins ``u = -mean(|p_fg - 0.5|)`` (docs/METHODS.md §3.2); ``p_fg = 1 - p_0``, or ``p_0`` if C = 1."""
    probs = _checked_probs(probs)
    foreground = probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]
    return -float(np.abs(foreground - 0.5).mean())


def mc_variance_map(samples: np.ndarray) -> np.ndarray:
    """Per-class variance (ddof 0) over T members: ``(T, C, *spatial)`` → ``(C, *spatial)``."""
    return _checked_samples(samples).var(axis=0)


def class_mean_variance_map(samples: np.ndarray) -> np.ndarray:
    """``V(x) = (1/C) Σ_c Var_t p_t(x, c)`` per voxel (docs/METHODS.md §3.4): ``(*spatial)``."""
    return mc_variance_map(samples).mean(axis=0)


def top_fraction_mean(variance_map: np.ndarray, fraction: float = 0.001) -> float:
    """Mean of the top ``fraction`` of voxel values (at least one voxel), docs/METHODS.md §3.4.

    Averaging only the most uncertain 0.1 % localises the score to the region of interest,
    so a small uncertain structure is not drowned out by faint noise in the background.
    """
    values = _reject_nan(_as_float(variance_map), "variance map").ravel()
    if not 0 < fraction <= 1:
        raise AlsegError(f"fraction must be in (0, 1], got {fraction}")
    if values.size == 0:
        raise AlsegError("variance map is empty")
    n_top = max(1, round(fraction * values.size))
    return float(np.partition(values, values.size - n_top)[-n_top:].mean())


def class_mean_variance_sum(samples: np.ndarray) -> float:
    """Whole-volume MC-dropout score (docs/METHODS.md §3.5): ``Σ_x V(x)``; grows with uncertain volume."""
    return float(class_mean_variance_map(samples).sum())


def bootstrap_score(member_probs: np.ndarray) -> float:
    """Mean over classes and voxels of the variance across bootstrap models (docs/METHODS.md §3.7).

    ``member_probs`` is ``(M, C, *spatial)``, one probability map per model.
    """
    return float(mc_variance_map(member_probs).mean())


def dice_gap(dice_history: Sequence[float], alpha: float = 0.5) -> float:
    """Room for improvement ``1 - D̃`` with ``D̃ = α D(T-1) + (1-α) D(T-2)`` (docs/METHODS.md §7.5).

    Smoothing two rounds damps the noise of Dice on few labels. One value: ``1 - D``;
    no value yet: 1 (nothing known, everything to gain).
    """
    if not 0 <= alpha <= 1:
        raise AlsegError(f"alpha must be in [0, 1], got {alpha}")
    history = _reject_nan(np.asarray(dice_history, dtype=float), "Dice history")
    if history.size == 0:
        return 1.0
    if history.size == 1:
        return 1.0 - float(history[-1])
    return 1.0 - float(alpha * history[-1] + (1 - alpha) * history[-2])


def _masked_mean(values: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None:
        return float(values.mean())
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise AlsegError(f"mask shape {mask.shape} does not match spatial shape {values.shape}")
    return float(values[mask].mean()) if mask.any() else 0.0


def _checked_probs(probs: np.ndarray) -> np.ndarray:
    probs = _as_float(probs)
    if probs.ndim < 2:
        raise AlsegError(f"probabilities must be (C, *spatial), got shape {probs.shape}")
    return _reject_nan(probs, "probabilities")


def _checked_samples(samples: np.ndarray) -> np.ndarray:
    samples = _as_float(samples)
    if samples.ndim < 3 or samples.shape[0] < 2:
        raise AlsegError(
            f"samples must be (T >= 2, C, *spatial), got shape {samples.shape}"
        )
    return _reject_nan(samples, "probability samples")


def _as_float(values: np.ndarray) -> np.ndarray:
    """Float view without copying float32 maps (volumes are large)."""
    values = np.asarray(values)
    return values if np.issubdtype(values.dtype, np.floating) else values.astype(float)


def _reject_nan(values: np.ndarray, what: str) -> np.ndarray:
    if np.isnan(values).any():
        raise AlsegError(f"{what} contain NaN")
    return values
