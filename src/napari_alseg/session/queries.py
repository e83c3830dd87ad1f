"""The queries: scoring the pool, suggesting, skipping, round records, quality examples.

Scoring is two steps, so a worker never changes what the UI reads (issue 12's race):
:meth:`Queries.compute_rescore` scores a snapshot of the labels and returns a
:class:`RescoreResult`, changing nothing; :meth:`Queries.adopt_rescore` (the caller's
thread) makes it the current pool, stores its scores and quality examples, and leaves out
every item submitted or skipped since the snapshot was taken, which the labels it was
scored from could not know about.

Reading changes nothing (``suggest``, ``current_pool``, ``quality_rows``...). The verbs that do
are named as such: ``adopt_rescore`` and ``rescore_unless_current`` make a pool current,
``refresh_pool`` makes a model-free one current where the current pool no longer fits (cheap:
no prediction), and ``record_served`` keeps what a front end served as the round's record.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import (
    CASE, NEED_BOOTSTRAP, NEED_EFFORT, NEED_MC, NEED_MODEL, NEED_QUALITY, NEED_SECONDS,
    ROI, SLICE, TERM_EFFORT_MM, TERM_EFFORT_S, TERM_QUALITY_EXAMPLES, Granularity, Need, QueryItem,
)
from ..errors import AlsegError
from ..metrics import dice_per_class, mean_dice
from ..quality import QualityEstimate, QualityPredictor, estimate_from_terms
from ..run_control import RunControl
from ..store import Project, ScoredItem
from ..strategies import SelectionContext, Suggestion, get_strategy, pseudo_label_candidates, select, traced_spans
from .accounting import EffortAccounting
from .labels import LabelsView
from .learner import Learner
from .settings import SessionSettings
from .stored_scores import UNSTORED_NEEDS, keep_state, pool_from_stored, scoring_state, stale_reason, stored_state

if TYPE_CHECKING:
    from ..pool import PoolScores


@dataclass(frozen=True)
class RescoreResult:
    """A scored pool not yet adopted. ``handled_mark``: how many items had been submitted or
    skipped when its labels were read (the items after it are left out on adoption)."""

    pool: PoolScores
    handled_mark: int
    vae: Any = None
    state: dict[str, Any] | None = None  # what it rests on (:func:`.stored_scores.scoring_state`)
    context: SelectionContext = SelectionContext()  # what the engine ranks by beside the scores

    @property
    def model_version(self) -> str | None:
        return self.pool.model_version


class Queries:
    """What to annotate next, from one shared round of scores.

    Over ~300 lines because the pool, its selection context and the round's journal are one
    state under one lock: the rescore's compute and adopt, and every read of the pool (suggest,
    quality rows, pseudo-label candidates), must see the same round.
    """

    def __init__(self, project: Project, settings: SessionSettings, view: LabelsView, learner: Learner,
                 accounting: EffortAccounting) -> None:
        self.project = project
        self.settings = settings
        self.view = view
        self.learner = learner
        self.accounting = accounting
        self._lock = threading.Lock()  # guards the journal and the quality examples against workers' reads
        self._pool: PoolScores | None = None
        self._context = SelectionContext()  # the current pool's
        self._handled: list[QueryItem] = []  # every item submitted or skipped, in order
        self._left_out: set[QueryItem] = set()  # those since the current pool's labels were read
        self._round_recorded: tuple[str | None, str] | None = None
        self._quality_examples: dict[QueryItem, tuple[np.ndarray, float]] = {
            QueryItem(case, slice_index, class_id): (features, dice)
            for case, slice_index, class_id, features, dice in project.quality_examples()}
        self._vae = None
        self._free_state: tuple[int, int, int] | None = None  # what a model-free ROI pool rests on

    # ------------------------------------------------------------------ what this round ranks

    @property
    def pool_granularity(self) -> Granularity:
        """The item kind this round ranks: cases for 3D projects; slices or ROIs for 2D stacks."""
        if self.project.granularity == CASE:
            return CASE
        return ROI if get_strategy(self.settings.strategy).granularity == ROI else SLICE

    def scoring_needs(self, *, for_display: bool = True) -> set[Need]:
        """What to compute this round: the strategy's needs, plus (``for_display``) the MC
        uncertainty and quality ratings the widget shows whatever the strategy."""
        needs = set(get_strategy(self.settings.strategy).needs)
        if self.learner.current_net() is not None and for_display:
            needs |= {NEED_MODEL, NEED_MC}
            needs.add(NEED_QUALITY)  # cases, or slices of a 2D stack (an ROI pool rates them whole)
            if self.pool_granularity != ROI:
                needs.add(NEED_SECONDS)  # the Effort tab's seconds left with this model
        if self.pool_granularity == ROI:
            needs.add(NEED_EFFORT)
        return needs

    # ------------------------------------------------------------------ scoring

    def compute_rescore(self, *, control: RunControl = RunControl.none(), for_display: bool = True) -> RescoreResult:
        """Score the pool for the active model and strategy; returns the result, changes nothing.

        Long (an MC-dropout pass per case or slice): safe to run in a worker thread. ``control``
        gets ``(done, total)`` cases or slices; a stop raises :class:`~napari_alseg.errors.Cancelled`.
        ``for_display=False`` computes only what the strategy ranks by (scripts, simulation).
        """
        from ..scoring import ScoreRequest, score_pool, train_bootstrap_nets

        with self._lock:
            mark = len(self._handled)
            examples = [(item, features, dice) for item, (features, dice) in self._quality_examples.items()]
        net = self.learner.current_net()
        needs = self.scoring_needs(for_display=for_display)
        state = self._scoring_state(needs)  # before the labels are read: a later submit makes it stale
        bootstrap = None
        if NEED_BOOTSTRAP in needs and net is not None:
            bootstrap = train_bootstrap_nets(net, self.view.training_items(), self.learner.bootstrap_config(),
                                             seed=self.settings.seed, control=control)
        labels = self.view.all_labels()
        request = ScoreRequest(
            net, net.spec if net is not None else None, self.view.all_images(), labels,
            granularity=self.pool_granularity, n_classes=self.project.n_classes, needs=needs,
            bootstrap_nets=bootstrap, quality_examples=examples if NEED_QUALITY in needs else (),
            validation=self.view.validation_query_items(), model_version=self.learner.model_version,
            device=self.settings.device, allowed=self.view.all_allowed(), spacing=self.view.all_spacings(),
            recent=self.view.recent_items(),
            vae=self._vae, seed=self.settings.seed, patch_size=self.learner.inference_patch)
        context = self.selection_context(request.granularity, labels)
        pool = score_pool(request, control=control)
        return RescoreResult(pool, mark, pool.vae, state, context)

    def adopt_rescore(self, result: RescoreResult) -> PoolScores:
        """Make a computed pool the current one (the caller's thread): store its scores and
        quality examples, keep its VAE, and leave out what was handled since it was computed."""
        pool = result.pool
        self._vae = result.vae or self._vae
        self.add_quality_examples(pool.quality_examples)
        if pool.model_version is not None:
            self.project.store_scores(pool.model_version, pool.to_scored_items())
            if result.state is not None:
                keep_state(self.project, result.state)
        with self._lock:
            self._pool, self._context = pool, result.context
            self._left_out = set(self._handled[result.handled_mark:])
        return pool

    def rescore(self, **options: Any) -> PoolScores:
        """:meth:`compute_rescore` then :meth:`adopt_rescore`, for scripts and the CLI."""
        return self.adopt_rescore(self.compute_rescore(**options))

    def rescore_unless_current(self, *, for_display: bool = True, **options: Any) -> tuple[PoolScores, str]:
        """The model's pool for this engine: its stored scores while the model, the labels, the
        weak annotations and the engine's needs are those they were computed from (instant),
        else a fresh :meth:`rescore`. Returns the pool and why it re-scored ("" when the stored
        scores served)."""
        needs = self.scoring_needs(for_display=for_display)
        reason = stale_reason(stored_state(self.project), self._scoring_state(needs))
        if not reason:
            stored = self._stored_pool(needs)
            if stored is not None:
                with self._lock:
                    self._pool, self._context = stored
                return stored[0], ""
            reason = f"the stored scores do not cover this pool, or {self.settings.strategy} needs more than scores"
        return self.rescore(for_display=for_display, **options), reason

    def _scoring_state(self, needs: set[Need]) -> dict[str, Any]:
        return scoring_state(self.project, model_version=self.learner.model_version, strategy=self.settings.strategy,
                             granularity=self.pool_granularity, needs=needs)

    def _stored_pool(self, needs: set[Need]) -> tuple[PoolScores, SelectionContext] | None:
        """The current model's stored scores over today's model-free pool (and its context), if
        they serve ``needs``."""
        version = self.learner.model_version
        if version is None or not self.project.has_scores(version):
            return None
        base, context = self._model_free()
        pool = pool_from_stored(base, self.project.latest_scores(version), version)
        unstored = needs & UNSTORED_NEEDS  # kept as pool arrays, not as the scores' terms
        return (pool, context) if pool is not None and unstored <= pool.available() else None

    def _model_free(self) -> tuple[PoolScores, SelectionContext]:
        """Today's pool without a model (candidates, labelled items, allowed classes, whole-region
        boxes: cheap, no prediction) and its selection context; changes nothing."""
        from ..scoring import ScoreRequest, score_pool

        granularity = self.pool_granularity
        labels = self.view.all_labels()
        pool = score_pool(ScoreRequest(
            None, None, self.view.all_images(), labels, granularity=granularity, n_classes=self.project.n_classes,
            validation=self.view.validation_query_items(), allowed=self.view.all_allowed()))
        return pool, self.selection_context(granularity, labels)

    def selection_context(self, granularity: Granularity,
                          labels: Mapping[str, tuple[np.ndarray, np.ndarray] | None]) -> SelectionContext:
        """What the engine ranks by beside the scores of a pool of ``granularity`` scored from
        ``labels`` (case → class ids, labelled mask): for an ROI pool, the effort and seconds
        models, the pixel sizes, the Dice history on the manual labels, the marked slice ranges
        and the traced spans, which dice-per-effort prices by; nothing for cases and slices,
        which no engine that reads them ranks."""
        if granularity != ROI:
            return SelectionContext()
        return SelectionContext(
            effort=self.accounting.effort_model(), seconds_model=self.accounting.seconds_model(),
            spacing=self.view.all_spacings(), class_dice_history=self.learner.class_dice_history(),
            class_ranges=self.view.all_class_ranges(), traced_spans=traced_spans(labels, self.project.n_classes))

    # ------------------------------------------------------------------ suggesting

    def suggest(self, k: int | None = None, *, priced: bool = False) -> list[Suggestion]:
        """The next ``k`` items to annotate, from the scores of the last adopted rescore.

        Instant: ranks stored scores. Without a model, or before scoring, suggestions
        come from a model-free pool (random / slice-uniform; others fall back to random
        and say so; :meth:`current_pool`). Items submitted or skipped since the scoring are
        left out. ``priced``: add the remaining effort (mm, estimated s) where the strategy
        set none (reads every label: the widget asks for it, loops that only rank need not).
        Changes nothing: what was served is kept by :meth:`record_served`.
        """
        pool, context = self._ranking()
        remaining = replace(pool, candidates=[item for item in pool.candidates if item not in self._left_out])
        suggestions = select(self.settings.strategy, remaining, k or self.settings.batch_size, self.settings.seed,
                             context)
        return self._with_effort(suggestions) if priced else suggestions

    def _with_effort(self, suggestions: list[Suggestion]) -> list[Suggestion]:
        """Every suggestion with its remaining effort: a case or slice gets the boundary still to
        trace in it (mm) and, once the annotator's timing is fitted, its seconds; an ROI priced
        in mm by its strategy gets the seconds too. Terms a strategy set are kept."""
        if not suggestions:
            return suggestions
        seconds_model = self.accounting.seconds_model()
        priced = []
        for suggestion in suggestions:
            terms, item = dict(suggestion.terms), suggestion.item
            if item.class_id is None and not np.isfinite(terms.get(TERM_EFFORT_MM, np.nan)):
                mm, seconds = self.accounting.region_remaining(item.case, item.slice_index)
                terms[TERM_EFFORT_MM] = mm
                terms.setdefault(TERM_EFFORT_S, seconds)
            elif (item.class_id is not None and seconds_model is not None and TERM_EFFORT_S not in terms
                  and np.isfinite(terms.get(TERM_EFFORT_MM, np.nan))):
                px = terms[TERM_EFFORT_MM] / float(np.mean(self.view.in_plane_spacing(item.case)))
                predicted_s = seconds_model.predict(item.class_id, px)
                if predicted_s is not None:
                    terms[TERM_EFFORT_S] = predicted_s
            priced.append(replace(suggestion, terms=terms))
        return priced

    def handled(self, item: QueryItem) -> None:
        """An item was submitted or skipped: leave it out of this round's suggestions (it
        comes back after re-scoring if it is still a candidate then)."""
        with self._lock:
            self._handled.append(item)
            self._left_out.add(item)

    def returned(self, case: str) -> None:
        """A case's submits were taken back: its items are offered again in this round."""
        with self._lock:
            self._left_out = {item for item in self._left_out if item.case != case}

    def pseudo_label_candidates(self) -> list[Suggestion]:
        """Cases predicted Acceptable (quality-threshold, docs/METHODS.md §6.4), for one-click review
        ([] while no pool of the active model is current: only a model's pool is rated)."""
        pool = self.fresh_pool()
        return [] if pool is None else [s for s in pseudo_label_candidates(pool) if s.item not in self._left_out]

    def quality_rows(self) -> list[tuple[QueryItem, QualityEstimate]]:
        """``(item, its rating)`` of every rated candidate (cases, or slices of a stack; an ROI
        pool rates its untouched slices whole), best predicted Dice first, without those
        submitted or skipped since the scoring ([] while no pool of the active model is current)."""
        pool = self.fresh_pool()
        if pool is None:
            return []
        rated = pool.region_quality if pool.granularity == ROI else pool.terms
        rows = []
        for item in (list(rated) if pool.granularity == ROI else pool.candidates):
            estimate = estimate_from_terms(rated.get(item, {}))
            if estimate is not None and item not in self._left_out:
                rows.append((item, estimate))
        return sorted(rows, key=lambda row: -row[1].dice)

    def rate_items(self, items: Sequence[QueryItem]) -> list[QualityEstimate]:
        """The active model's predicted Dice (with its interval and class) of each item, in order.

        A case or slice the current pool rated keeps that rating (what the Review tab shows);
        any other item (an ROI: its class alone) is rated by the predictor fitted on every
        example so far, from the pool's features where it has them, else from a prediction
        and an MC-dropout pass made now (long: a worker's job for many items). Raises
        :class:`AlsegError` without a model.
        """
        if self.learner.current_net() is None:
            raise AlsegError("no model yet: retrain once before rating items")
        pool = self._pool
        if pool is not None and pool.model_version != self.learner.model_version:
            pool = None
        predictor: QualityPredictor | None = None
        estimates = []
        for item in items:
            estimate = None
            if pool is not None and item.class_id is None:
                estimate = estimate_from_terms(pool.region_quality.get(item) or pool.terms.get(item) or {})
            if estimate is None:
                features = pool.quality_features.get(item) if pool is not None else None
                if features is None:
                    features = self.learner.item_quality_features(item)
                predictor = predictor or self.quality_predictor()
                estimate = predictor.estimate(np.asarray(features, dtype=float)[None])[0]
            estimates.append(estimate)
        return estimates

    def quality_predictor(self) -> QualityPredictor:
        """The quality predictor fitted on every prediction of known Dice so far."""
        from ..scoring import fit_quality_model

        with self._lock:
            examples = [(item, features, dice) for item, (features, dice) in self._quality_examples.items()]
        return fit_quality_model(examples, (), self.settings.seed)

    @property
    def quality_status(self) -> str:
        """Why the current pool's quality is unknown; "" when it is rated (or not asked for)."""
        pool = self._pool
        return pool.quality_status if pool is not None and pool.model_version == self.learner.model_version else ""

    @property
    def quality_note(self) -> str:
        """A caveat on the current ratings ("" when each is read from its own prediction)."""
        pool = self._pool
        return pool.quality_note if pool is not None and pool.model_version == self.learner.model_version else ""

    @property
    def quality_basis(self) -> int:
        """How many predictions of known Dice the current ratings rest on (0: none rated)."""
        pool = self._pool
        if pool is None or pool.model_version != self.learner.model_version:
            return 0
        counts = [terms.get(TERM_QUALITY_EXAMPLES, np.nan) for terms in [*pool.terms.values(),
                                                                          *pool.region_quality.values()]]
        counts = [c for c in counts if np.isfinite(c)]
        return int(counts[0]) if counts else 0

    def unseen_items(self) -> set[QueryItem]:
        """Items the active model rated as unlabelled candidates: it never trained on them, so
        its prediction of each one labelled since has an honest, free Dice."""
        pool = self._pool
        if pool is None or pool.model_version is None or pool.model_version != self.learner.model_version:
            return set()
        return set(pool.candidates) | set(pool.region_quality)

    def fresh_pool(self) -> PoolScores | None:
        """The current pool while it fits the active model and the engine's item kind, None once
        it does not (:meth:`refresh_pool` makes a fitting one current). A model-free ROI pool
        fits only the labels and marked slice ranges it was made from, so a range marked before
        a model takes effect at once. Changes nothing."""
        pool = self._pool
        granularity = self.pool_granularity
        if pool is None or pool.model_version != self.learner.model_version or pool.granularity != granularity:
            return None
        if (granularity == ROI and not pool.has_model and pool.model_version is None
                and self._free_state != self._labels_state()):
            return None
        return pool

    def refresh_pool(self) -> PoolScores:
        """Rescore if stale, without a model: keep the current pool while it fits
        (:meth:`fresh_pool`), else make today's model-free pool current (cheap: no prediction).
        Random and slice-uniform rank a model-free pool, and so does dice-per-effort an ROI one
        (its context carries the effort model: structures where the annotator said they are
        first); the others fall back to random and say so. Scoring with the model is
        :meth:`rescore`. Returns the current pool."""
        pool = self.fresh_pool()
        if pool is None:
            state = self._labels_state() if self.pool_granularity == ROI else None
            pool, context = self._model_free()
            with self._lock:
                self._pool, self._context, self._free_state = pool, context, state
        return pool

    def current_pool(self) -> PoolScores:
        """The pool the suggestions come from: the current one while it fits, else today's
        model-free pool, made now and not kept (cheap: no prediction). Changes nothing."""
        return self._ranking()[0]

    def _ranking(self) -> tuple[PoolScores, SelectionContext]:
        """What :meth:`suggest` ranks: the fitting current pool and its context, else a
        model-free pool and context made now (not kept)."""
        pool = self.fresh_pool()
        return (pool, self._context) if pool is not None else self._model_free()

    def _labels_state(self) -> tuple[int, int, int]:
        """What a model-free pool rests on: the annotation events and the marked ranges."""
        state = scoring_state(self.project, model_version=None, strategy="", granularity=None, needs=())
        return state["events"], state["last_event"], state["last_weak"]

    def record_served(self, suggestions: Sequence[Suggestion]) -> None:
        """Keep what a front end served the annotator (the dock's queue, ``alseg suggest``'s list,
        a simulated round) as the round's record: one per (model version, engine), the first
        list served under them, with scores and terms. ``alseg export`` writes the records
        (``rounds.csv``) beside the labels: which engine offered which items, for provenance."""
        key = (self.learner.model_version, self.settings.strategy)
        if not suggestions or self._round_recorded == key:
            return
        served = [ScoredItem(s.item.case, s.item.slice_index, s.item.class_id,
                             float(s.score) if np.isfinite(s.score) else 0.0,
                             {name: float(v) for name, v in s.terms.items() if np.isfinite(v)})
                  for s in suggestions]
        self.project.record_round(self.settings.strategy, served, model_version=self.learner.model_version)
        self._round_recorded = key

    # ------------------------------------------------------------------ quality examples

    @property
    def n_quality_examples(self) -> int:
        """Predictions whose true Dice is known (validation, out of fold, corrections): what
        the quality predictor learns from, one per item (the newest)."""
        return len(self._quality_examples)

    def correction_submitted(self, item: QueryItem, original: np.ndarray, labels: np.ndarray) -> None:
        """A correction reveals the true Dice of a rated prediction: a quality example. A case or
        slice: the mean Dice of what the annotator saw (``original``) against what they submitted;
        an ROI: the Dice of its class alone (the other classes of the slice were not theirs to check)."""
        pool = self._pool
        if pool is None or item not in pool.quality_features:
            return
        original, labels = np.asarray(original), np.asarray(labels)
        if item.class_id is None:
            dice = mean_dice(dice_per_class(original, labels, self.project.n_classes))
        else:
            dice = mean_dice(dice_per_class((original == item.class_id).astype(np.uint8),
                                            (labels == item.class_id).astype(np.uint8), 2))
        self.add_quality_examples([(item, pool.quality_features[item], 1.0 if np.isnan(dice) else dice)])

    def add_quality_examples(self, examples: list[tuple[QueryItem, np.ndarray, float]]) -> None:
        """Remember (and store, so the next session starts with them) predictions of known Dice."""
        if not examples:
            return
        self.project.store_quality_examples(examples, model_version=self.learner.model_version)
        with self._lock:
            for item, features, dice in examples:
                self._quality_examples[item] = (features, dice)

