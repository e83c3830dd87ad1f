"""The dock's controller: owns the session, the background jobs and the item being edited.

The tabs subscribe to its signals and call its verbs; it is the one Qt object that
drives the :class:`~napari_alseg.session.Session`. Long work runs in thread workers that
compute and return; the handlers here run on the main thread, and only they change
session state or layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from qtpy.QtCore import QObject, QTimer, Signal

from ..errors import AlsegError, BadCasesError
from ..domain import LABELS_AS_ANNOTATIONS, LABELS_AS_GROUND_TRUTH, QueryItem
from ..strategies import Suggestion
from .background import JobProgress, JobRunner
from .case_layers import owned_layers
from .clicking import ClickTools
from .editing import ItemEditor
from .tracing import TracingTools
from .training import LearningJobs
from .settings import CORRECT, LoopSettings, RoundSettings, projects_root, settings_events, user_name

if TYPE_CHECKING:
    import numpy as np
    from napari.viewer import Viewer

    from ..run_control import RunControl, RunProgress
    from ..session import Session

T = TypeVar("T")  # what a job's function returns, handed to its on_done

DRAFT_INTERVAL_MS = 30_000
QUEUE_LENGTH = 20
EXCLUSIVE_JOBS = {"training", "scoring"}  # Retrain waits until neither runs


def freeze_imported_objects() -> None:
    """Move what exists now (torch, MONAI, napari: millions of objects) out of the garbage
    collector's view. napari runs ``gc.collect()`` for every layer it removes; over torch's
    heap each took ~0.5 s, several seconds of every Go. Garbage is collected first; a frozen
    object that dies later is still freed by reference counting, only a reference cycle among
    frozen objects would stay (module-level state, which lives as long as the process)."""
    import gc

    gc.collect()
    gc.freeze()


@dataclass
class Runtime:
    """What must be cleaned up when the dock closes: running jobs and the open session."""

    jobs: JobRunner
    session: Session | None = None

    def shutdown(self, *_args: object) -> None:
        self.jobs.shutdown()
        if self.session is not None:
            self.session.close()
            self.session = None


class AlsegController(QObject):
    """Owns the session, the jobs, the queue and (through :attr:`editor`) the item edited.

    Parts with one job each: :attr:`editor` (:class:`ItemEditor`: go, submit, drafts,
    class ranges, heat map), :attr:`learning` (:class:`LearningJobs`: retrain, rescore),
    :attr:`tracing` (:class:`TracingTools`: fill between slices, the model's outline, undo),
    :attr:`clicking` (:class:`ClickTools`: click mode, segment with clicks);
    settings :attr:`loop` and :attr:`round` are evented dataclasses the tabs show. A part
    reads another's state (the item in hand: ``editor.editing``) and calls another's verb when
    the user asked for it (Undo opens the case), but never writes into another part: what it
    did is a signal here the others connect to (item_opened, item_closing, item_submitted,
    round_starting, scores_changed, classes_changed).
    """

    project_opened = Signal()
    project_closed = Signal()
    classes_changed = Signal()
    suggestions_changed = Signal()  # a new ranking (after submit, skip, scoring...)
    suggestion_changed = Signal()  # the same ranking, another item first (Next)
    item_opened = Signal()
    item_closing = Signal()  # the item in hand is let go: its Labels layer may serve the next one
    item_submitted = Signal(object)  # the QueryItem just saved (what Undo submit takes back)
    annotate_requested = Signal()  # e.g. Review's Edit: the Annotate tab should come up
    heat_map_toggled = Signal(bool)
    heat_map_changed = Signal(object)  # the shown case's HeatMapScale, or None when hidden
    click_mode_changed = Signal(object)  # True: Click +, False: Click −, None: off
    job_started = Signal(str)
    job_progress = Signal(object)  # JobProgress
    job_finished = Signal(str)
    model_changed = Signal()
    round_starting = Signal()  # Retrain pressed: the item in hand saves its draft before the long round
    scores_changed = Signal(object)  # the adopted pool, after the suggestions it ranks
    status = Signal(str)
    info = Signal(str)
    warning = Signal(str)
    error = Signal(str)

    def __init__(self, viewer: Viewer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.runtime = Runtime(JobRunner(self._job_changed))
        # magicgui's guiclass marks its dataclass for pyright only: mypy does not see the fields
        self.loop = LoopSettings(annotator=user_name())  # type: ignore[call-arg]
        self.round = RoundSettings()
        self.suggestions: list[Suggestion] = []  # the ranked queue shown; Next rotates it
        self.editor = ItemEditor(self)
        self.learning = LearningJobs(self)
        self.tracing = TracingTools(self)
        self.clicking = ClickTools(self)
        self.init_model: Path | None = None
        self.ask: Callable[[str], bool] = lambda question: False  # the dock asks the person
        self._showing_plan = False
        loop_events, round_events = settings_events(self.loop), settings_events(self.round)
        loop_events.annotator.connect(self._annotator_changed)
        loop_events.strategy.connect(self._strategy_changed)
        loop_events.batch_size.connect(self._batch_changed)
        round_events.budget_minutes.connect(self._budget_changed)
        self.draft_timer = QTimer(self)
        self.draft_timer.setInterval(DRAFT_INTERVAL_MS)
        self.draft_timer.timeout.connect(self.editor.save_draft)
        self.draft_timer.start()

    @property
    def session(self) -> Session | None:
        return self.runtime.session

    @property
    def running_jobs(self) -> set[str]:
        return self.runtime.jobs.names

    @property
    def can_retrain(self) -> bool:
        return self.session is not None and not self.running_jobs & EXCLUSIVE_JOBS

    # ------------------------------------------------------------------ project

    def set_init_model(self, path: str | Path | None) -> None:
        """The model new projects start from (an exported file), or None: untrained."""
        text = str(path or "").strip()
        self.init_model = Path(text) if text else None

    def create_project(self, source: Path, folder: Path, *, labels_as: str = LABELS_AS_ANNOTATIONS) -> None:
        """A project over ``source`` in ``folder`` (from the initial model when one is chosen), then open it.

        ``labels_as``: labels found beside the cases become annotations (kind ``imported``) or are
        held back as ground truth (the samples, whose labels the demo's oracle reads)."""
        from ..session import create_project

        init_model = self.init_model
        notes: list[str] = []

        def create(**options: bool) -> None:
            with create_project(folder, source, init_model=init_model, annotator=self.loop.annotator,
                                labels_as=labels_as, **options) as project:
                notes.extend(project.creation_notes)  # the oblique cases' line: a warning, not only the log

        try:
            try:
                create()
            except BadCasesError as error:  # never drop a case silently: name them, ask
                listed = "\n".join(f"• {name}: {reason}" for name, reason in error.skipped)
                if not self.ask(f"{len(error.skipped)} case(s) cannot be used:\n{listed}\n\n"
                                "Create the project without them?"):
                    self.error.emit(str(error))
                    return
                create(skip_bad_cases=True)
                self.warning.emit(f"created without {len(error.skipped)} case(s): "
                                  + ", ".join(name for name, _ in error.skipped))
        except AlsegError as error:
            self.error.emit(str(error))
            return
        self.open_project(folder)
        for note in notes:
            self.warning.emit(note)

    def open_sample_project(self, sample: str) -> None:
        """Open (creating on first use) a project over one of the sample sets."""
        from ..samples import sample_dir
        from ..session import holds_project

        folder = projects_root() / sample
        try:
            if not holds_project(folder):
                self.status.emit(f"Creating the {sample} sample project (first time: generating data)…")
                self.create_project(sample_dir(sample), folder, labels_as=LABELS_AS_GROUND_TRUTH)
                return
        except AlsegError as error:
            self.error.emit(str(error))
            return
        self.open_project(folder)

    def open_project(self, folder: Path) -> None:
        from ..session import Session, import_model_backend

        self.close_project()
        try:
            session = Session.open(folder, annotator=self.loop.annotator or user_name(),
                                   batch_size=self.loop.batch_size)
        except AlsegError as error:
            self.error.emit(str(error))
            return
        self.loop.strategy = session.settings.strategy  # the project's last engine (no session yet: no rescore)
        self.runtime.session = session
        self.status.emit("Loading the model backend (torch)…")
        import_model_backend()  # on the UI thread once, never first inside a worker
        freeze_imported_objects()
        self._showing_plan = True
        try:
            self.round.budget_minutes = session.planning.training_plan().seconds / 60.0
        finally:
            self._showing_plan = False
        self.project_opened.emit()
        self.model_changed.emit()
        if session.learner.model_version is not None:
            self.learning.rescore()
        else:
            self.refresh_suggestions()
            self.status.emit("No model yet: annotate a few suggestions, then Retrain.")

    def close_project(self) -> None:
        if self.session is None:
            return
        self.editor.save_draft()
        self.runtime.shutdown()
        for layer in owned_layers(self.viewer):
            self.viewer.layers.remove(layer)
        self.editor.close()
        self.project_closed.emit()

    def export_model(self, path: Path) -> None:
        """The current model as one file another project can start from (Session.export_model)."""
        try:
            written = self.session.export_model(path)
        except AlsegError as error:
            self.error.emit(str(error))
            return
        self.info.emit(f"model {self.session.learner.model_version} exported to {written}")

    def update_class(self, class_id: int, *, name: str | None = None,
                     color: tuple[int, int, int] | None = None) -> None:
        """Rename / recolour a class in the project and on the layer being edited."""
        try:
            self.session.update_class(class_id, name=name, color=color)
        except AlsegError as error:
            self.error.emit(str(error))
        self.classes_changed.emit()

    def _annotator_changed(self, name: str) -> None:
        if self.session is not None and name.strip():
            self.session.settings.annotator = name.strip()

    def _strategy_changed(self, name: str) -> None:
        if self.session is not None:
            self.session.use_strategy(name)
            self.learning.rescore() if self.session.learner.model_version else self.refresh_suggestions()

    def _batch_changed(self, value: int) -> None:
        if self.session is not None:
            self.session.settings.batch_size = value
            self.refresh_suggestions()

    def _budget_changed(self, minutes: float) -> None:
        if self.session is not None and not self._showing_plan:
            self.session.planning.set_plan(seconds=minutes * 60.0)

    # ------------------------------------------------------------------ suggestions

    def refresh_suggestions(self) -> None:
        if self.session is None:
            return
        try:
            self.suggestions = self.session.suggest(max(QUEUE_LENGTH, self.loop.batch_size), priced=True)
            self.session.queries.record_served(self.suggestions)  # the queue shown: the round's record
        except AlsegError as error:
            self.error.emit(str(error))
            return
        self.suggestions_changed.emit()

    def next_suggestion(self) -> None:
        if self.suggestions:
            self.suggestions = self.suggestions[1:] + self.suggestions[:1]
            self.suggestion_changed.emit()

    def suggestion_for(self, item: QueryItem) -> Suggestion | None:
        """The queue's suggestion of ``item`` (its box, score and message), None when not queued."""
        return next((suggestion for suggestion in self.suggestions if suggestion.item == item), None)

    def skip(self) -> None:
        if self.session is None or not self.suggestions:
            return
        self.session.skip(self.suggestions[0].item)
        self.refresh_suggestions()

    # ------------------------------------------------------------------ review

    def accept_case(self, case: str) -> None:
        """One click: the case's prediction is stored as its labels (kind pseudo-accepted)."""
        session = self.session

        def predict(control: RunControl | None = None) -> np.ndarray:
            return session.predict_labels(case)

        def accept(prediction: np.ndarray) -> None:  # the write, on the main thread like every submit
            try:
                session.accept_pseudo(case, prediction)
            except AlsegError as error:
                self.error.emit(str(error))
                return
            self._reviewed(case, f"Accepted {case}'s prediction")

        self.start_job("accepting", predict, on_done=accept)

    def reject_case(self, case: str) -> None:
        try:
            self.session.reject_pseudo(case)
        except AlsegError as error:
            self.error.emit(str(error))
            return
        self._reviewed(case, f"Rejected {case}'s prediction: not offered for review again; it comes back "
                             "to the annotation queue with the next re-score (retrain or engine change)")

    def edit_item(self, item: QueryItem) -> None:
        """Open the item's prediction for correction on the Annotate tab."""
        self.loop.mode = CORRECT
        self.annotate_requested.emit()
        self.editor.go(item)

    def _reviewed(self, case: str, message: str) -> None:
        self.info.emit(message)
        self.session.skip(QueryItem(case))
        self.refresh_suggestions()

    # ------------------------------------------------------------------ jobs

    def start_job(self, name: str, function: Callable[..., T], *, on_done: Callable[[T], None],
                  on_progress: Callable[[RunProgress], None] | None = None,
                  on_error: Callable[[str], None] | None = None) -> None:
        """Run ``function`` in a worker; ``on_error`` (default: the one-line error message) gets
        a failure's one line, for a caller that must also note that its job ended."""
        self.runtime.jobs.start(name, function, on_done=on_done, on_progress=on_progress,
                                on_error=on_error or self.error.emit, on_cancelled=self._cancelled)

    def _cancelled(self, message: str) -> None:
        """A job stopped on Cancel: say so, in place of the status line's "Cancelling…"."""
        self.info.emit(message)
        self.status.emit(message)

    def _job_changed(self, name: str, running: bool) -> None:
        (self.job_started if running else self.job_finished).emit(name)

    def report_progress(self, progress: JobProgress) -> None:
        """Forward a running job's progress to the tabs (late reports of ended jobs are dropped)."""
        if progress.name in self.running_jobs:
            self.job_progress.emit(progress)

    def cancel_jobs(self) -> None:
        self.runtime.jobs.cancel()
        self.status.emit("Cancelling… the current model stays active.")
