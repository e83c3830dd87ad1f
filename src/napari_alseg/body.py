"""Where an image holds something, and a prediction that finds nothing anywhere else.

A young model's prediction and doubt read anything in the air around a head, the padding of a
resampled volume or a stack's blank margins; the annotator never labels there. Go, the prefill,
the heat map and pool scoring all take the prediction inside the body only (issue 22 item 2).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def body_mask(image: np.ndarray) -> np.ndarray:
    """Where the image holds something: bool ``(...)`` of ``image`` ``(C, ...)``. Empty is what
    is connected to the volume's edge with every channel at its own floor (a CT's air) or
    at 0 (an MR's air, a resampled volume's padding, a stack's blank margins): no structure
    is there to find, however a young model's prediction or doubt reads there. An interior
    voxel that happens to read 0 (water in CT) stays in the body."""
    image = np.asarray(image)
    floors = image.reshape(len(image), -1).min(axis=1).reshape((-1,) + (1,) * (image.ndim - 1))
    empty = (image <= floors).all(axis=0) | (image == 0).all(axis=0)
    parts, _ = ndimage.label(empty)
    edge = np.ones(empty.shape, bool)
    edge[tuple(slice(1, -1) for _ in empty.shape)] = False
    outside = np.isin(parts, np.unique(parts[edge & empty]))
    return ~(outside & empty)


def background_outside(probabilities: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``probabilities`` ``(C, ...)`` with every voxel outside ``body`` certain background."""
    probabilities = np.array(probabilities, copy=True)
    probabilities[:, ~body] = 0.0
    probabilities[0, ~body] = 1.0
    return probabilities
