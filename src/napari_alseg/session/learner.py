"""The learner: the network cache, training rounds, prediction, heat maps (sized by the plan keeper).

Training is two steps (docs/DESIGN.md §5.2: a worker computes and returns; the main thread adopts):
:meth:`Learner.compute_round` trains on a snapshot of the labels and returns a
:class:`TrainedRound` without touching the project; :meth:`Learner.adopt_round` saves and
records the checkpoint, which makes it the active model. Prediction and uncertainty maps
change nothing the UI reads (the network and heat-map caches are locked memos), so they may
run in a worker too.

torch is imported only by the methods that need a model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import CASE, QueryItem
from ..errors import AlsegError
from ..metrics import LABEL_DICE_PER_CLASS, VAL_DICE_PER_CLASS, by_class_id, class_means, dice_per_class, mean_dice, per_class
from ..store import Project
from ..body import background_outside, body_mask
from ..run_control import RunControl
from .focus import shown_doubt
from .labels import LabelsView
from .planning import PlanKeeper
from .round_progress import RoundProgress
from .settings import SessionSettings

if TYPE_CHECKING:
    from ..model import ModelSpec, SegmentationNet, TrainConfig, TrainingItem

MIN_LABELLED_ITEMS = 1
QUALITY_FOLDS = 2  # k of the k-fold that rates labelled items out of fold (each fold: one more fine-tune)
QUALITY_EXAMPLES_WANTED = 12  # the k-fold runs only while fewer rated predictions than this are known
# Each fold trains for this share of the round's budget (seconds or steps), so the folds add
# half a round, not two: the annotator asked for "train for N minutes". A fold model trained
# less rates a little low, the safe side for a clinician deciding what to accept.
QUALITY_FOLD_BUDGET = 0.25

ClassClick = tuple[tuple[int, int, int], int]  # (voxel (k, j, i) of a case, the class the annotator says it is)


@dataclass(frozen=True)
class RetrainReport:
    """What one retrain round did; small enough to hand across threads."""

    model_version: str | None
    cancelled: bool
    steps_done: int
    n_items: int
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class TrainedRound:
    """A finished (or cancelled) round not yet adopted: the trained net (None when
    cancelled), its metrics, and the model it was trained from."""

    base_version: str | None
    net: SegmentationNet | None
    spec: ModelSpec
    steps_done: int
    n_items: int
    metrics: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    quality_examples: tuple[tuple[QueryItem, np.ndarray, float], ...] = ()

    @property
    def cancelled(self) -> bool:
        return self.net is None


class Learner:
    """One project's model: active network, rounds, predictions; its plan is ``planning``'s.

    Over ~300 lines because a round is one unit: its training, the quality examples it
    rates out of fold, and the adopt that records both (splitting them would pass the
    round's state between classes).
    """

    def __init__(self, project: Project, settings: SessionSettings, view: LabelsView,
                 planning: PlanKeeper) -> None:
        self.project = project
        self.settings = settings
        self.view = view
        self.planning = planning
        self._lock = threading.Lock()
        self._net: SegmentationNet | None = None
        self._loaded_version: str | None = None
        self._uncertainty: dict[tuple[str | None, str], np.ndarray] = {}

    # ------------------------------------------------------------------ model

    @property
    def model_version(self) -> str | None:
        """The active model: the last recorded checkpoint (None before the first retrain)."""
        checkpoints = self.project.checkpoints()
        return checkpoints[-1].model_version if checkpoints else None

    def model_spec(self) -> ModelSpec:
        """The network a new model of this project gets: its plan's widths, working grid and guidance."""
        from ..model import ModelSpec

        plan = self.planning.training_plan()
        return ModelSpec(spatial_dims=self.view.spatial_dims,
                         in_channels=len(self.project.cases[0].channel_names),
                         n_classes=self.project.n_classes, features=plan.features, zoom=plan.zoom,
                         guidance=plan.guidance)

    def current_net(self) -> SegmentationNet | None:
        """The active model's network, loaded once per version (None without a model)."""
        from ..model import load_checkpoint

        checkpoints = self.project.checkpoints()
        if not checkpoints:
            return None
        latest = checkpoints[-1]
        with self._lock:
            if self._loaded_version != latest.model_version:
                self._net, _spec, _metrics = load_checkpoint(latest.path)
                self._loaded_version = latest.model_version
            return self._net

    def start_net(self) -> tuple[SegmentationNet | None, str | None, str]:
        """What a round trains from: ``(net, its version, note)``. The active model, else (its
        checkpoint does not load: damaged, missing) the newest checkpoint that does, else None
        (the initial network); ``note`` says so in one line ("" when the active model loads).
        So a damaged checkpoint blocks prediction, not the retrain that replaces it."""
        from ..model.checkpoints import CheckpointError, load_checkpoint

        checkpoints = self.project.checkpoints()
        if not checkpoints:
            return None, None, ""
        latest = checkpoints[-1]
        try:
            return self.current_net(), latest.model_version, ""
        except CheckpointError as error:
            reason = error.reason
        where = f"{self.project.models_dir.name}/{latest.path.name}"
        note = f"model {latest.model_version}'s checkpoint ({where}) does not load ({reason}); "
        for older in reversed(checkpoints[:-1]):
            try:
                net, _spec, _metrics = load_checkpoint(older.path)
            except CheckpointError:
                continue
            return net, older.model_version, note + f"this round started from model {older.model_version}"
        return None, None, note + ("no earlier checkpoint loads either, so this round started from the "
                                   "initial network")

    def class_dice_history(self) -> list[np.ndarray]:
        """Dice per class (1..C-1) on the manual labels after each round: dice-per-effort's D_c(T).

        NaN for a class not delineated by then (dice-per-effort keeps the room for
        improvement of such a class at 1).
        """
        return [per_class(checkpoint.metrics, LABEL_DICE_PER_CLASS, self.project.n_classes)
                for checkpoint in self.project.checkpoints()]

    def initial_net(self) -> SegmentationNet:
        """The first network, seeded: the same project and seed start from the same weights."""
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(self.settings.seed)
            return self.model_spec().build()

    # ------------------------------------------------------------------ round settings

    def round_config(self) -> TrainConfig:
        """This round's settings: ``train_config`` where it says, the plan for the rest.

        A config without steps or seconds trains for the plan's budget.
        """
        from ..model import TrainConfig

        plan = self.planning.training_plan()
        config = self.settings.train_config or TrainConfig(device=self.settings.device, seed=self.settings.seed)
        seconds = plan.seconds if config.steps is None and config.seconds is None else config.seconds
        return replace(config, seconds=seconds, batch_size=config.batch_size or plan.batch_size,
                       patch_size=config.patch_size or plan.patch_size,
                       flip_axes=plan.mirror_axes if config.flip_axes is None else config.flip_axes)

    def bootstrap_config(self) -> TrainConfig:
        """Half a round per ensemble member (half the steps or half the seconds)."""
        config = self.round_config()
        return replace(config, steps=None if config.steps is None else max(1, config.steps // 2),
                       seconds=None if config.seconds is None else config.seconds / 2)

    @property
    def inference_patch(self) -> tuple[int, ...] | None:
        """Sliding-window size for prediction and scoring (native voxels), the plan's."""
        return self.planning.inference_patch()

    # ------------------------------------------------------------------ training

    def compute_round(self, *, control: RunControl = RunControl.none(), unseen: Collection[QueryItem] = (),
                      known_examples: int | None = None) -> TrainedRound:
        """Fine-tune the active model on a snapshot of every label so far; nothing is saved.

        Also rates predictions of known Dice for the quality predictor, at no cost to the
        annotator (:meth:`quality_examples`): ``unseen`` are items the active model rated
        before they were labelled; ``known_examples`` (None: no quality rating wanted) how
        many rated predictions the project already has. ``control`` gets one counter over the
        round and its folds; a stop during the fine-tune hands back a cancelled round (no net),
        one during the folds ends them and keeps the trained round.
        Safe in a worker thread: reads the project, writes nothing. Raises
        :class:`AlsegError` when nothing is labelled yet.
        """
        from ..model import TrainingCancelled, fine_tune, with_guidance

        keyed = self.view.keyed_training_items()
        items = [item for _key, item in keyed]
        if len(items) < MIN_LABELLED_ITEMS:
            unit = CASE if self.view.spatial_dims == 3 else "slice or ROI"
            raise AlsegError(f"no labelled data yet: submit at least {MIN_LABELLED_ITEMS} labelled "
                             f"{unit} (outside the validation split) before retraining")
        base, base_version, start_note = self.start_net()
        net = with_guidance(base or self.initial_net(), self.planning.training_plan().guidance)
        folds = 0 if known_examples is None else self.quality_folds(keyed, unseen, known_examples)
        stages = RoundProgress(control, self._stage_sizes(folds))  # one counter for the round and its folds
        try:
            result = fine_tune(net, items, self.round_config(), control=stages.stage(0))
        except TrainingCancelled as stop:  # the round's boundary: a cancelled round, adopted to nothing
            return TrainedRound(base_version, None, net.spec, stop.steps_done, len(items))
        trained = net.spec.build()
        trained.load_state_dict(result.state_dict)
        metrics = {key: value for key, value in result.metrics.items() if isinstance(value, (int, float))}
        metrics.update(self.validation_metrics(trained))
        if self.view.spatial_dims == 2:
            metrics.update(self.label_metrics(trained))
        metrics["n_items"] = len(items)
        warnings = tuple(str(w) for w in result.metrics.get("warnings") or [])
        if start_note:
            warnings = (start_note, *warnings)
        examples: list[tuple[QueryItem, np.ndarray, float]] = []
        if known_examples is not None:
            started = time.perf_counter()
            examples = self.quality_examples(keyed, trained, base, unseen, known_examples, stages=stages)
            metrics["quality_examples_rated"], metrics["quality_folds"] = len(examples), folds
            metrics["quality_rating_s"] = time.perf_counter() - started
        return TrainedRound(base_version, trained, net.spec, result.steps_done, len(items), metrics, warnings,
                            tuple(examples))

    def quality_examples(self, keyed: Sequence[tuple[QueryItem, TrainingItem]], trained: SegmentationNet,
                         base: SegmentationNet | None, unseen: Collection[QueryItem], known: int, *,
                         stages: RoundProgress) -> list[tuple[QueryItem, np.ndarray, float]]:
        """``(item, quality features, true Dice)`` of predictions by models that never trained
        on the item, for the quality predictor (it needs known Dice, docs/METHODS.md §6.3; the
        annotator gives nothing extra):

        - the ``trained`` model on the validation split, against its annotations or else
          the ground truth (as :meth:`validation_metrics`);
        - free: the round's base model on fully labelled items it rated while unlabelled
          (``unseen``: labelled since that model was trained), one prediction each;
        - while fewer than :data:`QUALITY_EXAMPLES_WANTED` are known (``known`` plus these),
          a :data:`QUALITY_FOLDS`-fold of this round's fine-tune: each fold trains from the
          same base with the same settings on the other items and rates its own (contiguous
          slices of a stack fold together, so a neighbour slice seen in training does not
          flatter its neighbour). Each fold trains for :data:`QUALITY_FOLD_BUDGET` of the
          round's budget, plus one MC-dropout pass per rated item.
          The folds are ``stages`` 1.. of the round's :class:`.RoundProgress` (its counter and
          its stop); a stop ends the folds, with the examples rated so far.

        The trained model itself is never rated on its own training items (that would be
        training Dice, not quality).
        """
        from ..model import TrainingCancelled, fine_tune
        from ..scoring import rated_prediction

        eligible = [(key, item) for key, item in keyed if item.labelled_mask.all() and not item.pseudo_label]
        n_classes = self.project.n_classes

        def rated(net: SegmentationNet, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
            return rated_prediction(net, image, labels, n_classes, spatial_dims=self.view.spatial_dims,
                                    patch_size=self.inference_patch, device=self.settings.device,
                                    seed=self.settings.seed)

        examples: dict[QueryItem, tuple[np.ndarray, float]] = {}
        for case, slice_index in self.project.validation_items():
            reference = self.view.reference_labels(case)
            if reference is None:
                continue
            image = self.view.case_image(case)
            if slice_index is not None:
                image, reference = image[:, slice_index], reference[slice_index]
            examples[QueryItem(case, slice_index)] = rated(trained, image, reference)
        if base is not None:
            for key, item in eligible:
                if key in unseen:
                    examples[key] = rated(base, item.image, item.labels)
        folds = self.quality_folds(keyed, unseen, known)
        if folds:
            start = base or self.initial_net()
            order = sorted(range(len(eligible)), key=lambda i: (eligible[i][0].case, eligible[i][0].slice_index or 0))
            for fold in range(folds):
                held = {order[i] for i in range(len(order)) if i * folds // len(order) == fold}
                held_keys = {eligible[i][0] for i in held}
                train = [item for key, item in keyed if key not in held_keys]
                if not train:
                    continue
                try:
                    result = fine_tune(start, train, fold_config(self.round_config()), control=stages.stage(fold + 1))
                except TrainingCancelled:  # the folds only rate: the round's trained model is kept whole
                    break
                fold_net = start.spec.build()
                fold_net.load_state_dict(result.state_dict)
                for i in sorted(held):
                    key, item = eligible[i]
                    examples.setdefault(key, rated(fold_net, item.image, item.labels))
        return [(key, features, dice) for key, (features, dice) in examples.items()]

    def item_quality_features(self, item: QueryItem, *, mc_samples: int = 20) -> np.ndarray:
        """The :func:`~napari_alseg.quality.quality_features` of the active model's prediction of
        ``item`` (a case or slice; an ROI: its class alone), as a round's scoring computes them:
        the partial-label posterior, MC-dropout variance zero where labelled. Long (one MC pass)."""
        from ..model import mc_dropout
        from ..model.preprocessing import normalise_image
        from ..quality import class_quality_features, quality_features

        net = self.current_net()
        if net is None:
            raise AlsegError("no model yet: retrain once before rating items")
        image = self.view.case_image(item.case)
        if item.slice_index is not None:
            image = image[:, item.slice_index]
        probs = self.predict_probabilities(item.case, item.slice_index)
        patch = self.inference_patch if self.view.spatial_dims == 3 else None
        variance = mc_dropout(net, image, samples=mc_samples, seed=self.settings.seed, device=self.settings.device,
                              patch_size=patch).variance
        snapshot = self.project.current_labels(item.case)
        if snapshot is not None:
            labelled = snapshot.labelled if item.slice_index is None else snapshot.labelled[item.slice_index]
            variance = np.where(np.asarray(labelled, bool), 0.0, variance).astype(np.float32)
        normalised = normalise_image(image, self.view.spatial_dims)
        if item.class_id is None:
            return quality_features(normalised, probs, variance)
        return class_quality_features(normalised, probs, variance, item.class_id)

    def adopt_round(self, trained: TrainedRound) -> RetrainReport:
        """Save and record a trained round's checkpoint: it becomes the active model (main thread).

        A cancelled round changes nothing; the previous checkpoint stays active.
        """
        from ..model import save_checkpoint

        if trained.net is None:  # cancelled
            previous = self.model_version
            return RetrainReport(previous, True, trained.steps_done, trained.n_items,
                                 message=f"training cancelled; model {previous or '(none)'} kept")
        version = f"v{len(self.project.checkpoints()) + 1:04d}"
        path = save_checkpoint(self.project.models_dir / f"{version}.pt", trained.net, trained.spec, trained.metrics)
        self.project.record_checkpoint(version, path, metrics=trained.metrics)
        return RetrainReport(version, False, trained.steps_done, trained.n_items, dict(trained.metrics),
                             message="; ".join(trained.warnings))

    def _stage_sizes(self, folds: int) -> list[float]:
        """Budgets of the round and its ``folds`` quality folds, in steps or else seconds."""
        config = self.round_config()
        fold = fold_config(config)
        if config.steps is not None and fold.steps is not None:
            return [float(config.steps)] + [float(fold.steps)] * folds
        seconds, fold_seconds = config.budget_seconds, fold.budget_seconds
        assert seconds is not None and fold_seconds is not None, "a round without steps has a time budget"
        return [seconds] + [fold_seconds] * folds

    def quality_folds(self, keyed: Sequence[tuple[QueryItem, TrainingItem]], unseen: Collection[QueryItem],
                      known: int) -> int:
        """How many out-of-fold fine-tunes :meth:`quality_examples` will run (0: none), known
        before training so the round's progress can count them."""
        eligible = [key for key, item in keyed if item.labelled_mask.all() and not item.pseudo_label]
        free = len(self.project.validation_items()) + sum(key in unseen for key in eligible)
        folds = min(QUALITY_FOLDS, len(eligible))
        return folds if folds >= 2 and known + free < QUALITY_EXAMPLES_WANTED else 0

    def validation_metrics(self, net: SegmentationNet) -> dict[str, Any]:
        """Dice on the project's fixed validation split, against annotations or ground truth:
        ``val_dice`` (the mean over classes) and ``val_dice_per_class`` (by class id,
        :func:`~napari_alseg.metrics.by_class_id`).

        Items without either are skipped; with none at all the dict is empty.
        """
        per_item: list[np.ndarray] = []
        for case, slice_index in self.project.validation_items():
            reference = self.view.reference_labels(case)
            if reference is None:
                continue
            prediction = self.predict_labels(case, slice_index, net=net, partial_labels=False)
            truth = reference if slice_index is None else reference[slice_index]
            per_item.append(dice_per_class(prediction, truth, self.project.n_classes))
        if not per_item:
            return {}
        scores = class_means(per_item)
        return {"val_dice": mean_dice(scores), VAL_DICE_PER_CLASS: by_class_id(
            {class_id: float(score) for class_id, score in enumerate(scores, start=1)}, self.project.n_classes)}

    def label_metrics(self, net: SegmentationNet) -> dict[str, Any]:
        """Per class, the mean Dice of the prediction on the slices where the class was delineated
        (``label_dice_per_class``, by class id; {} when nothing is delineated).

        ``D_c`` of docs/METHODS.md §7.5: measured "against the manual labels available", so the
        query never looks at the validation split (which a simulation reports as test).
        Raw predictions (no labels kept), one pass per labelled slice of a 2D project.
        """
        held_out = self.view.held_out()
        scores: dict[int, list[float]] = {}
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            for n, classes in sorted(self.view.delineated_classes(record.name).items()):
                if (record.name, n) in held_out or snapshot is None:
                    continue
                prediction = self.predict_labels(record.name, n, net=net, partial_labels=False)
                dice = dice_per_class(prediction, snapshot.data[n], self.project.n_classes)
                for c in classes:
                    if np.isfinite(dice[c - 1]):
                        scores.setdefault(c, []).append(float(dice[c - 1]))
        if not scores:
            return {}
        return {LABEL_DICE_PER_CLASS: by_class_id({c: float(np.mean(values)) for c, values in scores.items()},
                                                  self.project.n_classes)}

    # ------------------------------------------------------------------ prediction

    def predict_probabilities(self, case: str, slice_index: int | None = None, *,
                              net: SegmentationNet | None = None, partial_labels: bool = True,
                              clicks: Sequence[ClassClick] = ()) -> np.ndarray:
        """Softmax ``(C, *region)`` of a case (3D) or one slice (2D nets: every slice when None);
        background wherever every channel is empty (:func:`~napari_alseg.body.body_mask`).

        With ``partial_labels`` the partial-label posterior (docs/METHODS.md §7.2) applies (the one
        scoring uses): given labels are kept, unlabelled voxels are renormalised over the classes still possible.
        ``clicks`` (a guided net only): what the annotator said, as network input; a 2D net
        sees those on the slice it predicts.
        """
        from ..model import predict_proba
        from ..model.losses import renormalise_prediction_array

        net = net or self.current_net()
        if net is None:
            raise AlsegError("no model yet: retrain once before asking for predictions")
        device = self.settings.device
        image = self.view.case_image(case)
        if self.view.spatial_dims == 3:
            probs = predict_proba(net, image, device=device, patch_size=self.inference_patch, clicks=clicks)
            probs = probs if slice_index is None else probs[:, slice_index]
        else:
            def on_slice(n: int) -> np.ndarray:
                return predict_proba(net, image[:, n], device=device, clicks=_slice_clicks(clicks, n))

            probs = (on_slice(slice_index) if slice_index is not None
                     else np.stack([on_slice(n) for n in range(image.shape[1])], axis=1))
        probs = background_outside(probs, body_mask(image if slice_index is None else image[:, slice_index]))
        snapshot = self.project.current_labels(case) if partial_labels else None
        if snapshot is None:
            return probs
        region = slice(None) if slice_index is None else slice_index
        allowed = self.view.allowed_classes(case)
        allowed_map = allowed.T[:, :, None, None] if slice_index is None else allowed[slice_index][:, None, None]
        return renormalise_prediction_array(probs, snapshot.data[region], snapshot.labelled[region], allowed_map)

    def predict_labels(self, case: str, slice_index: int | None = None, *,
                       net: SegmentationNet | None = None, partial_labels: bool = True) -> np.ndarray:
        """The model's label map of a case ``(k, j, i)`` or slice ``(j, i)``, in the project's dtype."""
        probs = self.predict_probabilities(case, slice_index, net=net, partial_labels=partial_labels)
        return probs.argmax(axis=0).astype(self.project.label_dtype)

    def uncertainty_map(self, case: str, *, samples: int = 20) -> np.ndarray:
        """MC-dropout uncertainty ``V(x) = mean_c Var_t p_t(x, c)`` over the case ``(k, j, i)``, as
        shown (:func:`~.focus.shown_doubt`: smoothed in-plane, none outside the body).

        Computed once per (model version, case) and remembered; long: run it off the UI thread.
        """
        from ..model import mc_dropout

        key = (self.model_version, case)
        with self._lock:
            if key in self._uncertainty:
                return self._uncertainty[key]
        net = self.current_net()
        if net is None:
            raise AlsegError("no model yet: retrain once before showing uncertainty")
        image = self.view.case_image(case)
        seed, device = self.settings.seed, self.settings.device
        if self.view.spatial_dims == 3:
            variance = mc_dropout(net, image, samples=samples, seed=seed, device=device,
                                  patch_size=self.inference_patch).variance
            heat = variance.mean(axis=0).astype(np.float32)
        else:
            heat = np.stack([mc_dropout(net, image[:, n], samples=samples, seed=seed, device=device).variance.mean(axis=0)
                             for n in range(image.shape[1])]).astype(np.float32)
        # no doubt to show where every channel is empty (air around the head, the padding of a
        # resampled volume): a young model's doubt there outshone the lesion's on screen
        heat = shown_doubt(heat, body_mask(image))
        with self._lock:
            return self._uncertainty.setdefault(key, heat)


def _slice_clicks(clicks: Sequence[ClassClick], slice_index: int) -> list[tuple[tuple[int, int], int]]:
    """The clicks on slice ``slice_index``, as ``((j, i), class)`` for a 2D net."""
    return [((int(j), int(i)), class_id) for (k, j, i), class_id in clicks if k == slice_index]


def fold_config(config: TrainConfig) -> TrainConfig:
    """A quality fold's training: :data:`QUALITY_FOLD_BUDGET` of the round's seconds or steps."""
    seconds = config.budget_seconds
    return replace(config, steps=None if config.steps is None else max(1, round(config.steps * QUALITY_FOLD_BUDGET)),
                   seconds=None if seconds is None else seconds * QUALITY_FOLD_BUDGET)
