"""Intensity normalisation shared by training and prediction, so the two always agree."""

from __future__ import annotations

import numpy as np

from ..errors import AlsegError

CLIP_PERCENTILES = (0.5, 99.5)


def normalise_image(image: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Per channel: clip to the body's 0.5–99.5th percentiles, then z-score over the body.

    ``(Cin, *S)`` -> float32 ``(Cin, *S)``. The body is the non-zero voxels: MRI
    intensities have no fixed scale, and skull-stripped volumes are zero outside the
    head, so the background stays 0 and does not dilute the statistics. Clipping first
    keeps a few extreme voxels (vessels, artefacts, a hot spot) from squashing the
    contrast of the rest. Pass raw intensities (a second pass would clip again).
    """
    image = np.asarray(image)
    if image.ndim != spatial_dims + 1:
        raise AlsegError(
            f"expected an image with a channel axis and {spatial_dims} spatial axes, got shape {image.shape}"
        )
    normalised = np.zeros(image.shape, dtype=np.float32)
    for index, channel in enumerate(image.astype(np.float32, copy=False)):
        body = channel != 0
        if not body.any():
            continue
        values = channel[body]
        low, high = np.percentile(values, CLIP_PERCENTILES)
        clipped = np.clip(values, low, high)
        spread = float(clipped.std())
        normalised[index][body] = (clipped - clipped.mean()) / (spread if spread > 0 else 1.0)
    return normalised
