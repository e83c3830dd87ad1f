"""Per-seed statistics of a simulation: areas under the curves, intervals, paired tests.

Mean curves hide how much seeds disagree, and first crossings of a target are decided by
round-to-round noise. Here every figure is computed per seed first (each seed's own
rounds, its own full-data reference), then summarised as a mean with a 95 % t-interval
over seeds, and each engine is compared with each random baseline over the seeds both
ran (paired t-test), saying when a difference is not significant.

The headline is the area under test Dice vs boundary effort (% of the pool's total
boundary) up to a fixed effort: the smallest final effort of any run, so every run's
curve is measured over the same budget (step-wise: the Dice of the last model bought).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .curve_stats import (Interval, PairedComparison, area_under_curve, effort_to_fraction, mean_interval,
                          paired_comparison)
from .files import FULL_DATA

RANDOM_BASELINES = ("random", "random-roi", "random-foreground", "random-foreground-roi")
FRACTIONS = (0.9, 0.95)
EFFORT_COLUMN = "effort_boundary_pct"


@dataclass(frozen=True)
class SeedFigures:
    """One strategy's figures per seed (aligned with ``seeds``); NaN where a seed never got there."""

    strategy: str
    seeds: tuple[int, ...]
    area: np.ndarray
    last_dice: np.ndarray
    effort_to: dict[float, np.ndarray]


def runs_by_seed(rows: Iterable[dict]) -> dict[str, dict[int, list[dict]]]:
    """Active-learning rows per strategy and seed, each seed's rounds in order."""
    runs: dict[str, dict[int, list[dict]]] = {}
    for row in rows:
        if row["strategy"] != FULL_DATA:
            runs.setdefault(row["strategy"], {}).setdefault(int(row["seed"]), []).append(row)
    for by_seed in runs.values():
        for seed_rows in by_seed.values():
            seed_rows.sort(key=lambda r: r["round"])
    return runs


def reference_by_seed(rows: Iterable[dict]) -> dict[int, float]:
    """Each seed's full-data test Dice (the reference with the largest budget)."""
    reference = [r for r in rows if r["strategy"] == FULL_DATA and math.isfinite(r["dice_test"])]
    if not reference:
        return {}
    budget = max(r["round"] for r in reference)
    return {int(r["seed"]): float(r["dice_test"]) for r in reference if r["round"] == budget}


def common_effort(runs: dict[str, dict[int, list[dict]]]) -> float:
    """The smallest final effort (% of boundary) of any run: the budget every area is measured over."""
    finals = [seed_rows[-1][EFFORT_COLUMN] for by_seed in runs.values() for seed_rows in by_seed.values()]
    finals = [value for value in finals if math.isfinite(value) and value > 0]
    return min(finals) if finals else math.nan


def seed_figures(runs: dict[str, dict[int, list[dict]]], references: dict[int, float],
                 max_effort: float) -> dict[str, SeedFigures]:
    """Per strategy and seed: area up to ``max_effort``, last-round Dice, effort to 90 / 95 % of full data."""
    figures = {}
    for strategy, by_seed in runs.items():
        seeds = tuple(sorted(by_seed))
        area: list[float] = []
        last: list[float] = []
        effort_to: dict[float, list[float]] = {fraction: [] for fraction in FRACTIONS}
        for seed in seeds:
            effort = [r[EFFORT_COLUMN] for r in by_seed[seed]]
            dice = [r["dice_test"] for r in by_seed[seed]]
            area.append(area_under_curve(effort, dice, max_effort) if math.isfinite(max_effort) else math.nan)
            last.append(dice[-1])
            reference = references.get(seed, math.nan)
            for fraction in FRACTIONS:
                effort_to[fraction].append(effort_to_fraction(effort, dice, reference, fraction)
                                           if math.isfinite(reference) else math.nan)
        figures[strategy] = SeedFigures(strategy, seeds, np.array(area), np.array(last),
                                        {f: np.array(v) for f, v in effort_to.items()})
    return figures


def paired_on_common_seeds(engine: SeedFigures, baseline: SeedFigures, values: str,
                           fraction: float | None = None) -> PairedComparison:
    """:func:`paired_comparison` of one figure over the seeds both strategies ran."""
    common = sorted(set(engine.seeds) & set(baseline.seeds))

    if values == "effort" and fraction is None:
        raise ValueError("an effort comparison needs the fraction of full-data Dice it is measured at")

    def pick(figures: SeedFigures) -> np.ndarray:
        column = figures.effort_to[fraction] if values == "effort" and fraction is not None else getattr(figures, values)
        return np.array([column[figures.seeds.index(seed)] for seed in common])

    return paired_comparison(pick(engine), pick(baseline), higher_is_better=values != "effort")


def _interval(interval: Interval, digits: int = 3) -> str:
    if interval.n == 0:
        return "never reached"
    text = f"{interval.mean:.{digits}f}"
    if interval.n > 1:
        text += f" [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"
    else:
        text += " (1 seed: no interval)"
    return text + (f", not reached in {interval.n_missing}" if interval.n_missing else "")


def statistics_markdown(rows: Iterable[dict]) -> list[str]:
    """The report's per-seed section: a table per strategy and paired tests against each random baseline."""
    rows = list(rows)
    runs = runs_by_seed(rows)
    if not runs:
        return []
    max_effort = common_effort(runs)
    figures = seed_figures(runs, reference_by_seed(rows), max_effort)
    lines = [
        "## Per seed: area under the curve, effort to 90 / 95 % of full data",
        "",
        f"Each seed's own rounds and full-data reference; mean and 95 % t-interval over seeds. Area: mean "
        f"test Dice over the first {max_effort:.1f} % of the total boundary (the smallest final effort of any "
        "run), step-wise. Effort: % of the total boundary at the first crossing.",
        "",
        "| strategy | seeds | area (mean Dice over the budget) | last-round Dice | "
        "effort to 90 % (% boundary) | effort to 95 % |",
        "|---|---|---|---|---|---|",
    ]
    for name, fig in figures.items():
        lines.append(f"| {name} | {len(fig.seeds)} | {_interval(mean_interval(fig.area))} | "
                     f"{_interval(mean_interval(fig.last_dice))} | "
                     f"{_interval(mean_interval(fig.effort_to[0.9]), 1)} | "
                     f"{_interval(mean_interval(fig.effort_to[0.95]), 1)} |")
    baselines = [name for name in RANDOM_BASELINES if name in figures]
    if not baselines:
        return lines
    lines += ["", "### Against the random baselines (paired over common seeds)", "",
              "| strategy | baseline | area difference [95 % interval] | area test | effort-to-90 % test |",
              "|---|---|---|---|---|"]
    for name, fig in figures.items():
        for baseline in baselines:
            if baseline == name:
                continue
            area = paired_on_common_seeds(fig, figures[baseline], "area")
            effort = paired_on_common_seeds(fig, figures[baseline], "effort", 0.9)
            lines.append(f"| {name} | {baseline} | {_interval(area.interval)} | {area.verdict} | {effort.verdict} |")
    return lines
