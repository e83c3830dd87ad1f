"""A benchmark plan: what ``benchmarks/run_simulation.py`` and ``alseg simulate --plan`` run.

A plan is the data, the schedule and groups of strategies that label the same number of
items per round (an ROI is a fraction of a slice's outline, so ROI strategies and whole-
slice ones get their own batch size). Each group is its own resumable :func:`simulate`
under ``<out>/groups/<name>``; their rows are merged into ``<out>/rounds.csv``, from which
the plot and tables are made. As JSON (:func:`save_plan` / :func:`load_plan`)::

    {"dataset": "brain-stack-72", "downsample": 2, "rounds": 10, "seeds": [0, 1],
     "steps": 50, "train_batch": null, "patch_size": null, "learning_rate": 0.01,
     "groups": [{"name": "rois", "strategies": ["random-roi", "random-foreground",
                 "dice-per-effort"], "batch_size": 10}]}

Keys left out take the defaults of :class:`BenchmarkPlan` and :class:`Group`.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain import CLICK_ANNOTATOR, TRACE_ANNOTATOR
from ..errors import AlsegError
from .datasets import resolve_dataset
from .files import FULL_DATA, REFERENCE_CSV, ROUNDS_CSV, SETTINGS_JSON, TEST_FRACTION, check_annotator, clock_text
from .loop import simulate
from .report import write_report

if TYPE_CHECKING:
    from ..model import TrainConfig

CORRECTING = " (correcting)"  # a correction-mode group's strategies, apart from the same ones tracing
CLICKING = " (clicking)"  # a clicking group's strategies, apart from the same ones tracing


@dataclass(frozen=True)
class Group:
    """Strategies simulated together: the same items per round (their own unit)."""

    name: str
    strategies: tuple[str, ...]
    batch_size: int
    initial_items: int | None = None  # round 1's items; None = batch_size
    correction_mode: bool = False
    annotator: str = TRACE_ANNOTATOR  # the simulated annotator: trace, or click first (CLICK_ANNOTATOR)


@dataclass(frozen=True)
class BenchmarkPlan:
    """One data set's benchmark.

    ``dataset``: a folder or sample / pool name (None: given on the command line);
    ``dataset_options``: a sample generator's options (e.g. ``{"size": 40}``);
    ``downsample``: shrink every volume this many times (2D stacks in-plane). Each round
    trains ``steps`` steps or ``minutes`` (neither: the project plan's budget) of
    ``train_batch`` crops of ``patch_size`` voxels (None: the project plan's), at peak
    ``learning_rate``; ``early_stopping`` holds out a fifth of the labelled items.
    ``full_data`` adds the reference to the first group.
    """

    groups: tuple[Group, ...]
    rounds: int
    seeds: tuple[int, ...] = (0,)
    dataset: str | None = None
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    downsample: int = 1
    steps: int | None = None
    minutes: float | None = None
    train_batch: int | None = None
    patch_size: tuple[int, ...] | None = None
    learning_rate: float | None = None
    early_stopping: bool = False
    full_data: bool = True
    test_fraction: float = TEST_FRACTION
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.groups:
            raise AlsegError("a plan needs at least one group of strategies")
        if self.rounds < 1 or not self.seeds:
            raise AlsegError("a plan needs rounds >= 1 and at least one seed")
        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise AlsegError(f"group names must differ, got {names}")

    def train_config(self) -> TrainConfig:
        from ..model import TrainConfig
        from ..plan import DEFAULT_LEARNING_RATE

        return TrainConfig(steps=self.steps, seconds=None if self.minutes is None else 60.0 * self.minutes,
                           batch_size=self.train_batch, patch_size=self.patch_size,
                           learning_rate=DEFAULT_LEARNING_RATE if self.learning_rate is None else self.learning_rate,
                           validation_fraction=0.2 if self.early_stopping else 0.0, device=self.device)

    def total_units(self) -> int:
        """Work in rounds: one per strategy, seed and round, plus ``rounds`` per reference."""
        runs = sum(len(group.strategies) for group in self.groups) * self.rounds
        return len(self.seeds) * (runs + (self.rounds if self.full_data else 0))


def plan_from_dict(data: Mapping[str, Any]) -> BenchmarkPlan:
    """A plan from its JSON form; unknown keys are a mistake (a typo must not pass silently)."""
    data = dict(data)
    known = {f.name for f in fields(BenchmarkPlan)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise AlsegError(f"plan: unknown keys {unknown}; valid: {sorted(known)}")
    group_keys = {f.name for f in fields(Group)}
    groups = []
    for entry in data.get("groups", []):
        bad = sorted(set(entry) - group_keys)
        if bad:
            raise AlsegError(f"plan: unknown group keys {bad}; valid: {sorted(group_keys)}")
        groups.append(Group(**{**entry, "strategies": tuple(entry.get("strategies", ()))}))
    data["groups"] = tuple(groups)
    if "seeds" in data:
        data["seeds"] = tuple(int(seed) for seed in data["seeds"])
    if data.get("patch_size") is not None:
        data["patch_size"] = tuple(int(size) for size in data["patch_size"])
    try:
        return BenchmarkPlan(**data)
    except TypeError as error:
        raise AlsegError(f"plan: {error}") from None


def plan_to_dict(plan: BenchmarkPlan) -> dict[str, Any]:
    data = asdict(plan)
    data["dataset_options"] = dict(plan.dataset_options)
    return data


def load_plan(path: str | Path) -> BenchmarkPlan:
    try:
        return plan_from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise AlsegError(f"plan {path}: {error}") from None


def save_plan(plan: BenchmarkPlan, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(plan_to_dict(plan), indent=2) + "\n")
    return path


class PlanProgress:
    """Rounds done and time left, one line per row written (the pace of this process only:
    rows resumed from an earlier run count as done but not towards the pace)."""

    def __init__(self, plan: BenchmarkPlan, done: int = 0, show: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.total = plan.total_units()
        self.done = done
        self._resumed = done
        self._started = time.perf_counter()
        self.show = show

    def __call__(self, row: Mapping[str, str]) -> None:
        self.done += self.plan.rounds if row["strategy"] == FULL_DATA else 1
        elapsed = time.perf_counter() - self._started
        pace = elapsed / max(self.done - self._resumed, 1)
        left = max(self.total - self.done, 0) * pace
        self.show(f"[{min(self.done, self.total)}/{self.total} rounds, {clock_text(elapsed)} elapsed, "
                  f"~{clock_text(left)} left] {row['strategy']} seed {row['seed']} round {row['round']}: "
                  f"test Dice {float(row['dice_test']):.3f}, boundary {float(row['effort_boundary_mm']):.0f} mm "
                  f"({float(row['effort_boundary_pct']):.1f} %), {row['labelled_items']} items, "
                  f"{float(row['wall_seconds']):.0f} s")


def run_plan(plan: BenchmarkPlan, out_dir: str | Path, *, dataset: str | Path | None = None,
             data_dir: str | Path | None = None, show: Callable[[str], None] = print) -> Path:
    """Simulate every group of ``plan`` into ``out_dir`` (a rerun resumes), merge their rows and
    write the report; returns ``out_dir``. ``dataset`` replaces the plan's (its
    ``dataset_options`` then do not apply); ``data_dir`` holds generated or downsampled
    data (default ``out_dir/data``). ``show`` gets one progress line per round: rounds
    done, time elapsed and left (:class:`PlanProgress`)."""
    out_dir = Path(out_dir)
    source = dataset if dataset is not None else plan.dataset
    if source is None:
        raise AlsegError("the plan names no dataset: give one")
    data_dir = Path(data_dir) if data_dir is not None else out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    own_data = dataset is None or str(dataset) == plan.dataset  # the generator options are the plan's data's
    folder = resolve_dataset(source, data_dir, options=plan.dataset_options if own_data else None,
                             downsample=plan.downsample, progress=show)
    progress = PlanProgress(plan, _units_done(plan, out_dir), show)
    config = plan.train_config()
    for index, group in enumerate(plan.groups):
        simulate(folder, out_dir / "groups" / group.name, strategies=group.strategies, rounds=plan.rounds,
                 seeds=plan.seeds, batch_size=group.batch_size, initial_items=group.initial_items or group.batch_size,
                 train_config=config, correction_mode=group.correction_mode, test_fraction=plan.test_fraction,
                 annotator=check_annotator(group.annotator),
                 full_data=plan.full_data and index == 0, progress=progress)
    # every group run so far, so a rerun of fewer groups keeps the others in the report
    merge_rounds(sorted((out_dir / "groups").glob(f"*/{ROUNDS_CSV}")), out_dir / ROUNDS_CSV)
    write_report(out_dir)
    return out_dir


def _units_done(plan: BenchmarkPlan, out_dir: Path) -> int:
    done = 0
    for group in plan.groups:
        path = out_dir / "groups" / group.name / ROUNDS_CSV
        if not path.exists():
            continue
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if int(row["seed"]) not in plan.seeds or int(row["round"]) > plan.rounds:
                    continue
                if row["strategy"] == FULL_DATA:  # the reference of this budget only
                    done += plan.rounds if int(row["round"]) == plan.rounds else 0
                else:
                    done += int(row["strategy"] in group.strategies)
    return done


def merge_rounds(paths: list[Path], target: Path) -> None:
    """One CSV of every group's rows (and one ``reference.csv``); a correction-mode group's
    strategies are renamed ``<name> (correcting)`` (a clicking group's ``<name> (clicking)``)
    so they are not averaged with the same strategy tracing."""
    rows, columns, chunks, chunk_columns = [], None, [], None
    for path in paths:
        settings = json.loads((path.parent / SETTINGS_JSON).read_text())
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = columns or reader.fieldnames
            for row in reader:
                if row["strategy"] != FULL_DATA:
                    row["strategy"] += CORRECTING if settings["correction_mode"] else ""
                    row["strategy"] += CLICKING if settings.get("annotator", TRACE_ANNOTATOR) == CLICK_ANNOTATOR else ""
                rows.append(row)
        reference = path.parent / REFERENCE_CSV
        if reference.exists():
            with reference.open(newline="") as handle:
                reader = csv.DictReader(handle)
                chunk_columns = chunk_columns or reader.fieldnames
                chunks += list(reader)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns or [])
        writer.writeheader()
        writer.writerows(rows)
    if chunk_columns:
        with (target.parent / REFERENCE_CSV).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, chunk_columns)
            writer.writeheader()
            writer.writerows(chunks)


def with_overrides(plan: BenchmarkPlan, **overrides: Any) -> BenchmarkPlan:
    """``plan`` with the given settings replaced (None = keep the plan's)."""
    return replace(plan, **{key: value for key, value in overrides.items() if value is not None})

