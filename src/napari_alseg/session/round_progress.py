"""One progress counter over a round's stages: its fine-tune, then its quality folds.

Each stage's fine-tune reports its own steps and (for a time budget) an estimate of its own
total that moves with its pace. Rescaled stage by stage, the counter ran backwards and its
total changed when a fold started at another pace (issue 22 item 10). :class:`RoundProgress`
keeps one counter: during the round's fine-tune it counts that fine-tune's steps, the total
scaled up by the folds' share of the budget; from the first fold on the total is frozen and
each fold fills its share of what is left, by the fraction of its own steps done. The
counter never goes back. Each stage is a :class:`~napari_alseg.run_control.RunControl` with
the round's stop, whose reports are rescaled into the round's control.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..run_control import RunControl, RunProgress

if TYPE_CHECKING:
    from ..model import TrainProgress


class RoundProgress:
    """Stages ``sizes`` (each one's budget in one unit: steps, or seconds) reported to the
    round's ``control`` as one bar; :meth:`stage` gives stage ``index``'s control for ``fine_tune``."""

    def __init__(self, control: RunControl, sizes: Sequence[float]) -> None:
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"stage budgets must be positive, got {list(sizes)}")
        self.control = control
        self.sizes = [float(size) for size in sizes]
        self.shown = 0  # the last step shown
        self.total: int | None = None  # the last total shown; frozen once the folds start
        self._folds: tuple[int, int] | None = None  # once the first fold began: (step shown then, frozen total)

    def stage(self, index: int) -> RunControl:
        started = time.perf_counter()
        sizes, size = self.sizes, self.sizes[index]
        later = sum(sizes[index + 1:]) / size  # the stages still to run, in this stage's budgets

        def report(update: RunProgress) -> None:
            step: TrainProgress = update.detail
            stage_seconds = time.perf_counter() - started + step.eta_seconds
            eta = step.eta_seconds + later * stage_seconds
            if index == 0:
                total = round(step.total_steps * sum(sizes) / size) if len(sizes) > 1 else step.total_steps
                shown = step.step
            else:
                if self._folds is None:
                    self._folds = (self.shown, max(self.total or 0, self.shown + 1))
                folds_from, total = self._folds
                fraction = min(step.step / max(step.total_steps, 1), 1.0)
                share = (sum(sizes[1:index]) + size * fraction) / sum(sizes[1:])
                shown = folds_from + round((total - folds_from) * share)
            self.shown = max(self.shown, min(shown, total))
            self.total = total
            self.control.report(self.shown, total, replace(step, step=self.shown, total_steps=total, eta_seconds=eta))

        return self.control.reporting_to(report)
