"""Bootstrap ensembles (docs/METHODS.md §3.7): nets fine-tuned on resamples of the labelled items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import AlsegError, Cancelled
from ..run_control import RunControl

if TYPE_CHECKING:
    from ..model import SegmentationNet, TrainConfig, TrainingItem

def train_bootstrap_nets(
    net: SegmentationNet,
    items: Sequence[TrainingItem],
    config: TrainConfig | None = None,
    n: int = 3,
    seed: int = 0,
    control: RunControl = RunControl.none(),
) -> list[SegmentationNet]:
    """``n`` nets fine-tuned from ``net`` on bootstrap resamples of ``items`` (docs/METHODS.md §3.7).

    Each member draws ``len(items)`` items with replacement (``default_rng(seed)``) and
    trains with ``config`` under seed ``seed + member``. A stop asked of ``control`` ends a
    member's training and raises :class:`~napari_alseg.errors.Cancelled`.
    """
    from ..model import TrainConfig, fine_tune

    if n < 2:
        raise AlsegError(f"bootstrapping needs at least 2 models to measure their variance, got n={n}")
    if not items:
        raise AlsegError("bootstrapping needs labelled items to resample")
    config = config or TrainConfig()
    rng = np.random.default_rng(seed)
    members = []
    for member in range(n):
        resample = [items[i] for i in rng.integers(len(items), size=len(items))]
        try:  # a member's training steps are not the caller's units: its reports are dropped
            result = fine_tune(net, resample, replace(config, seed=seed + member), control=control.reporting_to(None))
        except Cancelled as stop:
            raise Cancelled("bootstrap training cancelled") from stop
        trained = net.spec.build()
        trained.load_state_dict(result.state_dict)
        members.append(trained.eval())
    return members
