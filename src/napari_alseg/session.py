"""The annotator's verbs over one project: what the widget, the CLI and the simulation drive.

A :class:`Session` owns an open :class:`~napari_alseg.store.Project`, the active model
and the active query strategy. Every verb is plain Python with callbacks for progress
and cancel, so the widget can run the long ones (:meth:`Session.retrain`,
:meth:`Session.rescore`) in a thread worker while the CLI runs them in-line.

torch is imported only by the verbs that need a model; call
:func:`import_model_backend` once on the main thread before starting a worker, because
a first import inside a worker holds the GIL for seconds and freezes the UI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .effort import (BoundaryLength, EffortModel, SecondsModel, boundary_length, changed_boundary_length,
                     shared_boundary_length)
from .errors import AlsegError
from .image_cache import ImageCache, LazyImages
from .metrics import class_means, dice_per_class, mean_dice
from .plan import PLAN_SETTING, Fingerprint, TrainingPlan, fingerprint, inference_patch, make_plan, stored_plan
from .store import MANUAL, PSEUDO_ACCEPTED, Project, ScoredItem
from .strategies import QueryItem, Suggestion, get_strategy, pseudo_label_candidates, select

if TYPE_CHECKING:
    from .model import ModelSpec, SegmentationNet, TrainConfig, TrainingItem, TrainProgress
    from .quality import QualityPredictor
    from .scoring import PoolScores

MIN_LABELLED_ITEMS = 1


def import_model_backend() -> None:
    """Import torch + MONAI now (≈5 s), on the calling thread; later imports are free."""
    from . import model  # noqa: F401


@dataclass(frozen=True)
class RetrainReport:
    """What one retrain round did; small enough to hand across threads."""

    model_version: str | None
    cancelled: bool
    steps_done: int
    n_items: int
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class Session:
    """One annotator working on one project with one model and one strategy at a time."""

    def __init__(self, project: Project, *, annotator: str, strategy: str = "random",
                 train_config: TrainConfig | None = None, device: str | None = None,
                 batch_size: int = 5, seed: int = 0) -> None:
        self.project = project
        self.annotator = annotator
        self.strategy = strategy
        self.train_config = train_config
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self._images = ImageCache()  # LRU by bytes: a BraTS-size cohort does not fit whole
        self._model_lock = threading.Lock()
        self._net: SegmentationNet | None = None
        self._loaded_version: str | None = None
        self._pool: PoolScores | None = None
        self._done: set[QueryItem] = set()
        self._round_recorded: tuple[str | None, str] | None = None
        self._quality_examples: dict[QueryItem, tuple[np.ndarray, float]] = {
            QueryItem(case, slice_index, class_id): (features, dice)
            for case, slice_index, class_id, features, dice in project.quality_examples()}
        self._vae = None
        self._uncertainty: dict[tuple[str | None, str], np.ndarray] = {}

    @classmethod
    def open(cls, folder: str | Path, **options: Any) -> Session:
        return cls(Project.open(folder), **options)

    def close(self) -> None:
        self.project.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ geometry

    @property
    def spatial_dims(self) -> int:
        """2D nets on slices for slice/ROI projects (2D stacks), 3D nets on whole cases."""
        return 3 if self.project.granularity == "case" else 2

    def case_image(self, case: str) -> np.ndarray:
        """The case's channels stacked: float32 ``(Cin, k, j, i)``, from a bounded LRU cache
        (``$ALSEG_IMAGE_CACHE_MB``; see :mod:`napari_alseg.image_cache`)."""
        def load() -> np.ndarray:
            volumes = self.project.load_channels(case)
            return np.stack([volume.data for volume in volumes]).astype(np.float32, copy=False)

        return self._images.get(case, load)

    def in_plane_spacing(self, case: str) -> tuple[float, float]:
        spacing = self.project.case(case).spacing
        return float(spacing[1]), float(spacing[2])

    # ------------------------------------------------------------------ model

    @property
    def model_version(self) -> str | None:
        """The active model: the last recorded checkpoint (None before the first retrain)."""
        checkpoints = self.project.checkpoints()
        return checkpoints[-1].model_version if checkpoints else None

    def model_spec(self) -> ModelSpec:
        """The network a new model of this project gets: its plan's widths and working grid."""
        from .model import ModelSpec

        plan = self.training_plan()
        return ModelSpec(spatial_dims=self.spatial_dims,
                         in_channels=len(self.project.cases[0].channel_names),
                         n_classes=self.project.n_classes, features=plan.features, zoom=plan.zoom)

    # ------------------------------------------------------------------ training plan

    def fingerprint(self) -> Fingerprint:
        """What the plan is made from: the items' shapes and voxel sizes (slices for 2D nets)."""
        cases = self.project.cases
        axes = slice(None) if self.spatial_dims == 3 else slice(1, None)
        return fingerprint([record.shape[axes] for record in cases], [record.spacing[axes] for record in cases],
                           n_channels=len(cases[0].channel_names), n_classes=self.project.n_classes)

    def training_plan(self) -> TrainingPlan:
        """The project's plan: made from its fingerprint for this device once, then kept with it."""
        return stored_plan(self.project) or self.replan()

    def replan(self, **overrides: Any) -> TrainingPlan:
        """Make the plan anew for this device (``overrides``: fields to set by hand) and keep it."""
        from .model import pick_device

        device_kind = "cuda" if pick_device(self.device).type == "cuda" else "cpu"
        plan = make_plan(self.fingerprint(), device_kind).with_overrides(**overrides)
        self.project.store_setting(PLAN_SETTING, plan.to_json())
        return plan

    def set_plan(self, **overrides: Any) -> TrainingPlan:
        """Change some fields of the kept plan (e.g. ``seconds=60``, ``batch_size=4``)."""
        plan = self.training_plan().with_overrides(**overrides)
        self.project.store_setting(PLAN_SETTING, plan.to_json())
        return plan

    def round_config(self) -> TrainConfig:
        """This round's settings: ``train_config`` where it says, the plan for the rest.

        A config without steps or seconds trains for the plan's budget.
        """
        from .model import TrainConfig

        plan = self.training_plan()
        config = self.train_config or TrainConfig(device=self.device, seed=self.seed)
        seconds = plan.seconds if config.steps is None and config.seconds is None else config.seconds
        return replace(config, seconds=seconds, batch_size=config.batch_size or plan.batch_size,
                       patch_size=config.patch_size or plan.patch_size)

    @property
    def inference_patch(self) -> tuple[int, ...] | None:
        """Sliding-window size for prediction and scoring (native voxels), see :func:`plan.inference_patch`."""
        return inference_patch(self.training_plan())

    def current_net(self) -> SegmentationNet | None:
        """The active model's network, loaded once per version (None without a model)."""
        from .model import load_checkpoint

        checkpoints = self.project.checkpoints()
        if not checkpoints:
            return None
        latest = checkpoints[-1]
        with self._model_lock:
            if self._loaded_version != latest.model_version:
                self._net, _spec, _metrics = load_checkpoint(latest.path)
                self._loaded_version = latest.model_version
            return self._net

    def model_metrics(self) -> dict[str, Any]:
        checkpoints = self.project.checkpoints()
        return dict(checkpoints[-1].metrics) if checkpoints else {}

    def export_model(self, path: str | Path) -> Path:
        """The current model as a self-describing file another project can start from
        (:mod:`napari_alseg.model_transfer`); ``path`` may be a folder."""
        from .model_transfer import export_model

        return export_model(self, path)

    # ------------------------------------------------------------------ annotating

    def submit(self, case: str, labels: np.ndarray, *, kind: str = MANUAL, seconds_active: float,
               slice_index: int | None = None, class_id: int | None = None,
               original: np.ndarray | None = None, started_at: datetime | None = None) -> int:
        """Save submitted labels durably, with the boundary the annotator had to trace.

        For a correction (``original`` = the prefilled prediction) the effort is the
        boundary actually changed; otherwise the whole boundary of what was drawn, each
        shared boundary counted once (METHODS E).
        """
        effort = self.boundary_effort(case, labels, original=original, class_id=class_id,
                                      slice_index=slice_index)
        event_id = self.project.submit(
            case, labels, kind=kind, slice_index=slice_index, class_id=class_id,
            annotator=self.annotator, seconds_active=seconds_active, started_at=started_at,
            original=original, boundary_px=effort.px, boundary_mm=effort.mm,
            model_version=self.model_version)
        item = QueryItem(case, slice_index, class_id)
        self._done.add(item)
        if original is not None and self._pool is not None and item in self._pool.quality_features:
            # a correction reveals the true Dice of a rated prediction: a quality example
            dice = mean_dice(dice_per_class(np.asarray(original), np.asarray(labels), self.project.n_classes))
            self._add_quality_examples([(item, self._pool.quality_features[item], 1.0 if np.isnan(dice) else dice)])
        return event_id

    def boundary_effort(self, case: str, labels: np.ndarray, *, original: np.ndarray | None = None,
                        class_id: int | None = None, slice_index: int | None = None) -> BoundaryLength:
        """Boundary length (px, mm) of a slice ``(j, i)`` or volume ``(k, j, i)``, summed over slices.

        A traced ROI (``class_id`` on slice ``slice_index``) is not charged the boundary it
        shares with classes already delineated on that slice: that line exists (METHODS E).
        """
        spacing = self.in_plane_spacing(case)
        labels = np.asarray(labels)
        if original is None and class_id is not None and slice_index is not None and labels.ndim == 2:
            return self._roi_trace_length(case, slice_index, labels == class_id, class_id)
        slices = labels[np.newaxis] if labels.ndim == 2 else labels
        originals = None if original is None else (np.asarray(original)[np.newaxis]
                                                  if labels.ndim == 2 else np.asarray(original))
        classes = [class_id] if class_id is not None else range(1, self.project.n_classes)
        px = mm = 0.0
        for index, plane in enumerate(slices):
            if originals is not None:
                for c in classes:
                    length = changed_boundary_length(originals[index] == c, plane == c, spacing)
                    px, mm = px + length.px, mm + length.mm
                continue
            length = slice_trace_length(plane, classes, spacing)
            px, mm = px + length.px, mm + length.mm
        return BoundaryLength(px, mm)

    def accept_pseudo(self, case: str, prediction: np.ndarray | None = None, *,
                      slice_index: int | None = None, seconds_active: float = 0.0) -> int:
        """One click: the model's prediction becomes the case's labels (kind pseudo-accepted)."""
        prediction = self.predict_labels(case, slice_index) if prediction is None else prediction
        return self.project.accept_pseudo(case, prediction, slice_index=slice_index,
                                          annotator=self.annotator, seconds_active=seconds_active,
                                          model_version=self.model_version)

    def reject_pseudo(self, case: str, *, slice_index: int | None = None,
                      seconds_active: float = 0.0) -> int:
        """Record that the prediction was not good enough; the case stays for the annotator."""
        return self.project.reject_pseudo(case, slice_index=slice_index, annotator=self.annotator,
                                          seconds_active=seconds_active,
                                          model_version=self.model_version)

    def save_draft(self, case: str, labels: np.ndarray) -> None:
        self.project.save_draft(case, labels)

    def load_draft(self, case: str) -> np.ndarray | None:
        return self.project.load_draft(case)

    def mark_class_range(self, case: str, class_id: int, first_slice: int, last_slice: int) -> int:
        """Weak annotation (METHODS E): class ``class_id`` appears only on slices first..last."""
        return self.project.add_weak_annotation(case, class_id, first_slice, last_slice,
                                                annotator=self.annotator)

    def export(self, out_dir: str | Path) -> list[Path]:
        return self.project.export(out_dir)

    # ------------------------------------------------------------------ partial labels

    def allowed_classes(self, case: str) -> np.ndarray:
        """METHODS E ``C_n`` per slice: bool ``(k, C)``, the classes an unlabelled voxel may be.

        A class is excluded from slice n once it was delineated there, and outside its
        weak slice range ``[n1_c, n2_c]``; background is always possible.
        """
        n_slices = self.project.case(case).n_slices
        allowed = np.ones((n_slices, self.project.n_classes), dtype=bool)
        for item in self.project.labelled_items(case):
            if item.class_id is not None and item.slice_index is not None:
                allowed[item.slice_index, item.class_id] = False
        for class_id, weak in self.project.weak_annotations(case).items():
            outside = np.ones(n_slices, dtype=bool)
            outside[weak.first_slice:weak.last_slice + 1] = False
            allowed[outside, class_id] = False
        allowed[:, 0] = True
        return allowed

    def training_items(self) -> list[TrainingItem]:
        """A snapshot of every labelled, non-validation item; edits after this are not seen."""
        from .model import TrainingItem

        held_out = set(self.project.validation_items())
        items: list[TrainingItem] = []
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            if snapshot is None or not snapshot.labelled.any():
                continue
            pseudo = self._pseudo_only_regions(record.name)
            image = self.case_image(record.name)
            if self.spatial_dims == 3:
                if (record.name, None) not in held_out:
                    items.append(TrainingItem(image, snapshot.data, snapshot.labelled,
                                              pseudo_label=None in pseudo))
                continue
            allowed = self.allowed_classes(record.name)
            for n in np.flatnonzero(snapshot.labelled.any(axis=(1, 2))):
                if (record.name, int(n)) in held_out:
                    continue
                items.append(TrainingItem(image[:, n], snapshot.data[n], snapshot.labelled[n],
                                          allowed[n], pseudo_label=int(n) in pseudo or None in pseudo))
        return items

    def _pseudo_only_regions(self, case: str) -> set[int | None]:
        """Slices (None = whole case) whose labels come only from accepted pseudo-labels."""
        kinds: dict[int | None, set[str]] = {}
        for event in self.project.events(case):
            if event.label_version is not None:
                kinds.setdefault(event.slice_index, set()).add(event.kind)
        return {region for region, seen in kinds.items() if seen == {PSEUDO_ACCEPTED}}

    # ------------------------------------------------------------------ training

    def retrain(self, *, progress: Callable[[TrainProgress], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> RetrainReport:
        """Fine-tune the active model on every label so far; a new checkpoint on success.

        Cancelled or failed rounds leave the previous checkpoint active (training runs
        on a copy). Raises :class:`AlsegError` when nothing is labelled yet.
        """
        from .model import fine_tune, save_checkpoint

        items = self.training_items()
        if len(items) < MIN_LABELLED_ITEMS:
            unit = "case" if self.spatial_dims == 3 else "slice or ROI"
            raise AlsegError(f"no labelled data yet: submit at least {MIN_LABELLED_ITEMS} labelled "
                             f"{unit} (outside the validation split) before retraining")
        net = self.current_net() or self._initial_net()
        result = fine_tune(net, items, self.round_config(), progress=progress, should_stop=should_stop)
        previous = self.model_version
        if result.cancelled or result.state_dict is None:
            return RetrainReport(previous, True, result.steps_done, len(items),
                                 message=f"training cancelled; model {previous or '(none)'} kept")
        trained = net.spec.build()
        trained.load_state_dict(result.state_dict)
        metrics = {key: value for key, value in result.metrics.items() if isinstance(value, (int, float))}
        metrics.update(self.validation_metrics(trained))
        if self.spatial_dims == 2:
            metrics.update(self.label_metrics(trained))
        metrics["n_items"] = len(items)
        version = f"v{len(self.project.checkpoints()) + 1:04d}"
        path = save_checkpoint(self.project.models_dir / f"{version}.pt", trained, net.spec, metrics)
        self.project.record_checkpoint(version, path, metrics=metrics)
        warnings = result.metrics.get("warnings") or []
        return RetrainReport(version, False, result.steps_done, len(items), metrics,
                             message="; ".join(str(w) for w in warnings))

    def _initial_net(self) -> SegmentationNet:
        """The first network, seeded: the same project and seed start from the same weights."""
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            return self.model_spec().build()

    def validation_metrics(self, net: SegmentationNet) -> dict[str, float]:
        """Dice on the project's fixed validation split, against annotations or ground truth.

        Items without either are skipped; with none at all the dict is empty.
        """
        per_class: list[np.ndarray] = []
        for case, slice_index in self.project.validation_items():
            reference = self._reference_labels(case)
            if reference is None:
                continue
            prediction = self.predict_labels(case, slice_index, net=net, partial_labels=False)
            truth = reference if slice_index is None else reference[slice_index]
            per_class.append(dice_per_class(prediction, truth, self.project.n_classes))
        if not per_class:
            return {}
        scores = class_means(per_class)
        metrics = {"val_dice": mean_dice(scores)}
        for class_info, score in zip(self.project.classes[1:], scores):
            metrics[f"val_dice_{class_info.name}"] = float(score)
        return metrics

    def label_metrics(self, net: SegmentationNet) -> dict[str, float]:
        """Per class, the mean Dice of the prediction on the slices where the class was delineated.

        METHODS E's ``D_c``: measured "against the manual labels available", so the
        query never looks at the validation split (which a simulation reports as test).
        Raw predictions (no labels kept), one pass per labelled slice of a 2D project.
        """
        held_out = set(self.project.validation_items())
        scores: dict[int, list[float]] = {}
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            for n, classes in sorted(self.delineated_classes(record.name).items()):
                if (record.name, n) in held_out or snapshot is None:
                    continue
                prediction = self.predict_labels(record.name, n, net=net, partial_labels=False)
                dice = dice_per_class(prediction, snapshot.data[n], self.project.n_classes)
                for c in classes:
                    if np.isfinite(dice[c - 1]):
                        scores.setdefault(c, []).append(float(dice[c - 1]))
        return {f"label_dice_{self.project.classes[c].name}": float(np.mean(values))
                for c, values in scores.items()}

    def _reference_labels(self, case: str) -> np.ndarray | None:
        snapshot = self.project.current_labels(case)
        if snapshot is not None and snapshot.labelled.all():
            return snapshot.data
        return self.project.ground_truth(case)

    # ------------------------------------------------------------------ suggesting

    @property
    def pool_granularity(self) -> str:
        """The item kind this round ranks: cases for 3D projects; slices or ROIs for 2D stacks."""
        if self.project.granularity == "case":
            return "case"
        return "roi" if get_strategy(self.strategy).granularity == "roi" else "slice"

    def scoring_needs(self, *, for_display: bool = True) -> set[str]:
        """What to compute this round: the strategy's needs, plus (``for_display``) the MC
        uncertainty and quality ratings the widget shows whatever the strategy."""
        needs = set(get_strategy(self.strategy).needs)
        if self.current_net() is not None and for_display:
            needs |= {"model", "mc"}
            if self.project.granularity == "case":
                needs.add("quality")
        if self.pool_granularity == "roi":
            needs.add("effort")
        return needs

    def rescore(self, *, progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None, for_display: bool = True) -> PoolScores:
        """Score the pool once for the active model and strategy; scores are stored per version.

        Long (an MC-dropout pass per case or slice): run it off the UI thread.
        ``for_display=False`` computes only what the strategy ranks by (scripts, simulation).
        """
        from .scoring import score_pool, train_bootstrap_nets

        net = self.current_net()
        needs = self.scoring_needs(for_display=for_display)
        bootstrap = None
        if "bootstrap" in needs and net is not None:
            bootstrap = train_bootstrap_nets(net, self.training_items(), self._bootstrap_config(),
                                             seed=self.seed, should_stop=should_stop)
        quality_model = self._quality_model() if "quality" in needs else None
        pool = score_pool(
            net, net.spec if net is not None else None, self._all_images(), self._all_labels(),
            granularity=self.pool_granularity, n_classes=self.project.n_classes, needs=needs,
            bootstrap_nets=bootstrap, quality_model=quality_model, validation=self._validation_items(),
            model_version=self.model_version, progress=progress, should_stop=should_stop,
            device=self.device, allowed=self._all_allowed(), effort=self.effort_model(),
            seconds_model=self.seconds_model(), spacing={c.name: self.in_plane_spacing(c.name)
                                                         for c in self.project.cases},
            class_dice_history=self.class_dice_history(), recent=self.recent_items(),
            vae=self._vae, seed=self.seed, patch_size=self.inference_patch)
        self._vae = pool.vae or self._vae
        self._add_quality_examples(pool.quality_examples)
        if pool.model_version is not None:
            self.project.store_scores(pool.model_version, pool.to_scored_items())
        self._pool = pool
        self._done.clear()
        return pool

    def suggest(self, k: int | None = None) -> list[Suggestion]:
        """The next ``k`` items to annotate, from the scores of the last :meth:`rescore`.

        Instant: ranks stored scores. Without a model, or before scoring, suggestions
        come from a model-free pool (random / slice-uniform; others fall back to random
        and say so). Items submitted or skipped since the scoring are left out.
        """
        pool = self._usable_pool()
        remaining = replace(pool, candidates=[item for item in pool.candidates if item not in self._done])
        suggestions = select(self.strategy, remaining, k or self.batch_size, self.seed)
        self._record_round(suggestions)
        return suggestions

    def skip(self, item: QueryItem) -> None:
        """Leave an item out of this round's suggestions (it comes back after re-scoring)."""
        self._done.add(item)

    def pseudo_label_candidates(self) -> list[Suggestion]:
        """Cases predicted Acceptable (quality-threshold, METHODS A), for one-click review."""
        pool = self._usable_pool()
        return [s for s in pseudo_label_candidates(pool) if s.item not in self._done]

    def quality_rows(self) -> list[tuple[str, str, float]]:
        """``(case, predicted quality class, its probability)`` of every scored candidate."""
        from .quality import CLASS_NAMES

        pool = self._usable_pool()
        rows = []
        for item in pool.candidates:
            terms = pool.terms.get(item, {})
            quality = terms.get("quality_class", float("nan"))
            if np.isfinite(quality):
                probability = terms.get(("quality_p_poor", "quality_p_adjust", "quality_p_acceptable")[int(quality)],
                                        float("nan"))
                rows.append((item.case, CLASS_NAMES[int(quality)], float(probability)))
        return rows

    def _usable_pool(self) -> PoolScores:
        pool = self._pool
        if pool is None or pool.model_version != self.model_version or pool.granularity != self.pool_granularity:
            from .scoring import score_pool

            pool = score_pool(None, None, self._all_images(), self._all_labels(),
                              granularity=self.pool_granularity, n_classes=self.project.n_classes,
                              needs=set(), validation=self._validation_items(), allowed=self._all_allowed())
            self._pool = pool
        return pool

    def _record_round(self, suggestions: list[Suggestion]) -> None:
        """One round record per (model version, strategy): what was served, with scores."""
        key = (self.model_version, self.strategy)
        if not suggestions or self._round_recorded == key:
            return
        served = [ScoredItem(s.item.case, s.item.slice_index, s.item.class_id,
                             float(s.score) if np.isfinite(s.score) else 0.0,
                             {name: float(v) for name, v in s.terms.items() if np.isfinite(v)})
                  for s in suggestions]
        self.project.record_round(self.strategy, served, model_version=self.model_version)
        self._round_recorded = key

    def _all_images(self) -> LazyImages:
        """Every case's image for scoring, loaded through the bounded cache only when read:
        scoring a cohort holds at most the cache's bytes plus one case. Shapes come from the
        project's records, ``(Cin, k, j, i)``."""
        return LazyImages({record.name: (len(record.channel_names), *record.shape) for record in self.project.cases},
                          self.case_image)

    def _all_labels(self) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
        labels = {}
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            labels[record.name] = None if snapshot is None else (snapshot.data, snapshot.labelled)
        return labels

    def _all_allowed(self) -> dict[str, np.ndarray]:
        return {record.name: self.allowed_classes(record.name) for record in self.project.cases}

    def _validation_items(self) -> set[QueryItem]:
        return {QueryItem(case, slice_index) for case, slice_index in self.project.validation_items()}

    def recent_items(self) -> list[QueryItem]:
        """Items labelled since the model before the current one: gradient-vae's seeds.

        They were labelled while the previous model (none, before the first) was active,
        so the current model is the first to have learnt from them: "the samples added
        last round" (METHODS C). Items labelled under the current model count too.
        """
        versions = [checkpoint.model_version for checkpoint in self.project.checkpoints()]
        latest = set(versions[-2:]) | ({None} if len(versions) < 2 else set())
        return [QueryItem(e.case, e.slice_index, e.class_id) for e in self.project.events()
                if e.label_version is not None and e.model_version in latest]

    def _bootstrap_config(self) -> TrainConfig:
        """Half a round per ensemble member (half the steps or half the seconds)."""
        config = self.round_config()
        return replace(config, steps=None if config.steps is None else max(1, config.steps // 2),
                       seconds=None if config.seconds is None else config.seconds / 2)

    @property
    def n_quality_examples(self) -> int:
        """Predictions whose true Dice is known: what the quality predictor learns from."""
        return len(self._quality_examples)

    def _add_quality_examples(self, examples: list[tuple[QueryItem, np.ndarray, float]]) -> None:
        """Remember (and store, so the next session starts with them) predictions of known Dice."""
        if not examples:
            return
        self.project.store_quality_examples(examples, model_version=self.model_version)
        for item, features, dice in examples:
            self._quality_examples[item] = (features, dice)

    def _quality_model(self) -> QualityPredictor:
        """Fitted on every prediction whose true Dice is known so far (validation, corrections)."""
        from .quality import QualityPredictor

        predictor = QualityPredictor(seed=self.seed)
        if self._quality_examples:
            features = np.stack([features for features, _dice in self._quality_examples.values()])
            dice = np.array([dice for _features, dice in self._quality_examples.values()])
            predictor.fit(features, dice)
        return predictor

    # ------------------------------------------------------------------ effort

    def effort_model(self) -> EffortModel:
        """METHODS E matrix B from every labelled slice (fully labelled slices: all classes)."""
        model = EffortModel(self.project.n_classes)
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            if snapshot is None:
                continue
            spacing = self.in_plane_spacing(record.name)
            for n, classes in sorted(self.delineated_classes(record.name).items()):
                model.observe(snapshot.data[n], classes, spacing)
        return model

    def delineated_classes(self, case: str) -> dict[int, set[int]]:
        """Per slice index, the classes 1..C-1 delineated there so far (a whole slice: all)."""
        every_class = set(range(1, self.project.n_classes))
        delineated: dict[int, set[int]] = {}
        for item in self.project.labelled_items(case):
            slices = range(self.project.case(case).n_slices) if item.slice_index is None else [item.slice_index]
            for n in slices:
                delineated.setdefault(n, set()).update(every_class if item.class_id is None else {item.class_id})
        return delineated

    def _roi_trace_length(self, case: str, slice_index: int, mask: np.ndarray, class_id: int) -> BoundaryLength:
        """The outline of ``mask`` minus what it shares with classes delineated on the slice."""
        spacing = self.in_plane_spacing(case)
        length = boundary_length(mask, spacing)
        px, mm = length.px, length.mm
        neighbours = self.delineated_classes(case).get(slice_index, set()) - {class_id}
        snapshot = self.project.current_labels(case)
        for neighbour in sorted(neighbours):
            shared = shared_boundary_length(mask, snapshot.data[slice_index] == neighbour, spacing)
            px, mm = px - shared.px, mm - shared.mm
        return BoundaryLength(max(px, 0.0), max(mm, 0.0))

    def seconds_model(self) -> SecondsModel | None:
        """seconds ≈ a + b·boundary px, fitted on the events that have both (None when too few)."""
        timed = [e for e in self.project.events()
                 if e.boundary_px and e.seconds_active > 0 and e.kind in (MANUAL, "corrected")]
        if len(timed) < 2:
            return None
        return SecondsModel.fit([e.class_id if e.class_id is not None else -1 for e in timed],
                                [e.boundary_px for e in timed], [e.seconds_active for e in timed])

    def class_dice_history(self) -> list[np.ndarray]:
        """Dice per class (1..C-1) on the manual labels after each round: dice-per-effort's D_c(T).

        NaN for a class not delineated by then (dice-per-effort keeps the room for
        improvement of such a class at 1).
        """
        names = self.project.class_names[1:]
        return [np.array([checkpoint.metrics.get(f"label_dice_{name}", np.nan) for name in names], float)
                for checkpoint in self.project.checkpoints()]

    def effort_summary(self) -> dict[str, dict[str, float]]:
        """Per class: effort spent so far (mm, px, s) and estimated remaining boundary (mm).

        Remaining = Σ over unlabelled (slice, class) of METHODS E ``R_nc`` (shared
        boundaries with labelled neighbours are free), from the running matrix B.
        """
        names = self.project.class_names
        summary = {name: {"spent_mm": 0.0, "spent_px": 0.0, "spent_s": 0.0, "remaining_mm": 0.0}
                   for name in [*names[1:], "all classes"]}
        for event in self.project.events():
            if event.label_version is None:
                continue
            key = names[event.class_id] if event.class_id is not None else "all classes"
            summary[key]["spent_mm"] += event.boundary_mm or 0.0
            summary[key]["spent_px"] += event.boundary_px or 0.0
            summary[key]["spent_s"] += event.seconds_active
        model = self.effort_model()
        held_out = set(self.project.validation_items())
        for record in self.project.cases:
            allowed = self.allowed_classes(record.name)
            snapshot = self.project.current_labels(record.name)
            for n in range(record.n_slices):
                if (record.name, n) in held_out or (record.name, None) in held_out:
                    continue
                if snapshot is not None and snapshot.labelled[n].all():
                    continue
                delineated = {c for c in range(1, len(names)) if not allowed[n, c]}
                possible = {c for c in range(1, len(names)) if allowed[n, c]}
                remaining = model.remaining_effort(delineated, possible)
                for c in possible:
                    summary[names[c]]["remaining_mm"] += float(remaining[c])
        return summary

    def learning_curve(self) -> list[tuple[str, float, float]]:
        """``(model version, boundary traced so far in mm, validation Dice)`` per checkpoint."""
        events = self.project.events()
        curve = []
        for checkpoint in self.project.checkpoints():
            traced = sum(e.boundary_mm or 0.0 for e in events if e.ended_at <= checkpoint.created_at)
            curve.append((checkpoint.model_version, traced, float(checkpoint.metrics.get("val_dice", np.nan))))
        return curve

    def uncertainty_map(self, case: str, *, samples: int = 20) -> np.ndarray:
        """MC-dropout uncertainty ``V(x) = mean_c Var_t p_t(x, c)`` over the case ``(k, j, i)``.

        Computed once per (model version, case); long: run it off the UI thread.
        """
        from .model import mc_dropout

        key = (self.model_version, case)
        if key not in self._uncertainty:
            net = self.current_net()
            if net is None:
                raise AlsegError("no model yet: retrain once before showing uncertainty")
            image = self.case_image(case)
            if self.spatial_dims == 3:
                variance = mc_dropout(net, image, samples=samples, seed=self.seed, device=self.device,
                                      patch_size=self.inference_patch).variance
                self._uncertainty[key] = variance.mean(axis=0).astype(np.float32)
            else:
                planes = [mc_dropout(net, image[:, n], samples=samples, seed=self.seed,
                                     device=self.device).variance.mean(axis=0) for n in range(image.shape[1])]
                self._uncertainty[key] = np.stack(planes).astype(np.float32)
        return self._uncertainty[key]

    # ------------------------------------------------------------------ prediction

    def predict_probabilities(self, case: str, slice_index: int | None = None, *,
                              net: SegmentationNet | None = None,
                              partial_labels: bool = True) -> np.ndarray:
        """Softmax ``(C, *region)`` of a case (3D) or one slice (2D nets: every slice when None).

        With ``partial_labels`` the METHODS E renormalisation applies: given labels are
        kept, unlabelled voxels are renormalised over the classes still possible.
        """
        import torch

        from .model import predict_proba, renormalise_prediction

        net = net or self.current_net()
        if net is None:
            raise AlsegError("no model yet: retrain once before asking for predictions")
        image = self.case_image(case)
        if self.spatial_dims == 3:
            probs = predict_proba(net, image, device=self.device, patch_size=self.inference_patch)
            probs = probs if slice_index is None else probs[:, slice_index]
        elif slice_index is not None:
            probs = predict_proba(net, image[:, slice_index], device=self.device)
        else:
            probs = np.stack([predict_proba(net, image[:, n], device=self.device)
                              for n in range(image.shape[1])], axis=1)
        snapshot = self.project.current_labels(case) if partial_labels else None
        if snapshot is None:
            return probs
        region = slice(None) if slice_index is None else slice_index
        labels, labelled = snapshot.data[region], snapshot.labelled[region]
        allowed = self.allowed_classes(case)
        if slice_index is None:
            allowed_map = np.broadcast_to(allowed.T[:, :, None, None], probs.shape)
        else:
            allowed_map = np.broadcast_to(allowed[slice_index][:, None, None], probs.shape)
        renormalised = renormalise_prediction(
            torch.from_numpy(probs)[None], torch.from_numpy(labels.astype(np.int64))[None],
            torch.tensor(labelled)[None], torch.tensor(allowed_map)[None])
        return renormalised[0].numpy()

    def predict_labels(self, case: str, slice_index: int | None = None, *,
                       net: SegmentationNet | None = None, partial_labels: bool = True) -> np.ndarray:
        """The model's label map of a case ``(k, j, i)`` or slice ``(j, i)``, in the project's dtype."""
        probs = self.predict_probabilities(case, slice_index, net=net, partial_labels=partial_labels)
        return probs.argmax(axis=0).astype(self.project.label_dtype)


def slice_trace_length(plane: np.ndarray, classes, spacing: tuple[float, float]) -> BoundaryLength:
    """Boundary to trace on one slice: every class outline, each shared boundary once."""
    masks = {c: plane == c for c in classes}
    masks = {c: mask for c, mask in masks.items() if mask.any()}
    px = mm = 0.0
    for c, mask in masks.items():
        length = boundary_length(mask, spacing)
        px, mm = px + length.px, mm + length.mm
    present = sorted(masks)
    for index, a in enumerate(present):
        for b in present[index + 1:]:
            shared = shared_boundary_length(masks[a], masks[b], spacing)
            px, mm = px - shared.px, mm - shared.mm
    return BoundaryLength(max(px, 0.0), max(mm, 0.0))
