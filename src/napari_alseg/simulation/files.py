"""The simulation's files: names, the columns of ``rounds.csv``, appending rows durably, settings."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..domain import SIMULATED_ANNOTATORS, TRACE_ANNOTATOR, SimulatedAnnotator
from ..errors import AlsegError
from ..store.export import csv_cell

if TYPE_CHECKING:
    from ..model import TrainConfig

# The oracle spends no real time, so seconds are estimated from the traced boundary at a
# fixed tracing speed of 10 px/s (0.1 s per px), a round figure for outlining with a
# mouse or pen in a viewer; not measured. Only the effort_seconds_est column uses it.
SECONDS_PER_PX = 0.1
TEST_FRACTION = 0.2
FULL_DATA = "full-data"
ANNOTATOR = "oracle"
ROUNDS_CSV = "rounds.csv"
REFERENCE_CSV = "reference.csv"  # the full-data reference's test Dice after each chunk of training
SETTINGS_JSON = "settings.json"
PLOT_PNG = "dice_vs_effort.png"
TABLE_MD = "effort_table.md"
TABLE_CSV = "effort_table.csv"
RELATIVE_TARGETS = (0.90, 0.95)  # fractions of the full-data Dice (docs/METHODS.md §10.5)
ABSOLUTE_TARGETS = (0.5, 0.7)  # plain Dice values, meaningful without a full-data run
BASE_COLUMNS = (
    "strategy", "seed", "round", "labelled_items", "labelled_slices", "effort_items_pct",
    "effort_boundary_px", "effort_boundary_mm", "effort_boundary_pct", "effort_seconds_est",
    "dice_test",
)
TAIL_COLUMNS = ("dice_pool", "wall_seconds", "model_version")
TEXT_COLUMNS = ("strategy", "model_version")  # cells of words, neutralised against formulas (csv_cell)
REFERENCE_COLUMNS = ("seed", "budget_rounds", "chunk", "dice_test", "spread_last", "converged", "wall_seconds")
# The reference trains in chunks of one round's budget (the schedule of an active-learning run)
# and is converged when its test Dice over the last CONVERGENCE_WINDOW share of chunks (at
# least 2) moves by at most CONVERGENCE_TOLERANCE; it trains at least ``rounds`` chunks and,
# while not converged, up to REFERENCE_MAX_FACTOR times as many.
CONVERGENCE_TOLERANCE = 0.02
CONVERGENCE_WINDOW = 1 / 3
REFERENCE_MAX_FACTOR = 2

Progress = Callable[[dict[str, str]], None]


@dataclass(frozen=True)
class SimulationRun:
    """The fixed settings of one simulation, shared by every (strategy, seed) run."""

    dataset_dir: Path
    out_dir: Path
    rounds: int
    batch_size: int
    initial_items: int
    train_config: TrainConfig
    correction_mode: bool
    test_fraction: float
    annotator: SimulatedAnnotator = TRACE_ANNOTATOR


def check_annotator(annotator: str) -> SimulatedAnnotator:
    """The simulated annotator named ``annotator``; one-line AlsegError for one that does not exist."""
    if annotator not in SIMULATED_ANNOTATORS:
        raise AlsegError(f"unknown simulated annotator {annotator!r}; valid: {', '.join(SIMULATED_ANNOTATORS)}")
    return SimulatedAnnotator(annotator)


class RoundsCsv:
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
                sync(handle)
            self.columns = columns

    def has(self, strategy: str, seed: int, round_index: int) -> bool:
        return (strategy, seed, round_index) in self._done

    def append(self, row: dict[str, str], progress: Progress | None) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.columns).writerow(text_cells(row, TEXT_COLUMNS))
            sync(handle)
        self._done.add((row["strategy"], int(row["seed"]), int(row["round"])))
        if progress is not None:
            progress(row)


class ReferenceCsv:
    """``reference.csv``: one row per chunk of the full-data reference's training, appended and
    fsynced; a chunk already there (a resumed run) is not written twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: set[tuple[int, int, int]] = set()
        if path.exists() and path.stat().st_size:
            self._done = {(int(r["seed"]), int(r["budget_rounds"]), int(r["chunk"])) for r in read_reference(path)}

    def append(self, row: dict[str, float | str]) -> None:
        key = (int(row["seed"]), int(row["budget_rounds"]), int(row["chunk"]))
        if key in self._done:
            return
        new = not (self.path.exists() and self.path.stat().st_size)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, REFERENCE_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            sync(handle)
        self._done.add(key)


def text_cells(row: dict, columns: tuple[str, ...]) -> dict:
    """``row`` with its text ``columns`` made safe for a spreadsheet (:func:`csv_cell`: a leading
    ``'`` where a cell starts like a formula); numbers are left as written."""
    return {key: csv_cell(value) if key in columns else value for key, value in row.items()}


def read_reference(path: Path) -> list[dict[str, str]]:
    """The rows of ``reference.csv`` as text ([] when there is none)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def convergence_window(rounds: int) -> int:
    """How many last chunks must agree: :data:`CONVERGENCE_WINDOW` of ``rounds``, at least 2."""
    return max(2, math.ceil(CONVERGENCE_WINDOW * rounds))


def last_spread(curve: list[float], window: int) -> float:
    """max - min of the last ``window`` values of ``curve`` (NaN when fewer, or any is NaN)."""
    tail = curve[-window:]
    if len(tail) < window or not all(math.isfinite(v) for v in tail):
        return math.nan
    return max(tail) - min(tail)


def sync(handle: IO[str]) -> None:
    """Flush ``handle`` and fsync its file: a row written is a row kept."""
    handle.flush()
    os.fsync(handle.fileno())


def check_settings(run: SimulationRun) -> None:
    """Refuse to resume into results made with other settings (they would not compare)."""
    settings = {"dataset": str(run.dataset_dir), "batch_size": run.batch_size,
                "initial_items": run.initial_items, "correction_mode": run.correction_mode,
                "test_fraction": run.test_fraction,
                **({"annotator": run.annotator} if run.annotator != TRACE_ANNOTATOR else {}),
                "train_config": {k: v for k, v in asdict(run.train_config).items() if k != "seed"}}
    keep_settings(run.out_dir / SETTINGS_JSON, settings, "a simulation")


def keep_settings(path: Path, settings: dict, what: str) -> None:
    """Write ``settings`` (JSON) to ``path`` the first time; later, refuse in one line when they
    differ from those kept (``what``: the results the folder holds, for the message)."""
    settings = json.loads(json.dumps(settings))
    if path.exists():
        stored = json.loads(path.read_text())
        changed = sorted(key for key in settings if stored.get(key) != settings[key])
        if changed:
            raise AlsegError(f"{path.parent}: holds {what} with other settings ({', '.join(changed)}); "
                             "choose another output folder")
        return
    path.write_text(json.dumps(settings, indent=2))


def clock_text(seconds: float) -> str:
    """``m:ss`` of a duration, for progress lines."""
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
