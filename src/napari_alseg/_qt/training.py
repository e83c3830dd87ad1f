"""Retrain and rescore as background jobs: the controller's part for the model and the pool.

Workers only compute (``Session.compute_round`` / ``compute_rescore``: nothing saved, no
session state changed); the ``returned`` handlers here run on the main thread and adopt the
result (``adopt_round`` records the checkpoint, ``adopt_rescore`` makes the pool current and
leaves out what was submitted or skipped while it was scored).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import AlsegError
from ..run_control import RunProgress
from .background import JobProgress, duration_text, time_left_text

if TYPE_CHECKING:
    from ..session import RescoreResult, Session, TrainedRound
    from .controller import AlsegController


class LearningJobs:
    """One-click retrain (then rescore), and rescoring the pool for the active model."""

    def __init__(self, controller: AlsegController) -> None:
        self.controller = controller
        self.round_started: float | None = None  # when Retrain was pressed (None: no round running)
        self.trained_after: float | None = None  # seconds from Retrain to the new model

    @property
    def session(self) -> Session | None:
        return self.controller.session

    def retrain(self) -> None:
        controller = self.controller
        if self.session is None:
            return
        controller.round_starting.emit()
        session = self.session
        config = session.learner.round_config()
        self.round_started, self.trained_after = time.monotonic(), None
        controller.start_job("training", session.compute_round, on_progress=self._training_progress,
                             on_done=self._trained)
        controller.report_progress(JobProgress("training", "Training", 0, config.steps or 100))

    def _training_progress(self, update: RunProgress) -> None:
        report = update.detail  # the step's TrainProgress: loss and time left
        if report.step >= report.total_steps:  # the steps are done; validation and rating follow
            self.controller.report_progress(JobProgress(
                "training", "Validating", report.step, report.total_steps,
                f"{report.step} steps done · validating the new model and rating its predictions…", None))
            return
        self.controller.report_progress(JobProgress(
            "training", f"Training (loss {report.loss:.3f})", report.step, report.total_steps,
            f"step {report.step} of ~{report.total_steps} · loss {report.loss:.3f} · "
            f"{time_left_text(report.eta_seconds)}", report.eta_seconds))

    def _trained(self, trained: TrainedRound) -> None:
        controller = self.controller
        try:
            report = self.session.adopt_round(trained)
        except AlsegError as error:
            controller.error.emit(str(error))
            return
        if report.cancelled:
            self.round_started = None
            controller.info.emit(report.message)
            return
        if self.round_started is not None:
            self.trained_after = time.monotonic() - self.round_started
        took = "" if self.trained_after is None else f" in {duration_text(self.trained_after)}"
        controller.info.emit(f"Model {report.model_version} trained{took}: validation Dice "
                             f"{report.metrics.get('val_dice', float('nan')):.3f}")
        if report.message:
            controller.warning.emit(report.message)
        controller.model_changed.emit()
        self.rescore()

    def rescore(self) -> None:
        """Re-score the pool in the background, then refresh suggestions, tables and heat map."""
        controller = self.controller
        if self.session is None:
            return
        session = self.session

        def progress_of(update: RunProgress) -> None:
            controller.report_progress(JobProgress("scoring", "Scoring the pool", update.done, update.total,
                                                   f"scoring {update.done}/{update.total}"))

        controller.start_job("scoring", session.queries.compute_rescore, on_progress=progress_of,
                             on_done=self._rescored)
        controller.report_progress(JobProgress("scoring", "Scoring the pool", 0, 1))

    def _rescored(self, result: RescoreResult) -> None:
        controller = self.controller
        try:
            pool = self.session.queries.adopt_rescore(result)
        except AlsegError as error:
            controller.error.emit(str(error))
            return
        controller.refresh_suggestions()
        if controller.suggestions and controller.suggestions[0].message:
            controller.info.emit(controller.suggestions[0].message)
        controller.status.emit(f"Pool scored with model {pool.model_version}: {len(pool.candidates)} items."
                               + self._round_took())
        controller.scores_changed.emit(pool)

    def _round_took(self) -> str:
        """How long the round took from Retrain to these suggestions, and where the time went
        ("" outside a round); the round is over once said."""
        if self.round_started is None or self.trained_after is None:
            return ""
        total, trained = time.monotonic() - self.round_started, self.trained_after
        self.round_started = self.trained_after = None
        return (f" The round took {duration_text(total)} from Retrain: {duration_text(trained)} training, "
                f"validating and rating, {duration_text(total - trained)} scoring the pool.")
