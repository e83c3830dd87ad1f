"""Cohort completion: every pool item finished, and the annotator's seconds it took, per workflow.

Per (engine, seed) one active-learning run labels ``initial_items`` then ``batch_size``
items a round for ``rounds`` rounds (the engine's suggestions, answered with the ground
truth and retrained each round), then the rest of the cohort is finished with the last
model. Every labelled item is priced under each workflow (:mod:`napari_alseg.pricing`), with the
prefill the annotator would have seen then, so one run serves all workflows (they train
on the same labels: the oracle's answer is the ground truth in every one):

- ``trace``: every item traced from scratch, no model (the 100 %);
- ``correct``: the rounds' items and the rest corrected from the model's prefill with the brush;
- ``clicks``: the same, clicking each structure first (the click oracle, then the brush);
- ``review``: as ``clicks``, but every remaining item the dock would offer for one-click
  acceptance (rated Acceptable by a quality predictor calibrated on enough predictions of
  known Dice: the product's retrain rates them out of fold) is reviewed and accepted
  unedited; an accepted one below ``accept_dice`` against the ground truth is an error.

The project ends with every item done (the ``review`` workflow's outcome: accepted
pseudo-labels, and the ground truth elsewhere). ``cohort_items.csv`` holds one row per item
and workflow, appended when a run ends; a rerun skips finished runs and starts an
interrupted one over.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CORRECTED, MANUAL, ROI, QueryItem
from ..errors import AlsegError
from ..quality import ACCEPTABLE, MIN_FIT_CASES
from ..session import Session, create_project
from ..strategies import get_strategy
from .cohort_files import (ACCEPTED, CLICK, CLICKED, CORRECT, CORRECTED_HOW, FINISH, ITEM_COLUMNS, ITEMS_CSV,
                           NO_ENGINE, REVIEW, ROUND_COLUMNS, ROUNDS_CSV, SETTINGS_JSON, TEXT_COLUMNS, TRACE, TRACED)
from .cohort_report import read_csv, write_cohort_report
from .files import ANNOTATOR, TEST_FRACTION, clock_text, keep_settings, sync, text_cells
from .loop import retrain_seeded
from .measure import PoolTotals, format_value, is_labelled
from .oracle import Oracle, click_item
from ..metrics import item_dice
from ..pricing import SecondsCosts, redraw, review_slices, trace_mm

if TYPE_CHECKING:
    from ..model import TrainConfig

Show = Callable[[str], None]


@dataclass(frozen=True)
class CohortRun:
    """The fixed settings of one cohort benchmark (a rerun with other ones is refused)."""

    dataset_dir: Path
    out_dir: Path
    rounds: int
    batch_size: int
    initial_items: int
    train_config: TrainConfig
    costs: SecondsCosts
    test_fraction: float = TEST_FRACTION


def run_cohort(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, *, engines: Sequence[str],
               seeds: Sequence[int], rounds: int, batch_size: int, initial_items: int, train_config: TrainConfig,
               costs: SecondsCosts = SecondsCosts(), test_fraction: float = TEST_FRACTION,
               show: Show = print) -> Path:
    """Every (engine, seed) run not yet in ``out_dir``, then the report; returns ``out_dir``.

    ``show`` gets a line per round: runs and rounds done, time elapsed and left.
    """
    for name in engines:
        strategy = get_strategy(name)
        if strategy.granularities == {ROI}:
            raise AlsegError(f"{name} suggests ROIs; a cohort is finished case by case or slice by slice: "
                             "choose case or slice engines")
    if rounds < 1 or batch_size < 1 or initial_items < 1:
        raise AlsegError("rounds, batch_size and initial_items must each be at least 1")
    run = CohortRun(Path(dataset_dir).absolute(), Path(out_dir).absolute(), rounds, batch_size, initial_items,
                    train_config, costs, test_fraction)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(run)
    items = _AppendedCsv(run.out_dir / ITEMS_CSV, ITEM_COLUMNS)
    round_rows = _AppendedCsv(run.out_dir / ROUNDS_CSV, ROUND_COLUMNS)
    done = {(row["engine"], int(row["seed"])) for row in items.rows()}
    todo = [(engine, int(seed)) for seed in seeds for engine in engines if (engine, int(seed)) not in done]
    pace = _Pace(len(todo) * (rounds + 1), show)
    for engine, seed in todo:
        traced_already = (NO_ENGINE, seed) in done
        rows, rounds_done = _engine_run(run, engine, seed, pace, trace=not traced_already)
        items.extend(rows)  # a run counts as done once its item rows are written
        round_rows.extend(rounds_done)  # after them: a rerun of a run cut short never adds its rounds twice
        done |= {(engine, seed), (NO_ENGINE, seed)}
    write_cohort_report(run.out_dir, costs)
    return run.out_dir


def _engine_run(run: CohortRun, engine: str, seed: int, pace: _Pace, *, trace: bool) -> tuple[list[dict], list[dict]]:
    """One engine's active-learning run and the cohort finished after it: its item rows (and the
    trace workflow's, when ``trace``) and its round rows."""
    folder = run.out_dir / "projects" / f"{engine}-seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted run starts over: its rows were never written
    project = create_project(folder, run.dataset_dir, annotator=ANNOTATOR, validation_fraction=run.test_fraction,
                             seed=seed)
    session = Session(project, annotator=ANNOTATOR, strategy=engine,
                      train_config=replace(run.train_config, seed=seed), device=run.train_config.device,
                      batch_size=run.batch_size, seed=seed)
    with session:
        pricer = ItemPricer(session, run.costs, seed, engine)
        pool = PoolTotals.of(session).regions
        rows = [pricer.traced(item) for item in pool] if trace else []
        round_rows = []
        for round_index in range(1, run.rounds + 1):
            started = time.perf_counter()
            wanted = run.initial_items if round_index == 1 else run.batch_size
            for item in _suggested(session, wanted):
                rows += pricer.labelled(item, round_index)
            retrain_seeded(session, seed, rate_quality=True)  # as the product's retrain: the review needs ratings
            round_rows.append(_round_row(session, seed, engine, round_index, time.perf_counter() - started))
            pace.step(f"{engine} seed {seed} round {round_index}/{run.rounds}: "
                      f"{round_rows[-1]['labelled_items']} items labelled, test Dice {float(round_rows[-1]['dice_test']):.3f}")
        remaining = [item for item in pool if not is_labelled(session, item)]
        rows += pricer.finished(remaining)
        accepted = sum(row["workflow"] == REVIEW and row["how"] == ACCEPTED for row in rows)
        pace.step(f"{engine} seed {seed}: {len(remaining)} items finished with the last model, {accepted} accepted")
    return [{key: format_value(value) for key, value in row.items()} for row in rows], round_rows


def _suggested(session: Session, wanted: int) -> list[QueryItem]:
    """The engine's next ``wanted`` items (scored first when it ranks by scores and a model exists)."""
    strategy = get_strategy(session.settings.strategy)
    if session.learner.current_net() is not None and strategy.needs:
        session.rescore()
    suggestions = session.suggest(wanted)
    session.queries.record_served(suggestions)
    return [suggestion.item for suggestion in suggestions]


def _round_row(session: Session, seed: int, engine: str, round_index: int, seconds: float) -> dict:
    metrics = session.catalog.metrics()
    labelled = sum(1 for e in session.catalog.events() if e.label_version is not None)
    return {key: format_value(value) for key, value in {
        "seed": seed, "engine": engine, "round": round_index, "labelled_items": labelled,
        "dice_test": float(metrics.get("val_dice", math.nan)), "wall_seconds": seconds}.items()}


class ItemPricer:
    """Prices items under each workflow from the ground truth and the model of the moment,
    and leaves them done in the project."""

    def __init__(self, session: Session, costs: SecondsCosts, seed: int, engine: str) -> None:
        self.session = session
        self.costs = costs
        self.seed = seed
        self.engine = engine
        self.oracle = Oracle(session, correction_mode=True)
        self.classes = range(1, session.catalog.n_classes)

    def truth(self, item: QueryItem) -> np.ndarray:
        truth = self.oracle.truth(item.case)
        return truth if item.slice_index is None else truth[item.slice_index]

    def traced(self, item: QueryItem) -> dict:
        """The trace workflow's row: the true outline at the tracing speed."""
        outline = trace_mm(self.truth(item), self.classes, self._spacing(item))
        return self._row(item, TRACE, NO_ENGINE, 0, TRACED, self.costs.trace_seconds_per_mm * outline, 0, outline,
                         outline, math.nan, 1.0)

    def labelled(self, item: QueryItem, round_index: int) -> list[dict]:
        """A round's item under correct, clicks and review (labelled, as clicks), then submitted."""
        prefill = self._prefill(item)
        rows = [self._corrected(item, prefill, round_index)]
        clicked = self._clicked(item, prefill, round_index)
        rows += [clicked, {**clicked, "workflow": REVIEW}]
        self._submit_truth(item, prefill)
        return rows

    def finished(self, items: Sequence[QueryItem]) -> list[dict]:
        """The rest of the cohort with the last model: correct, clicks, and review (accept what the
        dock offers for one-click acceptance: rated Acceptable by a predictor calibrated on at
        least :data:`~napari_alseg.quality.MIN_FIT_CASES` predictions of known Dice; else click);
        the project keeps the review outcome."""
        ratings = self.session.queries.rate_items(list(items)) if items else []
        calibrated = self.session.queries.n_quality_examples >= MIN_FIT_CASES
        rows = []
        for item, rating in zip(items, ratings):
            prefill = self._prefill(item)
            clicked = self._clicked(item, prefill, FINISH)
            rows += [self._corrected(item, prefill, FINISH), clicked]
            if calibrated and rating.quality_class == ACCEPTABLE and prefill is not None:
                rows.append(self._accepted(item, prefill))
                self.session.accept_pseudo(item.case, prefill, slice_index=item.slice_index)
            else:
                rows.append({**clicked, "workflow": REVIEW})
                self._submit_truth(item, prefill)
        return rows

    def _corrected(self, item: QueryItem, prefill: np.ndarray | None, round_index: int) -> dict:
        truth, spacing, costs = self.truth(item), self._spacing(item), self.costs
        if prefill is None:
            outline = trace_mm(truth, self.classes, spacing)
            seconds = costs.trace_seconds_per_mm * outline
            return self._row(item, CORRECT, self.engine, round_index, TRACED, seconds, 0, outline, outline,
                             math.nan, 1.0, seconds_changed=seconds)
        fix = redraw(prefill, truth, self.classes, spacing, costs.tolerance_mm)
        look = costs.review_seconds_per_slice * review_slices(prefill)
        seconds = look + costs.redraw_seconds_per_mm * fix.mm + costs.click_seconds * fix.erase_clicks
        return self._row(item, CORRECT, self.engine, round_index, CORRECTED_HOW, seconds, fix.erase_clicks, fix.mm,
                         fix.changed_mm, self._dice(prefill, truth), 1.0,
                         seconds_changed=look + costs.redraw_seconds_per_mm * fix.changed_mm)

    def _clicked(self, item: QueryItem, prefill: np.ndarray | None, round_index: int) -> dict:
        """Click each structure (from the prefill, or nothing before a model), then redraw the rest."""
        truth, spacing, costs = self.truth(item), self._spacing(item), self.costs
        clicked = click_item(self.session, self.oracle.truth(item.case), item, prefill)
        after = clicked.labels if item.slice_index is None else clicked.labels[item.slice_index]
        fix = redraw(after, truth, self.classes, spacing, costs.tolerance_mm)
        look = 0.0 if prefill is None else costs.review_seconds_per_slice * review_slices(prefill)
        clicks = clicked.clicks + fix.erase_clicks
        seconds = look + costs.click_seconds * clicks + costs.redraw_seconds_per_mm * fix.mm
        return self._row(item, CLICK, self.engine, round_index, CLICKED, seconds, clicks, fix.mm, fix.changed_mm,
                         math.nan if prefill is None else self._dice(prefill, truth), 1.0,
                         seconds_changed=look + costs.click_seconds * clicked.clicks
                         + costs.redraw_seconds_per_mm * fix.changed_mm)

    def _accepted(self, item: QueryItem, prefill: np.ndarray) -> dict:
        dice = self._dice(prefill, self.truth(item))
        seconds = self.costs.review_seconds_per_slice * review_slices(prefill)
        return self._row(item, REVIEW, self.engine, FINISH, ACCEPTED, seconds, 0, 0.0, 0.0, dice, dice,
                         accept_error=int(dice < self.costs.accept_dice))

    def _prefill(self, item: QueryItem) -> np.ndarray | None:
        if self.session.learner.current_net() is None:
            return None
        return self.session.predict_labels(item.case, item.slice_index)

    def _submit_truth(self, item: QueryItem, prefill: np.ndarray | None) -> None:
        self.session.submit(item.case, self.truth(item), kind=MANUAL if prefill is None else CORRECTED,
                            seconds_active=0.0, slice_index=item.slice_index, original=prefill)

    def _spacing(self, item: QueryItem) -> tuple[float, float]:
        return self.session.view.in_plane_spacing(item.case)

    def _dice(self, labels: np.ndarray, truth: np.ndarray) -> float:
        return item_dice(labels, truth, self.session.catalog.n_classes)

    def _row(self, item: QueryItem, workflow: str, engine: str, round_index: int, how: str, seconds: float,
             clicks: int, outline_mm: float, changed_mm: float, prefill_dice: float, final_dice: float, *,
             seconds_changed: float | None = None, accept_error: int = 0) -> dict:
        return {"seed": self.seed, "engine": engine, "workflow": workflow, "round": round_index,
                "case": item.case, "slice": "" if item.slice_index is None else item.slice_index, "how": how,
                "seconds": seconds, "clicks": clicks, "outline_mm": outline_mm, "changed_mm": changed_mm,
                "seconds_changed": seconds if seconds_changed is None else seconds_changed,
                "prefill_dice": prefill_dice, "final_dice": final_dice, "accept_error": accept_error}


class _AppendedCsv:
    """A CSV of rows appended in blocks, each block flushed and fsynced."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)

    def rows(self) -> list[dict[str, str]]:
        return read_csv(self.path)

    def extend(self, rows: Sequence[dict]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            if new:
                writer.writeheader()
            writer.writerows(text_cells(row, TEXT_COLUMNS) for row in rows)
            sync(handle)


class _Pace:
    """Steps done and time left (the pace of this process), one line per step."""

    def __init__(self, total: int, show: Show) -> None:
        self.total, self.done, self.show = total, 0, show
        self.started = time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        left = (self.total - self.done) * elapsed / self.done
        self.show(f"[{self.done}/{self.total} steps, {clock_text(elapsed)} elapsed, ~{clock_text(left)} left] {what}")


def _check_settings(run: CohortRun) -> None:
    """Refuse to add runs to results made with other settings (they would not compare)."""
    keep_settings(run.out_dir / SETTINGS_JSON, {
        "dataset": str(run.dataset_dir), "rounds": run.rounds, "batch_size": run.batch_size,
        "initial_items": run.initial_items, "test_fraction": run.test_fraction, "costs": run.costs.to_dict(),
        "train_config": {k: v for k, v in asdict(run.train_config).items() if k != "seed"}}, "a cohort benchmark")
