"""The report: mean curves over seeds, effort to reach a Dice target, the table and the plot."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import (
    ABSOLUTE_TARGETS, CONVERGENCE_TOLERANCE, FULL_DATA, PLOT_PNG, REFERENCE_CSV, RELATIVE_TARGETS, ROUNDS_CSV,
    TABLE_CSV, TABLE_MD, read_reference,
)
from .statistics import runs_by_seed, statistics_markdown


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


def reference_defects(rows: Iterable[dict], reference_rows: Iterable[dict] = ()) -> list[str]:
    """Why the full-data reference cannot be trusted as "full data", one line each ([] = none).

    Per seed, the reference with the largest budget is a defect when an active-learning run
    of that seed scored higher in any round (the reference is then not the best model, and
    targets relative to it flatter every curve), and when its ``reference.csv`` chunks
    never converged (or there are none: a reference from before chunks were recorded).
    """
    rows = list(rows)
    reference = [r for r in rows if r["strategy"] == FULL_DATA and math.isfinite(r["dice_test"])]
    if not reference:
        return []
    budget = max(r["round"] for r in reference)
    chunks = [r for r in reference_rows if int(r["budget_rounds"]) == budget]
    defects = []
    for ref in sorted((r for r in reference if r["round"] == budget), key=lambda r: r["seed"]):
        seed = ref["seed"]
        runs = [r for r in rows if r["strategy"] != FULL_DATA and r["seed"] == seed and math.isfinite(r["dice_test"])]
        best = max(runs, key=lambda r: r["dice_test"], default=None)
        if best is not None and best["dice_test"] > ref["dice_test"]:
            defects.append(f"DEFECT: seed {seed}: the full-data reference (test Dice {ref['dice_test']:.3f}) scores "
                           f"below {best['strategy']}'s round {best['round']} ({best['dice_test']:.3f}); it is not "
                           "the best model, so targets relative to it are not results.")
        own = sorted((r for r in chunks if int(r["seed"]) == seed), key=lambda r: int(r["chunk"]))
        if not own:
            defects.append(f"DEFECT: seed {seed}: the full-data reference has no per-chunk test Dice "
                           f"({REFERENCE_CSV}); its convergence is unchecked.")
        elif own[-1]["converged"] != "1":
            defects.append(f"DEFECT: seed {seed}: the full-data reference did not converge in {own[-1]['chunk']} "
                           f"chunks: its test Dice moved by {float(own[-1]['spread_last']):.3f} over its last chunks "
                           f"(tolerance {CONVERGENCE_TOLERANCE:g}).")
    return defects


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
    """The random baseline ratios refer to: random ROIs (docs/METHODS.md §2.1) when run, else random."""
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
    defects = reference_defects(rows, read_reference(out_dir / REFERENCE_CSV))
    with (out_dir / TABLE_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, TABLE_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(table)
    (out_dir / TABLE_MD).write_text(_markdown(table, curves, full_dice, defects, rows))
    plot_curves(curves, full_dice, out_dir / PLOT_PNG)
    return out_dir / PLOT_PNG, out_dir / TABLE_MD, out_dir / TABLE_CSV


def _markdown(table: list[dict[str, str]], curves: dict[str, Curve], full_dice: float,
              defects: Sequence[str] = (), rows: Sequence[dict] = ()) -> str:
    if not math.isfinite(full_dice):
        check = ["No full-data reference was run: only the absolute Dice targets apply."]
    elif defects:
        check = [f"**{line}**" for line in defects]
        check += ["", "The relative targets below (\"% of full-data Dice\") use this defective reference: "
                      "read them as a defect report, not as results."]
    else:
        check = [f"The full-data reference converged (test Dice flat within {CONVERGENCE_TOLERANCE:g} over its "
                 "last chunks) and scores at least as high as every active-learning round of its seed."]
    lines = [
        "# Effort to reach a Dice target",
        "",
        "## Reference check",
        "",
        *check,
        "",
        f"Full-data test Dice (mean over seeds): {full_dice:.3f}. Effort is the boundary traced "
        "(mm, and % of the total ground-truth boundary of the pool, every structure traced on its own); "
        "values are read off the seed-averaged curve, linearly interpolated between rounds. "
        "Labelled items are in the strategy's unit (case, slice or ROI); `% of pool` counts them "
        "against all pool items of that unit (the \"% of data\" of docs/METHODS.md §10.2). "
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
              "Each seed's own last round (seeds whose pools differ in size stop at different rounds).", "",
              "| strategy | rounds | seeds | test Dice (mean ± sd) | boundary (mm) | % of total boundary "
              "| labelled items |",
              "|---|---|---|---|---|---|---|"]
    for name, by_seed in runs_by_seed(rows).items():
        last = [seed_rows[-1] for seed_rows in by_seed.values()]

        def mean(column: str) -> float:
            return float(np.mean([row[column] for row in last]))

        dice = np.array([row["dice_test"] for row in last])
        spread = f" ± {dice.std(ddof=1):.3f}" if len(dice) > 1 else " (1 seed)"
        rounds = sorted({int(row["round"]) for row in last})
        rounds_text = str(rounds[0]) if len(rounds) == 1 else f"{rounds[0]}–{rounds[-1]}"
        lines.append(f"| {name} | {rounds_text} | "
                     f"{len(last)} | {dice.mean():.3f}{spread} | {mean('effort_boundary_mm'):.0f} | "
                     f"{mean('effort_boundary_pct'):.1f} | {mean('labelled_items'):.1f} |")
    statistics = statistics_markdown(rows)
    if statistics:
        lines += ["", *statistics]
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
