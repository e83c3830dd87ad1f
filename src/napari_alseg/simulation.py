"""Simulation benchmark: every query engine against random, with an oracle that never tires.

A simulated annotator answers each query from the dataset's ground truth through the
same :class:`~napari_alseg.session.Session` verbs the widget uses (DESIGN "Simulation
benchmark"): per round ``rescore`` (once a model exists) → ``suggest(k)`` → ``submit``
the true labels of each suggested item → ``retrain``. Every round appends one row to
``rounds.csv`` (flushed and fsynced, so a killed run loses at most the round in
progress) and a restarted run skips the rows already there, reopening the projects
under ``out_dir/projects/`` where they were left.

The test split is each project's own validation split: drawn from the seed alone, so
every strategy run with the same seed is measured on the same held-out items
(:func:`simulate` checks this). No strategy looks at it: dice-per-effort's ``D_c`` is
measured on the labels given (:meth:`Session.label_metrics`), and quality ratings learn
only from labelled validation items (the oracle labels none) and from corrections.
A ``full-data`` reference trains once on every pool item for as long as an
active-learning run trains over all its rounds (steps, or seconds for time-budgeted rounds).
:func:`write_report` turns the CSV into ``dice_vs_effort.png`` and the papers' table
(METHODS E): boundary effort to reach 90 / 95 % of the full-data Dice.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .effort import boundary_length
from .errors import AlsegError
from .metrics import class_means, dice_per_class, mean_dice
from .session import Session
from .store import CORRECTED, MANUAL, PSEUDO_ACCEPTED, Project
from .strategies import QueryItem, Suggestion, get_strategy

if TYPE_CHECKING:
    from .model import TrainConfig

# The oracle spends no real time, so seconds are estimated from the traced boundary at a
# fixed tracing speed of 10 px/s (0.1 s per px), a round figure for outlining with a
# mouse or pen in a viewer; not measured. Only the effort_seconds_est column uses it.
SECONDS_PER_PX = 0.1
TEST_FRACTION = 0.2
FULL_DATA = "full-data"
ANNOTATOR = "oracle"
ROUNDS_CSV = "rounds.csv"
SETTINGS_JSON = "settings.json"
PLOT_PNG = "dice_vs_effort.png"
TABLE_MD = "effort_table.md"
TABLE_CSV = "effort_table.csv"
RELATIVE_TARGETS = (0.90, 0.95)  # fractions of the full-data Dice (METHODS E table)
ABSOLUTE_TARGETS = (0.5, 0.7)  # plain Dice values, meaningful without a full-data run
BASE_COLUMNS = (
    "strategy", "seed", "round", "labelled_items", "labelled_slices", "effort_items_pct",
    "effort_boundary_px", "effort_boundary_mm", "effort_boundary_pct", "effort_seconds_est",
    "dice_test",
)
TAIL_COLUMNS = ("dice_pool", "wall_seconds", "model_version")

Progress = Callable[[dict[str, str]], None]


@dataclass(frozen=True)
class _Run:
    """The fixed settings of one simulation, shared by every (strategy, seed) run."""

    dataset_dir: Path
    out_dir: Path
    rounds: int
    batch_size: int
    initial_items: int
    train_config: TrainConfig
    correction_mode: bool
    test_fraction: float


def simulate(dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, *, strategies: Sequence[str],
             rounds: int, seeds: Sequence[int], batch_size: int, initial_items: int,
             train_config: TrainConfig, correction_mode: bool = False,
             test_fraction: float = TEST_FRACTION, full_data: bool = True,
             progress: Progress | None = None) -> Path:
    """Run ``rounds`` rounds per (strategy, seed) and return the path of ``rounds.csv``.

    Round 1 labels ``initial_items`` items suggested without a model (the strategy's
    model-free fallback, random for most); each later round labels ``batch_size`` items
    (cases, slices or ROIs: the strategy's unit). Each round fine-tunes the last model
    for ``train_config``'s steps or seconds, the project plan's budget when it sets
    neither (seeded per run). ``correction_mode``: the oracle
    corrects the model's prediction instead of tracing from scratch, so the effort is the
    boundary it changed. ``full_data`` adds the reference run. ``progress(row)`` gets
    each row as written. A second call with the same ``out_dir`` resumes; changed
    settings (other than strategies, seeds and rounds) are refused.
    """
    for name in strategies:
        get_strategy(name)
    if rounds < 1 or batch_size < 1 or initial_items < 1:
        raise AlsegError("rounds, batch_size and initial_items must each be at least 1")
    run = _Run(Path(dataset_dir).absolute(), Path(out_dir).absolute(), rounds, batch_size, initial_items,
               train_config, correction_mode, test_fraction)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(run)
    rows = _RoundsCsv(run.out_dir / ROUNDS_CSV)
    for seed in seeds:
        test_split = None
        for strategy in strategies:
            test_split = _check_same_split(test_split, _run_strategy(run, rows, strategy, int(seed), progress))
        if full_data:
            _check_same_split(test_split, _run_full_data(run, rows, int(seed), progress))
    write_report(run.out_dir)
    return rows.path


# ------------------------------------------------------------------ one run


def _run_strategy(run: _Run, rows: _RoundsCsv, strategy: str, seed: int,
                  progress: Progress | None) -> list:
    """All missing rounds of one (strategy, seed); returns the project's test split."""
    with _open_session(run, f"{strategy}-seed{seed}", strategy, seed) as session:
        rows.use_columns(_columns(session.project))
        totals = _PoolTotals.of(session)
        oracle = _Oracle(session, run.correction_mode)
        for round_index in range(1, run.rounds + 1):
            if rows.has(strategy, seed, round_index):
                continue
            started = time.perf_counter()
            if len(session.project.checkpoints()) < round_index:
                wanted = run.initial_items if round_index == 1 else run.batch_size
                if not _label_round(session, oracle, wanted - _submitted_this_round(session)):
                    break  # pool exhausted: nothing new to learn from
                _retrain(session, seed)
            row = _round_row(session, oracle, totals, strategy, seed, round_index,
                             time.perf_counter() - started)
            rows.append(row, progress)
        return session.project.validation_items()


def _run_full_data(run: _Run, rows: _RoundsCsv, seed: int, progress: Progress | None) -> list:
    """Every pool item labelled, one training of ``rounds`` rounds' budget: the Dice to reach."""
    with _open_session(run, f"{FULL_DATA}-rounds{run.rounds}-seed{seed}", "random", seed) as session:
        round_config = session.round_config()
        session.train_config = replace(
            round_config,
            steps=None if round_config.steps is None else run.rounds * round_config.steps,
            seconds=None if round_config.seconds is None else run.rounds * round_config.seconds)
        rows.use_columns(_columns(session.project))
        if not rows.has(FULL_DATA, seed, run.rounds):
            started = time.perf_counter()
            totals = _PoolTotals.of(session)
            oracle = _Oracle(session, correction_mode=False)
            if not session.project.checkpoints():
                for region in totals.regions:
                    if not _is_labelled(session, region):
                        oracle.answer(region)
                _retrain(session, seed)
            rows.append(_round_row(session, oracle, totals, FULL_DATA, seed, run.rounds,
                                   time.perf_counter() - started), progress)
        return session.project.validation_items()


def _open_session(run: _Run, name: str, strategy: str, seed: int) -> Session:
    """The run's project, created on first use (with METHODS E slice ranges) or reopened."""
    folder = run.out_dir / "projects" / name
    if not (folder / "project.sqlite").exists():
        project = Project.create(folder, run.dataset_dir, annotator=ANNOTATOR,
                                 validation_fraction=run.test_fraction, seed=seed)
    else:
        project = Project.open(folder)
    session = Session(project, annotator=ANNOTATOR, strategy=strategy,
                      train_config=replace(run.train_config, seed=seed),
                      device=run.train_config.device, batch_size=run.batch_size, seed=seed)
    if project.granularity != "case":
        _mark_class_ranges(session)
    return session


def _mark_class_ranges(session: Session) -> None:
    """METHODS E weak supervision, two clicks per structure: the slices each class spans.

    Only ranges not yet recorded are added, so a project reopened after a crash ends
    up with each range once.
    """
    for record in session.project.cases:
        marked = session.project.weak_annotations(record.name)
        truth = session.project.ground_truth(record.name)
        if truth is None:
            raise AlsegError(f"case {record.name!r} has no ground truth: the simulated oracle needs it")
        for class_id in range(1, session.project.n_classes):
            present = np.flatnonzero((truth == class_id).any(axis=(1, 2)))
            if present.size and class_id not in marked:
                session.mark_class_range(record.name, class_id, int(present[0]), int(present[-1]))


def _label_round(session: Session, oracle: _Oracle, wanted: int) -> bool:
    """Score, suggest ``wanted`` items and answer them; False when none was left.

    Scoring needs a model and computes only what the strategy ranks by; it is skipped
    for strategies that rank without scores (random, slice-uniform). In correction mode
    the display scores are kept too: the quality ratings the corrections teach.
    """
    if wanted <= 0:
        return True
    strategy = get_strategy(session.strategy)
    if session.current_net() is not None and strategy.needs:
        session.rescore(for_display=oracle.correction_mode)
    suggestions: list[Suggestion] = session.suggest(wanted)
    for suggestion in suggestions:
        if suggestion.terms.get("pseudo_label") == 1.0:
            session.accept_pseudo(suggestion.item.case, slice_index=suggestion.item.slice_index)
        else:
            oracle.answer(suggestion.item)
    if "quality" in strategy.needs and session.current_net() is not None:
        _accept_pseudo_labels(session)
    return bool(suggestions)


def _accept_pseudo_labels(session: Session) -> None:
    """METHODS A: every prediction rated Acceptable joins training as a pseudo-label, unedited.

    It costs no boundary and is not counted as a labelled item: the table's items are
    the expert's. A rating is only as good as the corrections it learnt from, so a
    wrong one costs test Dice, which the curve shows.
    """
    for suggestion in session.pseudo_label_candidates():
        item = suggestion.item
        if item.class_id is None and not _is_labelled(session, item):
            session.accept_pseudo(item.case, slice_index=item.slice_index)


def _retrain(session: Session, seed: int) -> None:
    """Retrain with torch's global RNG seeded: the first round's fresh net is drawn from it,
    so every strategy run with the same seed starts from the same initial weights."""
    import torch

    torch.manual_seed(seed)
    session.retrain()


def _submitted_this_round(session: Session) -> int:
    """Items already answered under the active model: a round cut short by a crash."""
    version = session.model_version
    return sum(1 for e in session.project.events() if e.label_version is not None and e.model_version == version)


def _is_labelled(session: Session, region: QueryItem) -> bool:
    snapshot = session.project.current_labels(region.case)
    if snapshot is None:
        return False
    mask = snapshot.labelled if region.slice_index is None else snapshot.labelled[region.slice_index]
    return bool(mask.all())


def _check_same_split(expected: list | None, split: list) -> list:
    if expected is not None and split != expected:
        raise AlsegError("the test split differs between runs of the same seed; results would not compare")
    return split


# ------------------------------------------------------------------ the oracle


class _Oracle:
    """Answers a query item with its ground truth, through :meth:`Session.submit`."""

    def __init__(self, session: Session, correction_mode: bool) -> None:
        self.session = session
        self.correction_mode = correction_mode
        self._truth: dict[str, np.ndarray] = {}

    def truth(self, case: str) -> np.ndarray:
        """Ground truth ``(k, j, i)`` of a case, read once."""
        if case not in self._truth:
            truth = self.session.project.ground_truth(case)
            if truth is None:
                raise AlsegError(f"case {case!r} has no ground truth: the simulated oracle needs it")
            self._truth[case] = truth
        return self._truth[case]

    def answer(self, item: QueryItem) -> int:
        """Case → whole volume; slice → that slice; ROI → that class's mask on the slice.

        In correction mode (once a model exists) the prediction is prefilled and sent as
        ``original``, so the recorded effort is the boundary the oracle had to change.
        """
        truth = self.truth(item.case)
        labels = truth if item.slice_index is None else truth[item.slice_index]
        if item.class_id is not None:
            labels = np.where(labels == item.class_id, item.class_id, 0).astype(labels.dtype)
        original = None
        if self.correction_mode and self.session.current_net() is not None:
            original = self.session.predict_labels(item.case, item.slice_index)
        return self.session.submit(item.case, labels, kind=CORRECTED if original is not None else MANUAL,
                                   seconds_active=0.0, slice_index=item.slice_index,
                                   class_id=item.class_id, original=original)


# ------------------------------------------------------------------ measuring a round


@dataclass(frozen=True)
class _PoolTotals:
    """The pool (every non-test case or slice) and what labelling all of it would take.

    ``boundary_mm``: Σ over pool slices and classes 1..C-1 of the ground-truth outline
    (:func:`~napari_alseg.effort.boundary_length`), i.e. every structure traced on its
    own: the 100 % of the papers' "% of total boundary length". ``n_items``: pool items
    in the strategy's unit (cases, slices, or ROIs = (slice, class) pairs the slice
    ranges allow), the 100 % of "% of data" (METHODS B).
    """

    regions: tuple[QueryItem, ...]
    boundary_mm: float
    n_items: int

    @classmethod
    def of(cls, session: Session) -> _PoolTotals:
        project = session.project
        held_out = set(project.validation_items())
        regions = []
        boundary_mm = 0.0
        n_items = 0
        roi = session.pool_granularity == "roi"
        for record in project.cases:
            if (record.name, None) in held_out:
                continue
            truth = project.ground_truth(record.name)
            spacing = session.in_plane_spacing(record.name)
            slices = [n for n in range(record.n_slices) if (record.name, n) not in held_out]
            for n in slices:
                boundary_mm += sum(boundary_length(truth[n] == c, spacing).mm
                                   for c in range(1, project.n_classes))
            if project.granularity == "case":
                regions.append(QueryItem(record.name))
            else:
                regions += [QueryItem(record.name, n) for n in slices]
            n_items += _roi_count(project, record.name, slices) if roi else 0
        return cls(tuple(regions), boundary_mm, n_items if roi else len(regions))


def _roi_count(project: Project, case: str, slices: list[int]) -> int:
    """(slice, class) pairs of ``slices`` inside each class's slice range (all slices without one)."""
    ranges = project.weak_annotations(case)
    count = 0
    for class_id in range(1, project.n_classes):
        weak = ranges.get(class_id)
        count += len(slices) if weak is None else sum(weak.first_slice <= n <= weak.last_slice for n in slices)
    return count


def _round_row(session: Session, oracle: _Oracle, totals: _PoolTotals, strategy: str, seed: int, round_index: int,
               wall_seconds: float) -> dict[str, str]:
    """One CSV row: cumulative effort from the project's events, Dice on test and pool."""
    project = session.project
    events = [e for e in project.events() if e.label_version is not None]
    boundary_px = sum(e.boundary_px or 0.0 for e in events)
    boundary_mm = sum(e.boundary_mm or 0.0 for e in events)
    items = {(e.case, e.slice_index, e.class_id) for e in events if e.kind != PSEUDO_ACCEPTED}
    metrics = project.checkpoints()[-1].metrics
    row = {
        "strategy": strategy, "seed": seed, "round": round_index, "labelled_items": len(items),
        "labelled_slices": _labelled_slices(project),
        "effort_items_pct": 100.0 * len(items) / max(totals.n_items, 1),
        "effort_boundary_px": boundary_px, "effort_boundary_mm": boundary_mm,
        "effort_boundary_pct": 100.0 * boundary_mm / totals.boundary_mm if totals.boundary_mm else math.nan,
        "effort_seconds_est": SECONDS_PER_PX * boundary_px,
        "dice_test": metrics.get("val_dice", math.nan),
    }
    for name in project.class_names[1:]:
        row[_dice_column(name)] = metrics.get(f"val_dice_{name}", math.nan)
    row.update(dice_pool=_pool_dice(session, oracle, totals), wall_seconds=wall_seconds,
               model_version=session.model_version)
    return {key: _format(value) for key, value in row.items()}


def _labelled_slices(project: Project) -> int:
    """Distinct slices holding any label (a labelled case counts all its slices)."""
    slices = set()
    for record in project.cases:
        for item in project.labelled_items(record.name):
            indices = range(record.n_slices) if item.slice_index is None else [item.slice_index]
            slices.update((record.name, n) for n in indices)
    return len(slices)


def _pool_dice(session: Session, oracle: _Oracle, totals: _PoolTotals) -> float:
    """Mean class Dice of the predictions on the pool not yet fully labelled (NaN when none).

    Predictions keep the labels given so far (what a prefill would show), so partially
    labelled slices count what is still left to fix. Per class averaged over regions,
    then over classes, as the test Dice is.
    """
    per_region = []
    for region in totals.regions:
        if _is_labelled(session, region):
            continue
        truth = oracle.truth(region.case)
        truth = truth if region.slice_index is None else truth[region.slice_index]
        prediction = session.predict_labels(region.case, region.slice_index)
        per_region.append(dice_per_class(prediction, truth, session.project.n_classes))
    return _class_mean(per_region)


def _class_mean(per_region: list[np.ndarray]) -> float:
    if not per_region:
        return math.nan
    return mean_dice(class_means(per_region))


def _dice_column(class_name: str) -> str:
    return "dice_test_" + "_".join(class_name.split())


def _columns(project: Project) -> tuple[str, ...]:
    return (*BASE_COLUMNS, *(_dice_column(name) for name in project.class_names[1:]), *TAIL_COLUMNS)


def _format(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value)


# ------------------------------------------------------------------ files


class _RoundsCsv:
    """``rounds.csv``, appended row by row and fsynced; knows which rows exist already."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: tuple[str, ...] = ()
        self._done: set[tuple[str, int, int]] = set()
        if path.exists() and path.stat().st_size:
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = tuple(reader.fieldnames or ())
                self._done = {(r["strategy"], int(r["seed"]), int(r["round"])) for r in reader}

    def use_columns(self, columns: tuple[str, ...]) -> None:
        """Write the header of a new file, or check an existing file's header matches."""
        if self.columns and self.columns != columns:
            raise AlsegError(f"{self.path}: written with other columns (another dataset?); "
                             "choose another output folder")
        if not self.columns:
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(columns)
                _sync(handle)
            self.columns = columns

    def has(self, strategy: str, seed: int, round_index: int) -> bool:
        return (strategy, seed, round_index) in self._done

    def append(self, row: dict[str, str], progress: Progress | None) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(row)
            _sync(handle)
        self._done.add((row["strategy"], int(row["seed"]), int(row["round"])))
        if progress is not None:
            progress(row)


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _check_settings(run: _Run) -> None:
    """Refuse to resume into results made with other settings (they would not compare)."""
    settings = {"dataset": str(run.dataset_dir), "batch_size": run.batch_size,
                "initial_items": run.initial_items, "correction_mode": run.correction_mode,
                "test_fraction": run.test_fraction,
                "train_config": {k: v for k, v in asdict(run.train_config).items() if k != "seed"}}
    settings = json.loads(json.dumps(settings))
    path = run.out_dir / SETTINGS_JSON
    if path.exists():
        stored = json.loads(path.read_text())
        changed = sorted(key for key in settings if stored.get(key) != settings[key])
        if changed:
            raise AlsegError(f"{run.out_dir}: holds a simulation with other settings ({', '.join(changed)}); "
                             "choose another output folder")
        return
    path.write_text(json.dumps(settings, indent=2))




# ------------------------------------------------------------------ report


@dataclass(frozen=True)
class Curve:
    """One strategy's rounds, averaged over seeds: ``mean[column]`` and ``sd[column]`` ``(R,)``.

    ``sd`` is the sample standard deviation over seeds (0 with a single seed).
    """

    strategy: str
    rounds: np.ndarray
    n_seeds: int
    mean: dict[str, np.ndarray]
    sd: dict[str, np.ndarray]


@dataclass(frozen=True)
class Reached:
    """Where a mean curve first reaches a Dice target, linearly interpolated between rounds."""

    round: float
    boundary_mm: float
    boundary_pct: float
    labelled_items: float
    items_pct: float
    labelled_slices: float


CURVE_COLUMNS = ("dice_test", "effort_boundary_mm", "effort_boundary_pct", "labelled_items", "effort_items_pct",
                 "labelled_slices")


def read_rounds(path: str | os.PathLike) -> list[dict]:
    """``rounds.csv`` as dicts: strategy and model_version as text, seed and round as int, the rest float."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    text = {"strategy", "model_version"}
    return [{key: value if key in text else int(value) if key in ("seed", "round") else float(value)
             for key, value in row.items()} for row in rows]


def mean_curves(rows: Iterable[dict]) -> dict[str, Curve]:
    """Per strategy (full-data excluded), each round's columns averaged over the seeds that ran it."""
    by_strategy: dict[str, dict[int, list[dict]]] = {}
    for row in rows:
        if row["strategy"] != FULL_DATA:
            by_strategy.setdefault(row["strategy"], {}).setdefault(row["round"], []).append(row)
    curves = {}
    for strategy, by_round in by_strategy.items():
        rounds = np.array(sorted(by_round))
        values = {c: [np.array([r[c] for r in by_round[i]], float) for i in rounds] for c in CURVE_COLUMNS}
        curves[strategy] = Curve(
            strategy, rounds, max(len(v) for v in by_round.values()),
            {c: np.array([v.mean() for v in values[c]]) for c in CURVE_COLUMNS},
            {c: np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values[c]]) for c in CURVE_COLUMNS})
    return curves


def full_data_dice(rows: Iterable[dict]) -> float:
    """Mean test Dice over seeds of the full-data reference with the largest budget (NaN without one).

    A rerun with more rounds adds a reference trained for the longer budget
    (``rounds × steps``); the shorter one would flatter every curve, so it is not mixed in.
    """
    reference = [row for row in rows if row["strategy"] == FULL_DATA and math.isfinite(row["dice_test"])]
    if not reference:
        return math.nan
    budget = max(row["round"] for row in reference)
    return float(np.mean([row["dice_test"] for row in reference if row["round"] == budget]))


def effort_to_reach(curve: Curve, target: float) -> Reached | None:
    """The first crossing of ``target`` by the mean Dice curve, or None when never reached.

    Between two rounds effort is interpolated linearly in Dice; reached at round 1
    gives round 1's effort (no curve exists before the first model).
    """
    dice = curve.mean["dice_test"]
    hits = np.flatnonzero(dice >= target)
    if not hits.size:
        return None
    index = int(hits[0])
    if index == 0:
        fraction, before = 0.0, 0
    else:
        before = index - 1
        fraction = float((target - dice[before]) / (dice[index] - dice[before]))

    def at(column: str) -> float:
        values = curve.mean[column]
        return float(values[before] + fraction * (values[index] - values[before]))

    return Reached(float(curve.rounds[before] + fraction * (curve.rounds[index] - curve.rounds[before])),
                   at("effort_boundary_mm"), at("effort_boundary_pct"), at("labelled_items"),
                   at("effort_items_pct"), at("labelled_slices"))


def baseline_strategy(curves: dict[str, Curve]) -> str:
    """The random baseline ratios refer to: random ROIs (METHODS E) when run, else random."""
    return "random-roi" if "random-roi" in curves else "random"


EQUAL_EFFORT_PCT = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0)


def dice_at_effort(curve: Curve, boundary_pct: float) -> float:
    """Mean test Dice at ``boundary_pct`` % of the total boundary, linear between rounds.

    NaN before the first round's effort or beyond the last: the curve says nothing there.
    """
    effort, dice = curve.mean["effort_boundary_pct"], curve.mean["dice_test"]
    order = np.argsort(effort, kind="stable")
    effort, dice = effort[order], dice[order]
    if not effort.size or boundary_pct < effort[0] or boundary_pct > effort[-1]:
        return math.nan
    return float(np.interp(boundary_pct, effort, dice))


def effort_table(curves: dict[str, Curve], full_dice: float) -> list[dict[str, str]]:
    """The papers' table: per target and strategy, effort to reach it and its ratio to random."""
    targets = [(f"{fraction:.0%} of full-data Dice", fraction * full_dice) for fraction in RELATIVE_TARGETS]
    targets += [(f"Dice {value:g}", value) for value in ABSOLUTE_TARGETS]
    table = []
    for label, value in targets:
        reached = {name: effort_to_reach(curve, value) if math.isfinite(value) else None
                   for name, curve in curves.items()}
        baseline = reached.get(baseline_strategy(curves))
        for name, curve in curves.items():
            hit = reached[name]
            row = {"target": label, "dice_target": f"{value:.3f}", "strategy": name}
            if not math.isfinite(value):
                row["note"] = "no full-data run"
            elif hit is None:
                row["note"] = f"not reached in {int(curve.rounds.max())} rounds"
            else:
                row.update(round=f"{hit.round:.2f}", boundary_mm=f"{hit.boundary_mm:.0f}",
                           boundary_pct=f"{hit.boundary_pct:.1f}", labelled_items=f"{hit.labelled_items:.1f}",
                           items_pct=f"{hit.items_pct:.1f}",
                           labelled_slices=f"{hit.labelled_slices:.1f}",
                           ratio_to_random=f"{hit.boundary_pct / baseline.boundary_pct:.2f}"
                           if baseline is not None and baseline.boundary_pct > 0 else "")
            table.append(row)
    return table


TABLE_COLUMNS = ("target", "dice_target", "strategy", "round", "boundary_mm", "boundary_pct",
                 "labelled_items", "items_pct", "labelled_slices", "ratio_to_random", "note")


def write_report(out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """From ``out_dir/rounds.csv``: the plot, and the effort table as Markdown and CSV."""
    out_dir = Path(out_dir)
    rows = read_rounds(out_dir / ROUNDS_CSV)
    curves = mean_curves(rows)
    full_dice = full_data_dice(rows)
    table = effort_table(curves, full_dice)
    with (out_dir / TABLE_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, TABLE_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(table)
    (out_dir / TABLE_MD).write_text(_markdown(table, curves, full_dice))
    plot_curves(curves, full_dice, out_dir / PLOT_PNG)
    return out_dir / PLOT_PNG, out_dir / TABLE_MD, out_dir / TABLE_CSV


def _markdown(table: list[dict[str, str]], curves: dict[str, Curve], full_dice: float) -> str:
    lines = [
        "# Effort to reach a Dice target",
        "",
        f"Full-data test Dice (mean over seeds): {full_dice:.3f}. Effort is the boundary traced "
        "(mm, and % of the total ground-truth boundary of the pool, every structure traced on its own); "
        "values are read off the seed-averaged curve, linearly interpolated between rounds. "
        "Labelled items are in the strategy's unit (case, slice or ROI); `% of pool` counts them "
        "against all pool items of that unit (METHODS B's \"% of data\"). "
        f"`× random` = boundary % / {baseline_strategy(curves)}'s boundary %.",
        "",
        "| target | strategy | boundary (mm) | % of total boundary | labelled items | % of pool "
        "| labelled slices | × random |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        if row.get("note"):
            lines.append(f"| {row['target']} ({row['dice_target']}) | {row['strategy']} | {row['note']} "
                         "|  |  |  |  |  |")
            continue
        lines.append(f"| {row['target']} ({row['dice_target']}) | {row['strategy']} | {row['boundary_mm']} | "
                     f"{row['boundary_pct']} | {row['labelled_items']} | {row['items_pct']} | "
                     f"{row['labelled_slices']} | {row['ratio_to_random'] or '—'} |")
    lines += ["", "## Test Dice at equal boundary effort", "",
              "Each seed-averaged curve read at the same share of the total boundary (linear between "
              "rounds; blank outside the effort the strategy spent). Less sensitive to round-to-round "
              "noise than the first crossing of a target.", "",
              "| strategy | " + " | ".join(f"{pct:g} %" for pct in EQUAL_EFFORT_PCT) + " |",
              "|---|" + "---|" * len(EQUAL_EFFORT_PCT)]
    for name, curve in curves.items():
        values = [dice_at_effort(curve, pct) for pct in EQUAL_EFFORT_PCT]
        lines.append(f"| {name} | " + " | ".join("" if math.isnan(v) else f"{v:.3f}" for v in values) + " |")
    lines += ["", "## Last round", "",
              "| strategy | rounds | seeds | test Dice (mean ± sd) | boundary (mm) | % of total boundary "
              "| labelled items |",
              "|---|---|---|---|---|---|---|"]
    for name, curve in curves.items():
        mean, sd = curve.mean, curve.sd
        lines.append(f"| {name} | {int(curve.rounds[-1])} | {curve.n_seeds} | "
                     f"{mean['dice_test'][-1]:.3f} ± {sd['dice_test'][-1]:.3f} | "
                     f"{mean['effort_boundary_mm'][-1]:.0f} | {mean['effort_boundary_pct'][-1]:.1f} | "
                     f"{mean['labelled_items'][-1]:.1f} |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, Curve], full_dice: float, path: Path) -> Path:
    """Test Dice vs boundary effort (mm) and vs labelled items, mean ± sd over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    for axis, column, label in ((axes[0], "effort_boundary_mm", "boundary traced (mm)"),
                                (axes[1], "labelled_items", "labelled items (case, slice or ROI)")):
        for index, curve in enumerate(curves.values()):
            x, y, sd = curve.mean[column], curve.mean["dice_test"], curve.sd["dice_test"]
            style = "-" if index < 10 else "--"  # the colour cycle has 10 colours: dashes tell the rest apart
            (line,) = axis.plot(x, y, style, marker="o", markersize=3, label=curve.strategy)
            axis.fill_between(x, y - sd, y + sd, color=line.get_color(), alpha=0.2, linewidth=0)
        if math.isfinite(full_dice):
            axis.axhline(full_dice, color="black", linestyle="--", linewidth=1, label="full data")
            axis.axhline(0.9 * full_dice, color="grey", linestyle=":", linewidth=1, label="90 % of full data")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test Dice (mean over classes)")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=120)
    return path
