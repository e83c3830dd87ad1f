"""The cohort benchmark's report: seconds to finish the cohort per engine and workflow, as a
share of tracing every item, with what each finished item scored (``cohort.md``, a plot)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cohort_files import ACCEPTED, CLICKED, CORRECTED_HOW, ITEMS_CSV, NO_ENGINE, ROUNDS_CSV, TRACE, TRACED, WORKFLOWS
from ..pricing import SecondsCosts

REPORT_MD = "cohort.md"
PLOT_PNG = "cohort_seconds.png"
HOWS = (TRACED, CORRECTED_HOW, CLICKED, ACCEPTED)


@dataclass(frozen=True)
class Outcome:
    """One (engine, workflow) over seeds: ``percent`` of tracing every item per seed, the same
    with the changed boundary charged (``percent_changed``), hours per seed, items per way
    finished (mean over seeds), accepted pseudo-labels and how many were errors (summed),
    and the finished items' Dice (mean and lowest over all seeds' items)."""

    engine: str
    workflow: str
    percent: tuple[float, ...]
    percent_changed: tuple[float, ...]
    hours: tuple[float, ...]
    hows: dict[str, float]
    accepted: int
    errors: int
    mean_dice: float
    lowest_dice: float


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def traced_per_seed(rows: list[dict[str, str]]) -> dict[int, float]:
    """Seconds of the trace workflow per seed: each seed's 100 %."""
    traced: dict[int, float] = defaultdict(float)
    for row in rows:
        if row["workflow"] == TRACE:
            traced[int(row["seed"])] += float(row["seconds"])
    return traced


def outcomes(rows: list[dict[str, str]]) -> list[Outcome]:
    """Every (engine, workflow) of ``cohort_items.csv`` rows; seeds without a trace total are left out."""
    traced = traced_per_seed(rows)
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if int(row["seed"]) in traced:
            groups[(row["engine"], row["workflow"])].append(row)
    result = []
    for (engine, workflow), members in sorted(groups.items(), key=lambda g: (g[0][0] != NO_ENGINE, g[0][0],
                                                                           WORKFLOWS.index(g[0][1]))):
        by_seed: dict[int, list[dict[str, str]]] = defaultdict(list)
        for row in members:
            by_seed[int(row["seed"])].append(row)
        seeds = sorted(by_seed)
        seconds = [sum(float(r["seconds"]) for r in by_seed[s]) for s in seeds]
        changed = [sum(float(r["seconds_changed"]) for r in by_seed[s]) for s in seeds]
        dice = np.array([float(r["final_dice"]) for r in members])
        result.append(Outcome(
            engine, workflow, tuple(100 * v / traced[s] for v, s in zip(seconds, seeds)),
            tuple(100 * v / traced[s] for v, s in zip(changed, seeds)), tuple(v / 3600 for v in seconds),
            {how: sum(r["how"] == how for r in members) / len(seeds) for how in HOWS},
            sum(r["how"] == ACCEPTED for r in members), sum(int(r["accept_error"]) for r in members),
            float(dice.mean()), float(dice.min())))
    return result


def write_cohort_report(out_dir: Path, costs: SecondsCosts) -> Path:
    """``cohort.md`` (the table, the test Dice per round, the cost model) and ``cohort_seconds.png``."""
    rows = read_csv(out_dir / ITEMS_CSV)
    table = outcomes(rows)
    lines = ["# Seconds to finish the cohort", "",
             "Each item of the pool finished: traced, corrected, clicked, or a pseudo-label accepted after "
             "review. Seconds as % of tracing every item (mean ± sd over seeds; `changed`: the same with every "
             "outline segment that moved charged as redrawn).", "",
             "| engine | workflow | seeds | % of tracing | % (changed) | hours | traced / corrected / clicked / "
             "accepted items | accepted errors | mean Dice | lowest Dice |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for o in table:
        hows = " / ".join(f"{o.hows[how]:.1f}" for how in HOWS)
        errors = f"{o.errors} of {o.accepted} ({100 * o.errors / o.accepted:.0f} %)" if o.accepted else "–"
        lines.append(f"| {o.engine} | {o.workflow} | {len(o.percent)} | {_spread(o.percent)} | "
                     f"{_spread(o.percent_changed)} | {_spread(o.hours, 2)} | {hows} | {errors} | "
                     f"{o.mean_dice:.3f} | {o.lowest_dice:.3f} |")
    lines += ["", "## Test Dice of the model after each round (mean over seeds)", "",
              *_round_table(read_csv(out_dir / ROUNDS_CSV)), "", "## Cost model (seconds)", "",
              *(f"- `{key}`: {value:g}" for key, value in costs.to_dict().items())]
    path = out_dir / REPORT_MD
    path.write_text("\n".join(lines) + "\n")
    if rows:
        plot_cohort(rows, out_dir / PLOT_PNG)
    return path


def _spread(values: tuple[float, ...], digits: int = 1) -> str:
    if not values:
        return "–"
    mean = float(np.mean(values))
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


def _round_table(rows: list[dict[str, str]]) -> list[str]:
    by_engine: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_engine[row["engine"]][int(row["round"])].append(float(row["dice_test"]))
    rounds = sorted({int(row["round"]) for row in rows})
    lines = ["| engine | " + " | ".join(f"round {r}" for r in rounds) + " |", "|---|" + "---|" * len(rounds)]
    for engine, per_round in sorted(by_engine.items()):
        cells = [f"{np.mean(per_round[r]):.3f}" if per_round.get(r) else "–" for r in rounds]
        lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    return lines


def plot_cohort(rows: list[dict[str, str]], path: Path) -> Path:
    """Cumulative seconds (% of tracing every item) against items finished (% of the cohort), in
    the order the work was done, one panel per engine: the mean over seeds and the min-max band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    engines = sorted({row["engine"] for row in rows} - {NO_ENGINE})
    figure = Figure(figsize=(4.2 * max(len(engines), 1), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(1, max(len(engines), 1), sharey=True))
    grid = np.linspace(0, 100, 101)
    traced = traced_per_seed(rows)
    for axis, engine in zip(axes, engines):
        for workflow in WORKFLOWS:
            source = NO_ENGINE if workflow == TRACE else engine
            curves = _cumulative(rows, traced, source, workflow, grid)
            if not curves:
                continue
            stack = np.array(curves)
            (line,) = axis.plot(grid, stack.mean(axis=0), label=workflow)
            axis.fill_between(grid, stack.min(axis=0), stack.max(axis=0), color=line.get_color(), alpha=0.2,
                              linewidth=0)
        axis.set_title(engine)
        axis.set_xlabel("cohort items finished (%)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("annotator seconds (% of tracing every item)")
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def _cumulative(rows: list[dict[str, str]], traced: dict[int, float], engine: str, workflow: str,
                grid: np.ndarray) -> list[np.ndarray]:
    """Per seed, the cumulative seconds of (engine, workflow) as % of ``traced[seed]``, on ``grid``."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        if row["engine"] == engine and row["workflow"] == workflow and int(row["seed"]) in traced:
            per_seed[int(row["seed"])].append(float(row["seconds"]))
    curves = []
    for seed, seconds in per_seed.items():
        x = np.linspace(0, 100, len(seconds) + 1)
        y = np.concatenate([[0.0], np.cumsum(seconds)]) * 100 / traced[seed]
        curves.append(np.interp(grid, x, y))
    return curves

