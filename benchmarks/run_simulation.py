"""The standard simulation benchmark: every query engine against random, on the sample data.

A simulated annotator answers from ground truth (:mod:`napari_alseg.simulation`); the
result is compared with the papers' figures in ``benchmarks/RESULTS.md``.

Standard (default; about 25 min on a quiet 2-core CPU, no GPU, the two sets in parallel,
one process each): the comparisons METHODS makes its claims on.
brain-stack with its slices downsampled 2x in-plane (92 x 88 px of 2 x 2 mm, 36 slices),
random ROIs vs dice-per-effort, 10 ROIs a round, 13 rounds (every ROI) of 150 steps at a
learning rate of 1e-2 (a round's rate decays to 0), no early stopping (each round's weights are kept);
tumour-cases with 16 cases of size 40, random vs MC dropout (top 0.1 %), 2 cases a round,
6 rounds of 40 steps at 3e-3 with training's default early stopping. One seed.
``--all`` adds every other engine to the same runs (resumes them; about 45 min more at
``--rounds 8``): slice-uniform, entropy, entropy-mc and (2 whole slices a round) random and gradient-vae on
brain-stack; mc-dropout-sum, margins, entropy, representative, non-similar,
quality-threshold and bootstrap on tumour-cases, and random vs quality-threshold correcting
the prediction (METHODS A: Acceptable ratings become pseudo-labels).
``--full``: the sets at full resolution, 3 seeds, more rounds and steps, every engine
(meant for a GPU; CUDA is used when present).

Strategies that query whole slices or cases (random here) and ROI strategies get their
own batch size (a group each), because an ROI is a fraction of a slice's outline. Each
group is its own resumable simulation; their rows are merged into
``<out>/<set>/rounds.csv``, from which the plot and effort table are made.

    OMP_NUM_THREADS=1 python benchmarks/run_simulation.py [--all | --full] [--only brain-stack] [--seeds 0 1 2]
        [--rounds R] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_alseg.model import TrainConfig
from napari_alseg.nifti import load_volume, save_volume
from napari_alseg.samples import generate_sample, sample_dir
from napari_alseg.simulation import FULL_DATA, ROUNDS_CSV, SETTINGS_JSON, TABLE_MD, simulate, write_report


@dataclass(frozen=True)
class Group:
    """Strategies simulated together: same items per round (their own unit)."""

    name: str
    strategies: tuple[str, ...]
    batch_size: int
    correction_mode: bool = False


@dataclass(frozen=True)
class Plan:
    """One sample set's benchmark: data options, schedule and strategy groups."""

    sample: str
    groups: tuple[Group, ...]
    rounds: int
    seeds: tuple[int, ...]
    steps: int
    train_batch: int
    learning_rate: float = 3e-3
    early_stopping: bool = False
    downsample: int = 1
    n_cases: int | None = None
    size: int | None = None


STANDARD = (
    Plan("brain-stack", (Group("rois", ("random-roi", "dice-per-effort"), 10),),
         rounds=13, seeds=(0,), steps=150, train_batch=4, learning_rate=1e-2, downsample=2),
    Plan("tumour-cases", (Group("cases", ("random", "mc-dropout-top"), 2),),
         rounds=6, seeds=(0,), steps=40, train_batch=2, early_stopping=True, n_cases=16, size=40),
)
# Every other engine, on the same data and schedule as STANDARD (so its runs are reused).
OTHERS = {
    "brain-stack": (Group("rois", ("slice-uniform", "entropy", "entropy-mc"), 10),
                    Group("slices", ("random", "gradient-vae"), 2)),
    "tumour-cases": (Group("cases", ("mc-dropout-sum", "margins", "entropy", "representative", "non-similar",
                                     "quality-threshold", "bootstrap"), 2),
                     Group("corrections", ("random", "quality-threshold"), 2, correction_mode=True)),
}
FULL = (
    Plan("brain-stack", (Group("rois", ("random-roi", "dice-per-effort", "slice-uniform", "entropy", "entropy-mc"), 10),
                         Group("slices", ("random", "gradient-vae"), 2)),
         rounds=12, seeds=(0, 1, 2), steps=300, train_batch=4, learning_rate=1e-2),
    Plan("tumour-cases", (Group("cases", ("random", "mc-dropout-top", "mc-dropout-sum", "margins", "entropy",
                                          "bootstrap", "representative", "non-similar", "quality-threshold"), 4),),
         rounds=10, seeds=(0, 1, 2), steps=100, train_batch=2, early_stopping=True, n_cases=40, size=90),
)


def with_others(plan: Plan) -> Plan:
    """``plan`` plus :data:`OTHERS`: extra strategies join a group of the same name."""
    groups = {group.name: group for group in plan.groups}
    for extra in OTHERS[plan.sample]:
        known = groups.get(extra.name)
        groups[extra.name] = extra if known is None else replace(known, strategies=known.strategies + extra.strategies)
    return replace(plan, groups=tuple(groups.values()))


def dataset(plan: Plan, data_dir: Path) -> Path:
    """The set's folder: the cached sample, a generated variant, or a downsampled copy."""
    if plan.sample == "tumour-cases" and plan.n_cases is not None:
        folder = data_dir / f"tumour-cases-{plan.n_cases}x{plan.size}"
        if not (folder / "tumour-cases" / "dataset.json").exists():
            generate_sample("tumour-cases", folder, n_cases=plan.n_cases, size=plan.size)
        return folder / "tumour-cases"
    source = sample_dir(plan.sample)
    return source if plan.downsample == 1 else downsampled_stack(source, data_dir, plan.downsample)


def downsampled_stack(source: Path, data_dir: Path, factor: int) -> Path:
    """brain-stack with each slice shrunk ``factor``x in-plane: images block-averaged,
    labels sampled at each block's first pixel (no new classes); pixel size grows to match."""
    folder = data_dir / f"brain-stack-down{factor}"
    if (folder / "dataset.json").exists():
        return folder
    (folder / "stack").mkdir(parents=True, exist_ok=True)
    image = load_volume(source / "stack" / "stack_t1.nii.gz", as_label=False)
    labels = load_volume(source / "stack" / "stack_seg.nii.gz", as_label=True)
    k, j, i = image.shape
    j, i = j // factor * factor, i // factor * factor
    small = image.data[:, :j, :i].reshape(k, j // factor, factor, i // factor, factor).mean(axis=(2, 4))
    affine = image.affine.copy()
    affine[:3, :2] *= factor
    save_volume(folder / "stack" / "stack_t1.nii.gz", small.astype(np.float32), affine)
    save_volume(folder / "stack" / "stack_seg.nii.gz", labels.data[:, :j:factor, :i:factor], affine, is_label=True)
    for name in ("classes.json", "dataset.json"):
        shutil.copy(source / name, folder / name)
    return folder


def run_plan(plan: Plan, out_dir: Path, data_dir: Path) -> Path:
    """Simulate every group, merge their rows and write the set's plot and table."""
    source = dataset(plan, data_dir)
    set_dir = out_dir / plan.sample
    config = TrainConfig(steps=plan.steps, batch_size=plan.train_batch, learning_rate=plan.learning_rate,
                         validation_fraction=0.2 if plan.early_stopping else 0.0)
    for index, group in enumerate(plan.groups):
        simulate(source, set_dir / "groups" / group.name, strategies=group.strategies, rounds=plan.rounds,
                 seeds=plan.seeds, batch_size=group.batch_size, initial_items=group.batch_size,
                 train_config=config, correction_mode=group.correction_mode, full_data=index == 0,
                 progress=show)
    # every group run so far, so a standard rerun keeps the --all strategies in the report
    merge_rounds(sorted((set_dir / "groups").glob(f"*/{ROUNDS_CSV}")), set_dir / ROUNDS_CSV)
    write_report(set_dir)
    return set_dir


def merge_rounds(paths: list[Path], target: Path) -> None:
    """One CSV of every group's rows; a correction-mode group's strategies are renamed
    ``<name> (correcting)`` so they are not averaged with the same strategy tracing."""
    rows, columns = [], None
    for path in paths:
        settings = json.loads((path.parent / SETTINGS_JSON).read_text())
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = columns or reader.fieldnames
            for row in reader:
                if settings["correction_mode"] and row["strategy"] != FULL_DATA:
                    row["strategy"] += " (correcting)"
                rows.append(row)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def show(row: dict[str, str]) -> None:
    print(f"{time.strftime('%H:%M:%S')} {row['strategy']} seed {row['seed']} round {row['round']}: "
          f"test Dice {float(row['dice_test']):.3f}, boundary {float(row['effort_boundary_mm']):.0f} mm "
          f"({float(row['effort_boundary_pct']):.1f} %), {row['labelled_items']} items, "
          f"{float(row['wall_seconds']):.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true",
                        help="also every other engine against random, on the standard data and schedule")
    parser.add_argument("--full", action="store_true", help="the bigger runs, every engine (GPU when present)")
    parser.add_argument("--only", choices=("brain-stack", "tumour-cases"), help="run one set")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="seeds to run instead of the plan's (a rerun with more seeds adds them)")
    parser.add_argument("--rounds", type=int, metavar="R",
                        help="rounds per run instead of the plan's (a rerun with more rounds extends the runs "
                             "and adds a full-data reference with the longer budget)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "alseg-simulation",
                        help="output folder; a rerun resumes it (default: %(default)s)")
    args = parser.parse_args()
    plans = FULL if args.full else tuple(with_others(p) for p in STANDARD) if args.all else STANDARD
    overrides = {"seeds": None if args.seeds is None else tuple(args.seeds), "rounds": args.rounds}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    plans = [replace(plan, **overrides) for plan in plans if args.only in (None, plan.sample)]
    out_dir = args.out / ("full" if args.full else "standard")
    for plan in plans:
        started = time.perf_counter()
        set_dir = run_plan(plan, out_dir, args.out / "data")
        print(f"{plan.sample}: {time.perf_counter() - started:.0f} s; table {set_dir / TABLE_MD}", flush=True)


if __name__ == "__main__":
    main()
