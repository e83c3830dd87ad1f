"""Intensity normalisation shared by training and prediction, so the two always agree."""

from __future__ import annotations

import numpy as np
from monai.transforms import NormalizeIntensity

from ..errors import AlsegError


def normalise_image(image: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Z-score each channel over its non-zero voxels: ``(Cin, *S)`` -> float32 ``(Cin, *S)``.

    MRI intensities have no fixed scale, and skull-stripped volumes are zero outside
    the head, so the background is left at 0 and does not dilute the statistics.
    Idempotent: callers may pass raw or already normalised images.
    """
    image = np.asarray(image)
    if image.ndim != spatial_dims + 1:
        raise AlsegError(
            f"expected an image with a channel axis and {spatial_dims} spatial axes, got shape {image.shape}"
        )
    normalise = NormalizeIntensity(nonzero=True, channel_wise=True, dtype=np.float32)
    return np.asarray(normalise(image.astype(np.float32, copy=False)), dtype=np.float32)
