"""The settings of a fine-tuning round (:class:`TrainConfig`), apart from the training code.

Plain values, no torch: :mod:`.training` and :mod:`.batches` both read it, and neither
imports the other for it. ``napari_alseg.model`` and :mod:`.training` re-export it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import AlsegError
from ..plan import BUDGETS, CPU, DEFAULT_LEARNING_RATE

# A bare TrainConfig (no project plan) gets the CPU plan's round budget
# (training fills in its batch and patch edge).
DEFAULT_ROUND_SECONDS = BUDGETS[(CPU, 2)].seconds
RANDOM_CROP_FRACTION = 1 / 3
GUIDED_FRACTION = 0.5
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one fine-tuning round.

    Length: ``seconds`` of wall-clock training and/or ``steps`` optimiser steps, whichever
    comes first; with neither, ``DEFAULT_ROUND_SECONDS``. Steps make a run reproducible.
    ``batch_size``: crops per step and ``patch_size``: crop size in voxels (``None``: the
    per-dimension defaults; a project's plan fills both; items smaller than the patch
    are used whole). ``learning_rate``: the peak, reached after a linear warm-up over
    ``warmup_fraction`` of the round, then cosine decay to 0 (``cosine_decay``).
    ``random_crop_fraction``: share of crops placed at random; the others are centred
    on a labelled voxel of a class drawn uniformly from the delineated classes.
    ``flip_axes``: spatial axes randomly flipped when augmenting; ``None`` (default) is
    the project plan's ``mirror_axes`` in a session, and no flip for a bare config,
    because a left/right flip swaps lateralised atlas labels.
    ``pseudo_label_weight``: loss weight of items marked ``pseudo_label``.
    ``guided_fraction``: share of the steps a guided net trains with simulated clicks
    (:mod:`.guidance`; ignored for a net that reads no clicks).
    Early stopping (off by default: it would hold labels back from training) holds out
    ``validation_fraction`` of the items when there are at least
    ``min_items_for_validation``, checks every ``validate_every`` steps and stops after
    ``patience`` checks without improvement, keeping the best weights.
    ``prefetch``: prepare crops in a background thread. ``device``: ``None`` picks CUDA
    when available.
    """

    steps: int | None = None
    seconds: float | None = None
    batch_size: int | None = None
    learning_rate: float = DEFAULT_LEARNING_RATE
    warmup_fraction: float = WARMUP_FRACTION
    cosine_decay: bool = True
    patch_size: tuple[int, ...] | None = None
    augment: bool = True
    random_crop_fraction: float = RANDOM_CROP_FRACTION
    flip_axes: tuple[int, ...] | None = None
    pseudo_label_weight: float = 0.5
    guided_fraction: float = GUIDED_FRACTION
    validation_fraction: float = 0.0
    min_items_for_validation: int = 4
    validate_every: int = 10
    patience: int = 3
    prefetch: bool = True
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        """Refuse impossible settings when they are made (a CLI flag), not rounds later."""
        batch_size = 1 if self.batch_size is None else self.batch_size
        steps = 1 if self.steps is None else self.steps
        if min(steps, batch_size, self.validate_every, self.patience) < 1:
            raise AlsegError("steps, batch_size, validate_every and patience must be at least 1")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise AlsegError(f"the training budget must be a positive number of seconds, got {self.seconds}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise AlsegError(f"learning_rate must be a positive number, got {self.learning_rate}")
        for name in ("validation_fraction", "warmup_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise AlsegError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("random_crop_fraction", "guided_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AlsegError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def resolved_batch_size(self) -> int:
        """``batch_size`` of a config a round has filled in (``training._resolved``)."""
        if self.batch_size is None:
            raise ValueError("batch_size is read before the round filled it in")
        return self.batch_size

    @property
    def resolved_patch_size(self) -> tuple[int, ...]:
        """``patch_size`` of a config a round has filled in (``training._resolved``)."""
        if self.patch_size is None:
            raise ValueError("patch_size is read before the round filled it in")
        return self.patch_size

    @property
    def budget_seconds(self) -> float | None:
        """The wall-clock budget in force: ``seconds``, else the default unless steps are set."""
        if self.seconds is None and self.steps is None:
            return DEFAULT_ROUND_SECONDS
        return self.seconds
