"""The plain values a session runs with, one object its parts share: a change made on
``Session.settings`` holds for every part at once. The strategy is changed through
``Session.use_strategy``, which also keeps it with the project for the next opening."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import TrainConfig


STRATEGY_SETTING = "strategy"  # the project's query engine, kept in its meta table across openings
DEFAULT_STRATEGY = "random"


@dataclass
class SessionSettings:
    """Who annotates, with which strategy, and how rounds train and rank (``batch_size``:
    suggestions per request; ``seed``: the one seed of weights, MC masks and ties)."""

    annotator: str
    strategy: str = DEFAULT_STRATEGY
    train_config: TrainConfig | None = None
    device: str | None = None
    batch_size: int = 5
    seed: int = 0
