"""The annotator's verbs over one project: what the widget, the CLI and the simulation drive.

A :class:`Session` composes parts with one job each (napari's ``ViewerModel`` shape) and
exposes them: :attr:`~Session.catalog` (what front ends read of the project),
:attr:`~Session.view` (a read-only view of the labels), :attr:`~Session.planning` (the
training plan's keeper), :attr:`~Session.learner` (network, training rounds, prediction),
:attr:`~Session.queries` (scoring, suggestions, quality ratings) and
:attr:`~Session.accounting` (effort). Its own verbs are those that take several parts or
guard a rule: submits, undo and the tools, training rounds, strategy changes, writes to the
project. Every verb is plain Python with callbacks for progress and cancel.

Long work computes and returns; only the caller's thread changes session state. A widget
runs :meth:`Queries.compute_rescore <.queries.Queries.compute_rescore>` /
:meth:`Session.compute_round` in a thread worker and hands the result to
:meth:`Queries.adopt_rescore <.queries.Queries.adopt_rescore>` / :meth:`Session.adopt_round`
on the main thread; scripts call :meth:`Session.rescore` / :meth:`Session.retrain`, which do both.

torch is imported only by the verbs that need a model; call :func:`import_model_backend`
once on the main thread before starting a worker, because a first import inside a worker
holds the GIL for seconds and freezes the UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..clicks import Click, check_clicks, segment_with_clicks
from ..domain import CASE, MANUAL, EventKind, QueryItem
from ..errors import AlsegError
from ..image_cache import ImageCache
from ..run_control import RunControl
from ..store import Project
from ..strategies import Suggestion
from .accounting import EffortAccounting
from .catalog import Catalog
from .cohort_time import CohortSeconds, cohort_seconds
from .labels import LabelsView
from .learner import Learner, RetrainReport, TrainedRound
from .planning import PlanKeeper
from .queries import Queries
from .settings import DEFAULT_STRATEGY, STRATEGY_SETTING, SessionSettings
from .focus import Focus, focus_from_probabilities
from .tools import ToolEdit, ToolResult, accept_outline, click_edit, fill_between, given_labels, tool_uses

if TYPE_CHECKING:
    from ..model import SegmentationNet, TrainConfig
    from ..pool import PoolScores


def import_model_backend() -> None:
    """Import torch + MONAI now (≈5 s), on the calling thread; later imports are free."""
    from .. import model  # noqa: F401


class Session:
    """One annotator working on one project with one model and one strategy at a time.

    Its parts are public, each with one job; callers use them directly for what one part
    answers alone, and the session's own verbs for what takes several parts or a rule:

    - :attr:`settings` (:class:`SessionSettings`): annotator, strategy, training config,
      device, batch size, seed; the parts read it, so a change holds at once
      (:meth:`use_strategy` also keeps the engine with the project);
    - :attr:`catalog` (:class:`Catalog`): what front ends read of the project;
    - :attr:`view` (:class:`LabelsView`): images, spacing, labels as training reads them;
    - :attr:`planning` (:class:`PlanKeeper`): the training plan (``training_plan``, ``set_plan``);
    - :attr:`learner` (:class:`Learner`): ``model_version``, the network, prediction, heat maps;
    - :attr:`queries` (:class:`Queries`): scoring (``compute_rescore`` / ``adopt_rescore``),
      suggestions, quality ratings;
    - :attr:`accounting` (:class:`EffortAccounting`): effort spent, the seconds model, the curve.
    """

    def __init__(self, project: Project, *, annotator: str, strategy: str | None = None,
                 train_config: TrainConfig | None = None, device: str | None = None,
                 batch_size: int = 5, seed: int = 0) -> None:
        self._project = project
        self.catalog = Catalog(project)
        strategy = strategy or project.setting(STRATEGY_SETTING) or DEFAULT_STRATEGY
        self.settings = SessionSettings(annotator, strategy, train_config, device, batch_size, seed)
        self.view = LabelsView(project, ImageCache())
        self.planning = PlanKeeper(project, lambda: self.settings.device)
        self.learner = Learner(project, self.settings, self.view, self.planning)
        self.accounting = EffortAccounting(project, self.view)
        self.queries = Queries(project, self.settings, self.view, self.learner, self.accounting)
        self._click_prediction: tuple[tuple[Any, ...], np.ndarray] | None = None  # see _click_prior

    @classmethod
    def open(cls, folder: str | Path, **options: Any) -> Session:
        return cls(Project.open(folder), **options)

    def close(self) -> None:
        self._project.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def use_strategy(self, name: str) -> None:
        """Use engine ``name`` and keep it as the project's, so the next opening starts with it
        (``strategy=None`` at construction takes the project's last one)."""
        self.settings.strategy = name
        if self._project.setting(STRATEGY_SETTING) != name:
            self._project.store_setting(STRATEGY_SETTING, name)

    # ------------------------------------------------------------------ model

    def export_model(self, path: str | Path) -> Path:
        """The current model as a self-describing file another project can start from
        (:mod:`napari_alseg.session.model_transfer`); ``path`` may be a folder."""
        from .model_transfer import export_model

        return export_model(self._project, self.planning.training_plan(), path)

    def compute_round(self, *, control: RunControl = RunControl.none(), rate_quality: bool = True) -> TrainedRound:
        """Train a round on a snapshot of the labels (a worker may run this); nothing is saved.

        ``rate_quality``: also rate predictions of known Dice for the quality predictor
        (out of fold, :meth:`Learner.quality_examples`; cases, or slices); simulations,
        which do not show it, pass False.
        """
        wanted = rate_quality
        return self.learner.compute_round(control=control,
                                          unseen=self.queries.unseen_items() if wanted else (),
                                          known_examples=self.queries.n_quality_examples if wanted else None)

    def adopt_round(self, trained: TrainedRound) -> RetrainReport:
        """Save and record a trained round: the new active model (the caller's thread); its
        rated predictions become quality examples."""
        report = self.learner.adopt_round(trained)
        if not trained.cancelled:
            self.queries.add_quality_examples(list(trained.quality_examples))
        return report

    def retrain(self, *, control: RunControl = RunControl.none(), rate_quality: bool = True) -> RetrainReport:
        """Fine-tune the active model on every label so far; a new checkpoint on success.

        Cancelled or failed rounds leave the previous checkpoint active (training runs
        on a copy); a stop asked of ``control`` comes back as a report with ``cancelled`` set,
        not raised. Raises :class:`~napari_alseg.errors.AlsegError` when nothing is labelled yet.
        """
        return self.adopt_round(self.compute_round(control=control, rate_quality=rate_quality))

    def predict_labels(self, case: str, slice_index: int | None = None, *,
                       net: SegmentationNet | None = None, partial_labels: bool = True) -> np.ndarray:
        """The model's label map; the current model's own, given the labels, is predicted once per
        item and labels version and shared with the click tool's prior (:meth:`_unguided_prediction`)."""
        if net is None and partial_labels and self.learner.model_version is not None:
            return self._unguided_prediction(case, slice_index).argmax(axis=0).astype(self._project.label_dtype)
        return self.learner.predict_labels(case, slice_index, net=net, partial_labels=partial_labels)

    def focus(self, case: str, probabilities: np.ndarray | None = None) -> Focus | None:
        """Where the work is in a case (:mod:`.focus`): the slice and box where the model is least
        certain about a structure it predicts, else where it predicts one, and the class to
        select. ``probabilities`` ``(C, k, j, i)`` (predicted now when None; long: a worker's
        job). None without a model or when nothing is predicted."""
        if probabilities is None:
            if self.learner.model_version is None:
                return None
            probabilities = self.learner.predict_probabilities(case)
        return focus_from_probabilities(probabilities)

    # ------------------------------------------------------------------ annotating

    def submit(self, case: str, labels: np.ndarray, *, kind: EventKind = MANUAL, seconds_active: float,
               slice_index: int | None = None, class_id: int | None = None,
               original: np.ndarray | None = None, started_at: datetime | None = None,
               tools: list[ToolEdit] | tuple[ToolEdit, ...] = ()) -> int:
        """Save submitted labels durably, with the boundary the annotator had to trace.

        For a correction (``original`` = the prefilled prediction) the effort is the
        boundary actually changed; otherwise the whole boundary of what was drawn, each
        shared boundary counted once (docs/METHODS.md §7.3). ``tools``: what :meth:`fill_between` /
        :meth:`accept_outline` / :meth:`click_segment` set in these labels; their outline (where
        kept) is not charged, and each is recorded as an event of its own kind with the voxels
        kept (and its clicks).
        The item is left out of this round's suggestions, also of a rescore computed while
        it was being submitted.
        """
        edits = [edit for edit in tools if class_id is None or edit.class_id == class_id]
        given = given_labels(edits, labels, slice_index) if edits else None
        effort = self.accounting.boundary_effort(case, labels, original=original, class_id=class_id,
                                                 slice_index=slice_index, given=given)
        event_id = self._project.submit(
            case, labels, kind=kind, slice_index=slice_index, class_id=class_id,
            annotator=self.settings.annotator, seconds_active=seconds_active, started_at=started_at,
            original=original, boundary_px=effort.px, boundary_mm=effort.mm,
            model_version=self.learner.model_version, tools=tool_uses(edits, labels, slice_index))
        item = QueryItem(case, slice_index, class_id)
        self.queries.handled(item)
        if original is not None:
            self.queries.correction_submitted(item, original, labels)
        return event_id

    def fill_between(self, case: str, labels: np.ndarray, class_id: int, first: int, last: int) -> ToolResult:
        """Class ``class_id`` interpolated across the slices between its outlines on ``first`` and
        ``last`` of the case's labels being edited ``(k, j, i)``; nothing is saved. Put the result
        on screen to check, and pass its ``edit`` to :meth:`submit` (``tools``)."""
        if self._project.granularity != CASE:
            raise AlsegError("fill between slices needs a case project: this one submits one slice at a "
                             "time, so the slices between would not be saved")
        self._check_volume(case, labels)
        return fill_between(labels, class_id, first, last)

    def accept_outline(self, case: str, labels: np.ndarray, slice_index: int, class_id: int,
                       prediction: np.ndarray | None = None) -> ToolResult:
        """One click: the current model's outline of ``class_id`` on slice ``slice_index``
        (``prediction`` ``(j, i)``, predicted now when None) copied into the labels being edited
        ``(k, j, i)`` where background; nothing is saved (pass the edit to :meth:`submit`)."""
        self._check_volume(case, labels)
        if prediction is None:
            if self.learner.model_version is None:
                raise AlsegError("no model yet: train one before accepting its outline")
            prediction = self.predict_labels(case, slice_index)
        return accept_outline(labels, prediction, slice_index, class_id)

    def click_segment(self, case: str, labels: np.ndarray, class_id: int, clicks: Sequence[Click], *,
                      slice_index: int | None = None, use_model: bool = True) -> ToolResult:
        """Class ``class_id`` of the labels being edited ``(k, j, i)`` re-segmented near ``clicks``
        from the case's channels (:func:`~napari_alseg.clicks.segment_with_clicks`), with the
        current model's probabilities as a prior when ``use_model`` and a model exists (given the
        clicks when the model reads them, :meth:`_click_prior`). Only
        ``slice_index`` changes when given (a slice project needs it). Nothing is saved: put the
        result on screen to check, and pass its ``edit`` to :meth:`submit` (``tools``)."""
        self._check_volume(case, labels)
        if slice_index is None and self._project.granularity != CASE:
            raise AlsegError("segment with clicks needs the slice clicked on: this project submits "
                             "one slice at a time")
        if not 0 < int(class_id) < self._project.n_classes:
            raise AlsegError(f"class {class_id} is not a class to click (1..{self._project.n_classes - 1})")
        check_clicks(clicks, np.shape(labels), slice_index)  # before a prediction, which takes long
        record = self._project.case(case)
        prior = self._click_prior(case, int(class_id), slice_index, clicks) if use_model else None
        segmentation = segment_with_clicks(self.view.case_image(case), labels, class_id, clicks,
                                           spacing=record.spacing, slice_index=slice_index, prior=prior)
        return click_edit(segmentation, class_id, slice_index, len(clicks))

    def _click_prior(self, case: str, class_id: int, slice_index: int | None,
                     clicks: Sequence[Click]) -> np.ndarray | None:
        """The model's probability of ``class_id`` as a float32 ``(k, j, i)`` array: 0.5 (no
        information) off ``slice_index`` when one is given; None without a model.

        A guided model predicts given all ``clicks`` (a positive one says ``class_id``, a
        negative one background); another's prediction does not change with them, so the last
        one is kept per (case, slice, model version, labels version) for the next click.
        """
        if self.learner.model_version is None:
            return None
        net = self.learner.current_net()
        if net is not None and net.spec.guidance:
            said = [(click.position, class_id if click.positive else 0) for click in clicks]
            probabilities = self.learner.predict_probabilities(case, slice_index, clicks=said)[class_id]
        else:
            probabilities = self._unguided_prediction(case, slice_index)[class_id]
        if slice_index is None:
            return probabilities.astype(np.float32)
        prior = np.full(self._project.case(case).shape, 0.5, np.float32)
        prior[slice_index] = probabilities
        return prior

    def _unguided_prediction(self, case: str, slice_index: int | None) -> np.ndarray:
        """:meth:`Learner.predict_probabilities`, remembered for one (case, slice, model, labels version).
        Read into a local first: a worker thread may replace the remembered one meanwhile."""
        snapshot = self._project.current_labels(case)
        key = (case, slice_index, self.learner.model_version, None if snapshot is None else snapshot.version)
        remembered = self._click_prediction
        if remembered is None or remembered[0] != key:
            remembered = (key, self.learner.predict_probabilities(case, slice_index))
            self._click_prediction = remembered
        return remembered[1]

    def undo_submit(self, case: str) -> int:
        """Take back the case's last submit that still stands: the label version before it is
        written again as a new version (the history is kept), its events are marked undone and
        an ``undo`` event records it; the case's items are offered again. For its first submit
        the case becomes unlabelled. One-line AlsegError when nothing submitted stands."""
        event_id = self._project.undo_submit(case, annotator=self.settings.annotator)
        self.queries.returned(case)
        return event_id

    def _check_volume(self, case: str, labels: np.ndarray) -> None:
        shape = self._project.case(case).shape
        if np.shape(labels) != tuple(shape):
            raise AlsegError(f"case {case}: labels of shape {np.shape(labels)}, the case is {tuple(shape)}")

    def accept_pseudo(self, case: str, prediction: np.ndarray | None = None, *,
                      slice_index: int | None = None, seconds_active: float = 0.0) -> int:
        """One click: the model's prediction becomes the case's labels (kind pseudo-accepted)."""
        prediction = self.predict_labels(case, slice_index) if prediction is None else prediction
        return self._project.accept_pseudo(case, prediction, slice_index=slice_index,
                                          annotator=self.settings.annotator, seconds_active=seconds_active,
                                          model_version=self.learner.model_version)

    def reject_pseudo(self, case: str, *, slice_index: int | None = None,
                      seconds_active: float = 0.0) -> int:
        """Record that the prediction was not good enough; the case stays for the annotator."""
        return self._project.reject_pseudo(case, slice_index=slice_index, annotator=self.settings.annotator,
                                          seconds_active=seconds_active, model_version=self.learner.model_version)

    def save_draft(self, case: str, labels: np.ndarray) -> None:
        self._project.save_draft(case, labels)

    def mark_class_range(self, case: str, class_id: int, first_slice: int, last_slice: int) -> int:
        """Weak annotation (docs/METHODS.md §7.1): class ``class_id`` appears only on slices first..last."""
        return self._project.add_weak_annotation(case, class_id, first_slice, last_slice,
                                                annotator=self.settings.annotator)

    def export(self, out_dir: str | Path) -> list[Path]:
        return self._project.export(out_dir)

    def update_class(self, class_id: int, *, name: str | None = None,
                     color: tuple[int, int, int] | None = None) -> None:
        """Rename or recolour a class (its id and every label stay as they are)."""
        self._project.update_class(class_id, name=name, color=color)

    # ------------------------------------------------------------------ suggesting

    def rescore(self, *, control: RunControl = RunControl.none(), for_display: bool = True) -> PoolScores:
        """Score the pool for the active model and strategy and make it the current one (scripts,
        CLI, simulation); a widget runs ``queries.compute_rescore`` in a worker and hands the
        result to ``queries.adopt_rescore``. ``for_display=False`` computes only what the
        strategy ranks by."""
        return self.queries.rescore(control=control, for_display=for_display)

    def suggest(self, k: int | None = None, *, priced: bool = False) -> list[Suggestion]:
        """The next ``k`` items; ``priced`` adds each one's remaining effort (mm, estimated s).

        Where the current pool no longer fits the model, the engine or (before a model) the
        labels, a model-free one becomes current first (``queries.refresh_pool``: cheap, no
        prediction; ``rescore`` scores with the model). Nothing is recorded: a front end
        that serves the list keeps it with ``queries.record_served``."""
        self.queries.refresh_pool()
        return self.queries.suggest(k, priced=priced)

    def skip(self, item: QueryItem) -> None:
        """Leave an item out of this round's suggestions (it comes back after re-scoring)."""
        self.queries.handled(item)

    def cohort_seconds(self) -> CohortSeconds:
        """Seconds spent on the cohort, left with the current model, and tracing it would take
        (:mod:`.cohort_time`); from the last scoring, so cheap on the UI thread."""
        return cohort_seconds(self.queries.current_pool(), self.accounting, self.view)
