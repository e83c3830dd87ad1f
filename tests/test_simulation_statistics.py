"""Per-seed statistics of a simulation report, on constructed rounds with known answers."""

import math

import numpy as np
import pytest

from napari_alseg.simulation.files import FULL_DATA
from napari_alseg.simulation.statistics import (common_effort, paired_on_common_seeds, reference_by_seed,
                                                runs_by_seed, seed_figures, statistics_markdown)


def row(strategy, seed, round_index, effort_pct, dice):
    return {"strategy": strategy, "seed": seed, "round": round_index, "effort_boundary_pct": effort_pct,
            "effort_boundary_mm": 10.0 * effort_pct, "labelled_items": round_index, "dice_test": dice}


def constructed_rows():
    """Two strategies, three seeds; 'engine' beats 'random' by 0.09 / 0.10 / 0.11 Dice in every round."""
    rows = []
    for seed in range(3):
        rows.append(row(FULL_DATA, seed, 2, math.nan, 0.8 + 0.01 * seed))
        for strategy, lift in (("random", 0.0), ("engine", 0.09 + 0.01 * seed)):
            rows += [row(strategy, seed, 1, 10.0, 0.3 + lift + 0.02 * seed),
                     row(strategy, seed, 2, 20.0 + seed, 0.6 + lift + 0.02 * seed)]
    return rows


def test_areas_are_measured_over_the_smallest_final_effort_step_wise():
    rows = constructed_rows()
    runs = runs_by_seed(rows)
    assert common_effort(runs) == 20.0
    figures = seed_figures(runs, reference_by_seed(rows), 20.0)
    # seed 0 random: 0 over [0, 10), 0.3 over [10, 20): mean 0.15; engine adds 0.09 over half the budget
    assert figures["random"].area[0] == pytest.approx(0.15)
    assert figures["engine"].area[0] == pytest.approx(0.195)
    np.testing.assert_allclose(figures["engine"].last_dice, [0.69, 0.72, 0.75])


def test_effort_to_a_fraction_uses_each_seeds_own_reference_and_is_nan_when_never_reached():
    rows = constructed_rows()
    figures = seed_figures(runs_by_seed(rows), reference_by_seed(rows), 20.0)
    # seed 0: 90 % of 0.80 = 0.72, never reached by random (0.6) and not by engine (0.69)
    assert math.isnan(figures["random"].effort_to[0.9][0]) and math.isnan(figures["engine"].effort_to[0.9][0])
    rows.append(row("engine", 0, 3, 30.0, 0.9))
    figures = seed_figures(runs_by_seed(rows), reference_by_seed(rows), 20.0)
    assert figures["engine"].effort_to[0.9][0] == pytest.approx(20.0 + (0.72 - 0.69) / (0.9 - 0.69) * 10.0)


def test_a_constant_lift_is_significant_and_equal_runs_are_not():
    rows = constructed_rows()
    figures = seed_figures(runs_by_seed(rows), reference_by_seed(rows), 20.0)
    lift = paired_on_common_seeds(figures["engine"], figures["random"], "area")
    assert lift.significant and lift.better and lift.mean_difference == pytest.approx(0.05)
    same = paired_on_common_seeds(figures["random"], figures["random"], "area")
    assert not same.significant


def test_the_section_reports_intervals_and_verdicts_against_random():
    text = "\n".join(statistics_markdown(constructed_rows()))
    assert "first 20.0 % of the total boundary" in text
    assert "| engine | 3 | 0.210 [" in text and "| engine | random |" in text and "better (p = " in text
    single = [r for r in constructed_rows() if r["seed"] == 0]
    assert "1 seed: no interval" in "\n".join(statistics_markdown(single))
