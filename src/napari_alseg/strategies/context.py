"""What an engine ranks by beside the round's scores: the session's knowledge of effort, time
and where each structure is.

Scoring predicts and has no use for the effort model, the annotator's seconds, the Dice history
or the marked slice ranges; only dice-per-effort reads them. The session builds a
:class:`SelectionContext` with the pool it scores and hands both to
:func:`~napari_alseg.strategies.select` (docs/DESIGN.md §3.4), so these values reach the engine
without riding through :class:`~napari_alseg.scoring.ScoreRequest` and the pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..domain import NEED_EFFORT, Need
from ..effort.matrix import EffortModel
from ..effort.seconds import SecondsModel


@dataclass(frozen=True)
class SelectionContext:
    """The inputs of one round's ranking that are not scores.

    ``effort``: the running boundary matrix ``B`` (docs/METHODS.md §7.4), None = none (the
    engines that price by it fall back); ``seconds_model``: the annotator's fitted seconds per
    boundary, None until fitted; ``spacing[case]``: in-plane pixel size (row, col) mm;
    ``class_dice_history``: per round, Dice on the manual labels ``(C-1,)`` of classes
    1..C-1; ``class_ranges[(case, class)]``: the weak slice range ``(first, last)`` the
    annotator marked (docs/METHODS.md §7.1); ``traced_spans[(case, class)]``: the first and
    last slice holding labelled voxels of the class (:func:`traced_spans`).
    """

    effort: EffortModel | None = None
    seconds_model: SecondsModel | None = None
    spacing: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    class_dice_history: Sequence[np.ndarray] = ()
    class_ranges: Mapping[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    traced_spans: Mapping[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def available(self) -> frozenset[Need]:
        """Which needs the context serves (the pool serves the others)."""
        return frozenset({NEED_EFFORT}) if self.effort is not None else frozenset()


def traced_spans(labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
                 n_classes: int) -> dict[tuple[str, int], tuple[int, int]]:
    """``(case, class)`` → the first and last slice holding labelled voxels of the class
    (classes 1..C-1; a class with none labelled has no span), from each case's (class ids,
    labelled mask) ``(k, j, i)``. Structures are contiguous along the stack, so before a
    model the slices between are where the class is known to be."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for case in sorted(labels):
        given = labels[case]
        if given is None:
            continue
        data, mask = np.asarray(given[0]), np.asarray(given[1], dtype=bool)
        if not mask.any():
            continue
        for class_id in range(1, n_classes):
            slices = np.flatnonzero(((data == class_id) & mask).any(axis=(1, 2)))
            if slices.size:
                spans[(case, class_id)] = (int(slices[0]), int(slices[-1]))
    return spans
