"""Learning-curve statistics on constructed curves whose answers are worked out by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from napari_alseg.simulation.curve_stats import (
    area_under_curve, curve_at, effort_to_fraction, effort_to_reach, mean_interval, paired_comparison,
)

EFFORT, DICE = [1.0, 2.0, 3.0], [0.5, 0.7, 0.9]


# ----------------------------------------------------------------- area under the curve

def test_step_area_holds_each_round_until_the_next_and_is_zero_before_the_first():
    # [0,1): 0, [1,2): 0.5, [2,3): 0.7, [3,4]: 0.9 (flat past the last point)
    assert area_under_curve(EFFORT, DICE, 4.0) == pytest.approx(2.1 / 4)
    assert area_under_curve(EFFORT, DICE, 4.0, normalise=False) == pytest.approx(2.1)
    assert area_under_curve(EFFORT, DICE, 2.5) == pytest.approx((0.5 + 0.35) / 2.5)


def test_trapezoid_area_interpolates_and_rises_from_before_first():
    # (0+0.5)/2 + (0.5+0.7)/2 + (0.7+0.9)/2 + 0.9
    assert area_under_curve(EFFORT, DICE, 4.0, method="trapezoid") == pytest.approx(2.55 / 4)
    assert area_under_curve(EFFORT, DICE, 2.5, method="trapezoid") == pytest.approx(
        (0.25 + 0.6 + 0.5 * (0.7 + 0.8) / 2) / 2.5)
    assert area_under_curve(EFFORT, DICE, 4.0, method="trapezoid", before_first=0.5) == pytest.approx(2.8 / 4)


def test_area_of_a_flat_curve_is_its_level_for_any_budget():
    for budget in (0.5, 10.0, 1e4):
        assert area_under_curve([0.0, 5.0], [0.8, 0.8], budget) == pytest.approx(0.8)
        assert area_under_curve([0.0, 5.0], [0.8, 0.8], budget, method="trapezoid") == pytest.approx(0.8)


def test_area_sorts_points_keeps_the_last_of_repeated_efforts_and_ignores_points_past_the_budget():
    assert area_under_curve([3.0, 1.0, 2.0], [0.9, 0.5, 0.7], 4.0) == pytest.approx(2.1 / 4)
    assert area_under_curve([1.0, 1.0, 2.0, 3.0], [0.1, 0.5, 0.7, 0.9], 4.0) == pytest.approx(2.1 / 4)
    assert area_under_curve([1.0, 2.0, 9.0], [0.5, 0.7, 1.0], 3.0) == pytest.approx((0.5 + 0.7) / 3.0)


def test_a_curve_that_learns_sooner_has_the_larger_area():
    fast = area_under_curve([1, 2, 3, 4], [0.6, 0.8, 0.85, 0.86], 4)
    slow = area_under_curve([1, 2, 3, 4], [0.3, 0.5, 0.8, 0.86], 4)
    assert fast > slow


@pytest.mark.parametrize("args, message", [
    (([1.0], [0.5, 0.6], 2.0), "matching"),
    (([1.0, 2.0], [0.5, math.nan], 2.0), "finite"),
    (([1.0], [0.5], 0.0), "max_effort"),
    (([-1.0], [0.5], 1.0), ">= 0"),
])
def test_bad_curves_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        area_under_curve(*args)
    with pytest.raises(ValueError, match="method"):
        area_under_curve(EFFORT, DICE, 4.0, method="simpson")


def test_curve_at_follows_the_area_conventions():
    grid = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 9.0]
    np.testing.assert_allclose(curve_at(EFFORT, DICE, grid), [0, 0, 0.5, 0.5, 0.7, 0.9, 0.9])
    np.testing.assert_allclose(curve_at(EFFORT, DICE, grid, method="trapezoid"), [0, 0.25, 0.5, 0.6, 0.7, 0.9, 0.9])
    np.testing.assert_allclose(curve_at(EFFORT, DICE, [0.5], before_first=0.2), [0.2])
    fine = np.linspace(0, 4, 40001)
    assert curve_at(EFFORT, DICE, fine, method="trapezoid").mean() == pytest.approx(
        area_under_curve(EFFORT, DICE, 4.0, method="trapezoid"), abs=1e-4)


# ----------------------------------------------------------------- effort to a target

def test_effort_to_reach_interpolates_the_first_crossing():
    assert effort_to_reach([0, 10, 20], [0.2, 0.6, 1.0], 0.8) == pytest.approx(15.0)
    assert effort_to_reach([0, 10, 20], [0.2, 0.6, 1.0], 0.6) == pytest.approx(10.0)
    # the first crossing counts, not a later one after a dip
    assert effort_to_reach([0, 10, 20, 30], [0.5, 0.9, 0.6, 0.95], 0.85) == pytest.approx(10 * 0.35 / 0.4)


def test_effort_to_reach_at_the_first_point_and_never():
    assert effort_to_reach([5, 10], [0.9, 0.95], 0.8) == 5.0
    assert math.isnan(effort_to_reach([5, 10], [0.5, 0.7], 0.8))


def test_effort_to_fraction_of_the_reference():
    assert effort_to_fraction([0, 10, 20], [0.2, 0.6, 1.0], 0.8, 0.9) == pytest.approx(13.0)  # 0.72
    assert effort_to_fraction([0, 10, 20], [0.2, 0.6, 1.0], 0.8, 0.95) == pytest.approx(14.0)  # 0.76
    with pytest.raises(ValueError, match="fraction"):
        effort_to_fraction([0], [0.5], 0.8, 90)


# ----------------------------------------------------------------- intervals over seeds

def test_t_interval_matches_the_formula():
    interval = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = stats.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)
    assert (interval.mean, interval.low, interval.high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    assert interval.n == 5 and interval.n_missing == 0 and interval.method == "t"


def test_nans_are_left_out_and_counted_and_one_value_has_no_interval():
    interval = mean_interval([2.0, math.nan, 4.0])
    assert interval.mean == 3.0 and interval.n == 2 and interval.n_missing == 1
    single = mean_interval([0.7, math.nan])
    assert single.mean == 0.7 and math.isnan(single.low) and math.isnan(single.high)
    assert "never" in str(single) and "[" not in str(single)
    assert math.isnan(mean_interval([math.nan]).mean)


def test_t_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [(i.low <= 1.0 <= i.high) for i in (mean_interval(rng.normal(1.0, 0.2, 5)) for _ in range(2000))]
    assert 0.93 < np.mean(covered) < 0.97


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.8, 0.05, 20)
    first = mean_interval(values, method="bootstrap", seed=3)
    assert first == mean_interval(values, method="bootstrap", seed=3)
    assert first.low < values.mean() < first.high
    t = mean_interval(values)
    assert first.high - first.low == pytest.approx(t.high - t.low, rel=0.25)


# ----------------------------------------------------------------- paired comparison

def test_a_consistent_gain_is_significant_and_better():
    baseline = np.array([0.60, 0.70, 0.65, 0.72, 0.68])
    engine = baseline + np.array([0.05, 0.06, 0.04, 0.05, 0.07])
    result = paired_comparison(engine, baseline)
    assert result.p_value == pytest.approx(stats.ttest_rel(engine, baseline).pvalue)
    assert result.significant and result.better and result.mean_difference == pytest.approx(0.054)
    assert result.verdict.startswith("better")


def test_noise_is_not_significant():
    baseline = np.array([0.60, 0.70, 0.65, 0.72, 0.68])
    engine = baseline + np.array([0.03, -0.04, 0.02, -0.01, 0.01])
    result = paired_comparison(engine, baseline)
    assert not result.significant and not result.better
    assert result.verdict.startswith("not significant")


def test_lower_is_better_for_effort_and_identical_runs_give_p_one():
    result = paired_comparison([10.0, 12.0, 11.0], [20.0, 21.0, 23.0], higher_is_better=False)
    assert result.significant and result.better and result.mean_difference == pytest.approx(-31 / 3)
    same = paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert same.p_value == 1.0 and not same.significant
    constant = paired_comparison([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert constant.p_value == 0.0 and constant.better


def test_wilcoxon_needs_six_seeds_to_reach_five_percent():
    baseline = np.arange(6, dtype=float)
    engine = baseline + np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    five = paired_comparison(engine[:5], baseline[:5], test="wilcoxon")
    six = paired_comparison(engine, baseline, test="wilcoxon")
    assert five.p_value == pytest.approx(0.0625) and not five.significant
    assert six.p_value == pytest.approx(0.03125) and six.significant and six.better


def test_pairs_with_a_missing_value_are_dropped():
    result = paired_comparison([1.0, math.nan, 3.0, 4.0], [0.5, 2.0, math.nan, 3.5])
    assert result.n == 2 and result.mean_difference == pytest.approx(0.5)
    assert math.isnan(paired_comparison([1.0], [0.5]).p_value)
    with pytest.raises(ValueError, match="one per seed"):
        paired_comparison([1.0, 2.0], [1.0])
