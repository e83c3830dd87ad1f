"""Bootstrap ensembles (docs/METHODS.md §3.7): nets fine-tuned on resamples of the labelled items."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import AlsegError
from .request import ScoringCancelled

if TYPE_CHECKING:
    from ..model import SegmentationNet, TrainConfig, TrainingItem

def train_bootstrap_nets(
    net: SegmentationNet,
    items: Sequence[TrainingItem],
    config: TrainConfig | None = None,
    n: int = 3,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
) -> list[SegmentationNet]:
    """``n`` nets fine-tuned from ``net`` on bootstrap resamples of ``items`` (docs/METHODS.md §3.7).

    Each member draws ``len(items)`` items with replacement (``default_rng(seed)``) and
    trains with ``config`` under seed ``seed + member``. Raises :class:`ScoringCancelled`
    when ``should_stop`` ends a member's training.
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
        result = fine_tune(net, resample, replace(config, seed=seed + member), should_stop=should_stop)
        if result.cancelled or result.state_dict is None:
            raise ScoringCancelled("bootstrap training cancelled")
        trained = net.spec.build()
        trained.load_state_dict(result.state_dict)
        members.append(trained.eval())
    return members
