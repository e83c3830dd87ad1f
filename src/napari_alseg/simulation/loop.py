"""The run loop: every (strategy, seed) through the session's verbs, round after round."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import CASE, NEED_QUALITY, TRACE_ANNOTATOR, SimulatedAnnotator
from ..errors import AlsegError
from ..session import Session, create_project, holds_project
from ..strategies import Suggestion, get_strategy
from .files import (
    ANNOTATOR, CONVERGENCE_TOLERANCE, FULL_DATA, REFERENCE_CSV, REFERENCE_MAX_FACTOR, ROUNDS_CSV, TEST_FRACTION,
    Progress, ReferenceCsv, RoundsCsv, SimulationRun, check_annotator, check_settings, convergence_window, last_spread,
)
from .measure import PoolTotals, columns_of, format_value, is_labelled, round_row
from .oracle import Oracle
from .report import write_report

if TYPE_CHECKING:
    from ..model import TrainConfig


def simulate(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, *, strategies: Sequence[str],
             rounds: int, seeds: Sequence[int], batch_size: int, initial_items: int,
             train_config: TrainConfig, correction_mode: bool = False,
             test_fraction: float = TEST_FRACTION, full_data: bool = True,
             annotator: SimulatedAnnotator = TRACE_ANNOTATOR,
             progress: Progress | None = None) -> Path:
    """Run ``rounds`` rounds per (strategy, seed) and return the path of ``rounds.csv``.

    Round 1 labels ``initial_items`` items suggested without a model (the strategy's
    model-free fallback, random for most); each later round labels ``batch_size`` items
    (cases, slices or ROIs: the strategy's unit). Each round fine-tunes the last model
    for ``train_config``'s steps or seconds, the project plan's budget when it sets
    neither (seeded per run). ``correction_mode``: the oracle
    corrects the model's prediction instead of tracing from scratch, so the effort is the
    boundary it changed. ``annotator``: :data:`~napari_alseg.domain.CLICK_ANNOTATOR` clicks
    each structure first (the click oracle), so only the outline painted after the clicks is
    charged. ``full_data`` adds the reference run (trained to convergence, ``reference.csv``). ``progress(row)`` gets
    each row as written. A second call with the same ``out_dir`` resumes; changed
    settings (other than strategies, seeds and rounds) are refused.
    """
    for name in strategies:
        get_strategy(name)
    annotator = check_annotator(annotator)
    if rounds < 1 or batch_size < 1 or initial_items < 1:
        raise AlsegError("rounds, batch_size and initial_items must each be at least 1")
    run = SimulationRun(Path(dataset_dir).absolute(), Path(out_dir).absolute(), rounds, batch_size, initial_items,
               train_config, correction_mode, test_fraction, annotator)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    check_settings(run)
    rows = RoundsCsv(run.out_dir / ROUNDS_CSV)
    for seed in seeds:
        test_split = None
        for strategy in strategies:
            test_split = _check_same_split(test_split, _run_strategy(run, rows, strategy, int(seed), progress))
        if full_data:
            _check_same_split(test_split, _run_full_data(run, rows, int(seed), progress))
    write_report(run.out_dir)
    return rows.path


def _run_strategy(run: SimulationRun, rows: RoundsCsv, strategy: str, seed: int,
                  progress: Progress | None) -> list:
    """All missing rounds of one (strategy, seed); returns the project's test split."""
    with _open_session(run, f"{strategy}-seed{seed}", strategy, seed) as session:
        rows.use_columns(columns_of(session.catalog))
        totals = PoolTotals.of(session)
        oracle = Oracle(session, run.correction_mode, run.annotator)
        for round_index in range(1, run.rounds + 1):
            if rows.has(strategy, seed, round_index):
                continue
            started = time.perf_counter()
            if len(session.catalog.checkpoints()) < round_index:
                wanted = run.initial_items if round_index == 1 else run.batch_size
                if not _label_round(session, oracle, wanted - _submitted_this_round(session)):
                    break  # pool exhausted: nothing new to learn from
                retrain_seeded(session, seed)
            row = round_row(session, oracle, totals, strategy, seed, round_index,
                             time.perf_counter() - started)
            rows.append(row, progress)
        return session.catalog.validation_items()


def _run_full_data(run: SimulationRun, rows: RoundsCsv, seed: int, progress: Progress | None) -> list:
    """Every pool item labelled and trained in chunks of one round's budget: the Dice to reach.

    The schedule of an active-learning run (``rounds`` fine-tunes, each warm-started from
    the last) on all the data, so the reference trains at least as long as the longest
    run; each chunk's test Dice goes to ``reference.csv``. It is converged when the last
    :func:`~.files.convergence_window` chunks agree within ``CONVERGENCE_TOLERANCE``;
    until then it trains on, up to ``REFERENCE_MAX_FACTOR × rounds`` chunks, and the
    report calls a reference that never converged a defect. The ``rounds.csv`` row keeps
    ``round = rounds`` (the budget it was made for) and the last chunk's Dice.
    """
    with _open_session(run, f"{FULL_DATA}-rounds{run.rounds}-seed{seed}", "random", seed) as session:
        rows.use_columns(columns_of(session.catalog))
        if not rows.has(FULL_DATA, seed, run.rounds):
            started = time.perf_counter()
            totals = PoolTotals.of(session)
            oracle = Oracle(session, correction_mode=False)
            for region in totals.regions:
                if not is_labelled(session, region):
                    oracle.answer(region)
            _train_reference(session, run, seed, ReferenceCsv(run.out_dir / REFERENCE_CSV))
            rows.append(round_row(session, oracle, totals, FULL_DATA, seed, run.rounds,
                                   time.perf_counter() - started), progress)
        return session.catalog.validation_items()


def _train_reference(session: Session, run: SimulationRun, seed: int, reference: ReferenceCsv) -> None:
    """Chunks until converged (at least ``rounds``, at most ``REFERENCE_MAX_FACTOR × rounds``);
    a resumed run counts the chunks its checkpoints hold."""
    window = convergence_window(run.rounds)
    least, most = max(run.rounds, window), max(REFERENCE_MAX_FACTOR * run.rounds, window)
    curve = [float(c.metrics.get("val_dice", math.nan)) for c in session.catalog.checkpoints()]
    while len(curve) < most:
        if len(curve) >= least and last_spread(curve, window) <= CONVERGENCE_TOLERANCE:
            break
        chunk_started = time.perf_counter()
        retrain_seeded(session, seed)
        curve.append(float(session.catalog.metrics().get("val_dice", math.nan)))
        spread = last_spread(curve, window)
        reference.append({"seed": seed, "budget_rounds": run.rounds, "chunk": len(curve),
                          "dice_test": format_value(curve[-1]), "spread_last": format_value(spread),
                          "converged": int(len(curve) >= least and spread <= CONVERGENCE_TOLERANCE),
                          "wall_seconds": format_value(time.perf_counter() - chunk_started)})


def _open_session(run: SimulationRun, name: str, strategy: str, seed: int) -> Session:
    """The run's project, created on first use (with the slice ranges of docs/METHODS.md §7.1) or
    reopened."""
    folder = run.out_dir / "projects" / name
    options: dict[str, Any] = {"annotator": ANNOTATOR, "strategy": strategy, "seed": seed,
                               "train_config": replace(run.train_config, seed=seed),
                               "device": run.train_config.device, "batch_size": run.batch_size}
    if holds_project(folder):
        session = Session.open(folder, **options)
    else:
        session = Session(create_project(folder, run.dataset_dir, annotator=ANNOTATOR,
                                         validation_fraction=run.test_fraction, seed=seed), **options)
    if session.catalog.granularity != CASE:
        _mark_class_ranges(session)
    return session


def _mark_class_ranges(session: Session) -> None:
    """Weak supervision (docs/METHODS.md §7.1), two clicks per structure: the slices each class spans.

    Only ranges not yet recorded are added, so a project reopened after a crash ends
    up with each range once.
    """
    for record in session.catalog.cases:
        marked = session.catalog.weak_annotations(record.name)
        truth = session.catalog.ground_truth(record.name)
        if truth is None:
            raise AlsegError(f"case {record.name!r} has no ground truth: the simulated oracle needs it")
        for class_id in range(1, session.catalog.n_classes):
            present = np.flatnonzero((truth == class_id).any(axis=(1, 2)))
            if present.size and class_id not in marked:
                session.mark_class_range(record.name, class_id, int(present[0]), int(present[-1]))


def _label_round(session: Session, oracle: Oracle, wanted: int) -> bool:
    """Score, suggest ``wanted`` items and answer them; False when none was left.

    Scoring needs a model and computes only what the strategy ranks by; it is skipped
    for strategies that rank without scores (random, slice-uniform). In correction mode
    the display scores are kept too: the quality ratings the corrections teach.
    """
    if wanted <= 0:
        return True
    strategy = get_strategy(session.settings.strategy)
    if session.learner.current_net() is not None and strategy.needs:
        session.rescore(for_display=oracle.correction_mode)
    suggestions: list[Suggestion] = session.suggest(wanted)
    session.queries.record_served(suggestions)
    for suggestion in suggestions:
        if suggestion.pseudo_label:
            session.accept_pseudo(suggestion.item.case, slice_index=suggestion.item.slice_index)
        else:
            oracle.answer(suggestion.item)
    if NEED_QUALITY in strategy.needs and session.learner.current_net() is not None:
        _accept_pseudo_labels(session)
    return bool(suggestions)


def _accept_pseudo_labels(session: Session) -> None:
    """As the study of docs/METHODS.md §6.4: every prediction rated Acceptable joins training as a
    pseudo-label, unedited.

    It costs no boundary and is not counted as a labelled item: the table's items are
    the expert's. A rating is only as good as the corrections it learnt from, so a
    wrong one costs test Dice, which the curve shows.
    """
    for suggestion in session.queries.pseudo_label_candidates():
        item = suggestion.item
        if item.class_id is None and not is_labelled(session, item):
            session.accept_pseudo(item.case, slice_index=item.slice_index)


def retrain_seeded(session: Session, seed: int, *, rate_quality: bool = False) -> None:
    """Retrain with torch's global RNG seeded: the first round's fresh net is drawn from it,
    so every strategy run with the same seed starts from the same initial weights.
    ``rate_quality``: also rate out-of-fold predictions for the quality predictor, as the
    product's retrain does (the curve runs leave it out: nothing there reads the ratings, and
    it costs folds)."""
    import torch

    torch.manual_seed(seed)
    session.retrain(rate_quality=rate_quality)


def _submitted_this_round(session: Session) -> int:
    """Items already answered under the active model: a round cut short by a crash."""
    version = session.learner.model_version
    return sum(1 for e in session.catalog.events() if e.label_version is not None and e.model_version == version)


def _check_same_split(expected: list | None, split: list) -> list:
    if expected is not None and split != expected:
        raise AlsegError("the test split differs between runs of the same seed; results would not compare")
    return split


