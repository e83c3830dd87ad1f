"""Statistics of learning curves for the simulation benchmark: pure numpy / scipy.

A curve is one run's ``(effort, dice)`` points, one per round: effort spent so far (cases,
slices, boundary mm, seconds; any unit that only grows) and the test Dice of the model
trained on it. These functions turn curves into the numbers RESULTS reports:

- :func:`area_under_curve`: the headline, mean test Dice over a fixed effort budget;
  less noisy than a first crossing because every round counts. :func:`curve_at`: a
  curve's Dice on a common effort grid, for bands over seeds.
- :func:`effort_to_reach` / :func:`effort_to_fraction`: effort at the first crossing of a
  target (e.g. 90 / 95 % of the full-data Dice), NaN when never reached.
- :func:`mean_interval`: mean and 95 % interval over seeds (t or bootstrap).
- :func:`paired_comparison`: an engine against random, seed by seed (paired t or
  Wilcoxon signed-rank), with a "not significant" flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Values = Sequence[float] | np.ndarray  # one number per round (a curve) or per seed
STEP, TRAPEZOID = "step", "trapezoid"
T_INTERVAL, BOOTSTRAP = "t", "bootstrap"
PAIRED_T, WILCOXON = "paired-t", "wilcoxon"


def _curve(effort: Values, dice: Values) -> tuple[np.ndarray, np.ndarray]:
    """The points as arrays ``(x, y)``: effort (ascending) and Dice, both ``(rounds,)``."""
    x, y = np.asarray(effort, float), np.asarray(dice, float)
    if x.ndim != 1 or x.shape != y.shape or not len(x):
        raise ValueError(f"a curve needs matching 1D effort and dice, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("effort and dice must be finite")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if (x < 0).any():
        raise ValueError("effort must be >= 0")
    return x, y


def area_under_curve(effort: Values, dice: Values, max_effort: float, *,
                     method: str = STEP, before_first: float = 0.0, normalise: bool = True) -> float:
    """Area under test Dice vs effort over ``[0, max_effort]``; by default divided by ``max_effort``.

    Normalised, it is the mean Dice over the budget (0..1), comparable across units.

    ``step`` (default): each round's Dice holds until the next round's point, because
    that is the model the annotator has while spending that effort; it never credits a
    gain before the round that bought it. ``trapezoid``: linear between points, as if
    rounds were infinitely fine; it rewards sparse rounds with interpolated gains.
    Before the first point the curve is ``before_first`` (0: no model yet; ``trapezoid``
    rises linearly from ``(0, before_first)``), and past the last point it stays flat at
    the last Dice. Points beyond ``max_effort`` are ignored; repeated efforts keep the
    last point (the Dice after that round).
    """
    if method not in (STEP, TRAPEZOID):
        raise ValueError(f"method must be {STEP!r} or {TRAPEZOID!r}, got {method!r}")
    if not max_effort > 0:
        raise ValueError(f"max_effort must be > 0, got {max_effort!r}")
    x, y = _curve(effort, dice)
    keep = np.append(x[1:] != x[:-1], True)  # the last of each repeated effort
    x, y = x[keep], y[keep]
    if x[0] > 0:
        x, y = np.insert(x, 0, 0.0), np.insert(y, 0, before_first)
    # values at the budget's end, then cut there
    at_end = _step_value(x, y, max_effort) if method == STEP else float(np.interp(max_effort, x, y))
    inside = x < max_effort
    x, y = np.append(x[inside], max_effort), np.append(y[inside], at_end)
    widths = np.diff(x)
    if method == STEP:
        area = float((widths * y[:-1]).sum())
    else:
        area = float((widths * (y[:-1] + y[1:]) / 2.0).sum())
    return area / max_effort if normalise else area


def curve_at(effort: Values, dice: Values, at: Values | float, *,
             method: str = STEP, before_first: float = 0.0) -> np.ndarray:
    """The curve's Dice at efforts ``at`` (same conventions as :func:`area_under_curve`).

    For bands over seeds: evaluate every seed's curve on one effort grid, then take
    :func:`mean_interval` at each grid point, so runs whose rounds fall at different
    efforts (pools of different sizes, boundary mm) are compared at the same effort.
    """
    if method not in (STEP, TRAPEZOID):
        raise ValueError(f"method must be {STEP!r} or {TRAPEZOID!r}, got {method!r}")
    x, y = _curve(effort, dice)
    keep = np.append(x[1:] != x[:-1], True)
    x, y = x[keep], y[keep]
    where = np.asarray(at, float)
    if method == TRAPEZOID:
        if x[0] > 0:
            x, y = np.insert(x, 0, 0.0), np.insert(y, 0, before_first)
        return np.interp(where, x, y)
    index = np.searchsorted(x, where, side="right") - 1
    return np.where(index >= 0, y[np.clip(index, 0, None)], before_first)


def _step_value(effort: np.ndarray, dice: np.ndarray, at: float) -> float:
    return float(dice[np.searchsorted(effort, at, side="right") - 1])


def effort_to_reach(effort: Values, dice: Values, target: float) -> float:
    """Effort at which the curve first reaches ``target`` Dice; NaN if it never does.

    Linear interpolation between the last point below the target and the first point at
    or above it. A curve whose first point already reaches the target gives that point's
    effort (what happened before it was not measured).
    """
    x, y = _curve(effort, dice)
    reached = np.nonzero(y >= target)[0]
    if not len(reached):
        return math.nan
    first = int(reached[0])
    if first == 0:
        return float(x[0])
    (e0, e1), (d0, d1) = x[first - 1:first + 1], y[first - 1:first + 1]
    return float(e0 + (target - d0) / (d1 - d0) * (e1 - e0))


def effort_to_fraction(effort: Values, dice: Values, reference_dice: float,
                       fraction: float = 0.9) -> float:
    """:func:`effort_to_reach` of ``fraction`` (0.9, 0.95) of a reference Dice (the full-data model's)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return effort_to_reach(effort, dice, fraction * reference_dice)


@dataclass(frozen=True)
class Interval:
    """Mean over seeds and its interval; ``n`` finite values used, ``n_missing`` NaNs left out.

    ``low`` / ``high`` are NaN with fewer than two values: one seed has no spread to show.
    """

    mean: float
    low: float
    high: float
    n: int
    n_missing: int
    method: str
    confidence: float

    def __str__(self) -> str:
        missing = f", {self.n_missing} never" if self.n_missing else ""
        if math.isnan(self.low):
            return f"{self.mean:.3g} (n={self.n}{missing})"
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}] (n={self.n}{missing})"


def mean_interval(values: Values, *, confidence: float = 0.95, method: str = T_INTERVAL,
                  n_resamples: int = 10_000, seed: int = 0) -> Interval:
    """Mean of ``values`` (one per seed) and its ``confidence`` interval; NaNs are left out and counted.

    ``t``: mean +- t_{n-1} * sd / sqrt(n), right for a handful of seeds if the values are
    roughly normal. ``bootstrap``: percentile interval of the mean over ``n_resamples``
    resamples drawn from ``seed`` (no normality assumed, but too narrow for n < 10).
    """
    from scipy import stats

    if method not in (T_INTERVAL, BOOTSTRAP):
        raise ValueError(f"method must be {T_INTERVAL!r} or {BOOTSTRAP!r}, got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    array = np.asarray(values, float).ravel()
    finite = array[~np.isnan(array)]
    n, n_missing = len(finite), int(len(array) - len(finite))
    mean = float(finite.mean()) if n else math.nan
    low = high = math.nan
    if n >= 2 and method == T_INTERVAL:
        half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * finite.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
    elif n >= 2:
        rng = np.random.default_rng(seed)
        means = finite[rng.integers(n, size=(n_resamples, n))].mean(axis=1)
        low, high = (float(q) for q in np.quantile(means, [0.5 - confidence / 2.0, 0.5 + confidence / 2.0]))
    return Interval(mean, low, high, n, n_missing, method, confidence)


@dataclass(frozen=True)
class PairedComparison:
    """An engine against a baseline over the same seeds: differences ``engine - baseline``.

    ``better`` is True when the difference favours the engine and is significant at
    ``alpha``; ``significant`` False means "not significant" (say so in the report).
    ``n``: seeds with both values finite.
    """

    mean_difference: float
    interval: Interval
    p_value: float
    significant: bool
    better: bool
    n: int
    test: str
    alpha: float

    @property
    def verdict(self) -> str:
        if not self.significant:
            return f"not significant (p = {self.p_value:.2g}, n = {self.n})"
        return f"{'better' if self.better else 'worse'} (p = {self.p_value:.2g}, n = {self.n})"


def paired_comparison(engine: Values, baseline: Values, *, test: str = PAIRED_T,
                      alpha: float = 0.05, higher_is_better: bool = True) -> PairedComparison:
    """Two-sided paired test of ``engine`` vs ``baseline``, one value per seed, seeds aligned.

    ``paired-t`` (scipy ``ttest_rel``) or ``wilcoxon`` (signed-rank; exact for small n,
    but with 5 seeds its smallest possible p is 0.0625, so it can never be significant at
    0.05 below 6 seeds). Pairs with a NaN are dropped. With fewer than two pairs, or
    differences that are all zero, p is NaN or 1 and nothing is significant.
    ``higher_is_better``: False for efforts (less is better).
    """
    from scipy import stats

    if test not in (PAIRED_T, WILCOXON):
        raise ValueError(f"test must be {PAIRED_T!r} or {WILCOXON!r}, got {test!r}")
    ours, theirs = np.asarray(engine, float).ravel(), np.asarray(baseline, float).ravel()
    if ours.shape != theirs.shape:
        raise ValueError(f"paired values need one per seed on both sides, got {len(ours)} and {len(theirs)}")
    both = ~(np.isnan(ours) | np.isnan(theirs))
    differences = ours[both] - theirs[both]
    n = len(differences)
    interval = mean_interval(differences)
    if n < 2:
        p_value = math.nan
    elif not differences.any():
        p_value = 1.0
    elif test == PAIRED_T and np.ptp(differences) == 0.0:
        p_value = 0.0  # identical non-zero differences: t is infinite
    elif test == PAIRED_T:
        p_value = float(stats.ttest_rel(ours[both], theirs[both]).pvalue)
    else:
        p_value = float(stats.wilcoxon(differences).pvalue)
    significant = bool(p_value < alpha)
    favours = interval.mean > 0 if higher_is_better else interval.mean < 0
    return PairedComparison(interval.mean, interval, p_value, significant, significant and favours, n, test, alpha)
