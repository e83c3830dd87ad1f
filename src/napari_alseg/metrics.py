"""Segmentation metrics on label arrays (numpy only, so the store and CLI need no torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def dice_per_class(prediction: np.ndarray, truth: np.ndarray, n_classes: int,
                   mask: np.ndarray | None = None) -> np.ndarray:
    """Dice of each class ``1..C-1`` (background skipped): shape ``(C-1,)``.

    A class absent from both arrays gets NaN, not 1: it says nothing about the model,
    and a NaN is skipped by :func:`mean_dice` instead of inflating it. ``mask``
    restricts the comparison to labelled voxels (partial labels).
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    if mask is not None:
        prediction, truth = prediction[mask], truth[mask]
    scores = np.full(n_classes - 1, np.nan)
    for class_id in range(1, n_classes):
        predicted, expected = prediction == class_id, truth == class_id
        total = int(predicted.sum()) + int(expected.sum())
        if total:
            scores[class_id - 1] = 2.0 * int(np.logical_and(predicted, expected).sum()) / total
    return scores


def mean_dice(scores: np.ndarray) -> float:
    """Mean over the classes that were present (NaN when none was)."""
    scores = np.asarray(scores, dtype=float)
    return float(np.nanmean(scores)) if np.any(np.isfinite(scores)) else float("nan")


def item_dice(labels: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    """One item's Dice: the mean over the classes 1..C-1 present in either array; 1.0 when
    neither holds any (nothing to find, and nothing found)."""
    score = mean_dice(dice_per_class(labels, truth, n_classes))
    return 1.0 if np.isnan(score) else score


def class_means(per_item: list[np.ndarray]) -> np.ndarray:
    """Per class, the mean Dice over the items where it was measured (NaN where none was).

    ``per_item``: one :func:`dice_per_class` array per item; NaNs (class absent from an
    item) are skipped, so each class is averaged over its own items.
    """
    stacked = np.stack(per_item)
    counts = np.isfinite(stacked).sum(axis=0)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)


# A checkpoint's metrics keep each per-class Dice as one list by class id (0, background, is
# None), so a class's name (``x_y``, or renamed) never has to be parsed back out of a key.
VAL_DICE_PER_CLASS = "val_dice_per_class"  # Dice of each class on the validation split
LABEL_DICE_PER_CLASS = "label_dice_per_class"  # on the manual labels: dice-per-effort's D_c (docs/METHODS.md §7.5)


def by_class_id(scores: Mapping[int, float], n_classes: int) -> list[float | None]:
    """A per-class metric as a checkpoint keeps it: ``n_classes`` entries by class id, None
    where the class was not measured (background always)."""
    return [None if class_id == 0 else scores.get(class_id) for class_id in range(n_classes)]


def per_class(metrics: Mapping[str, Any], key: str, n_classes: int) -> np.ndarray:
    """The ``(C-1,)`` values of classes 1..C-1 that ``metrics[key]`` holds by class id; NaN
    where it holds none (not measured, or a class added since)."""
    stored = metrics.get(key) or []
    values = [stored[class_id] if class_id < len(stored) else None for class_id in range(1, n_classes)]
    return np.array([np.nan if value is None else value for value in values], dtype=float)
