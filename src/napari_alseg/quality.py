"""Quality predictor: how good is a prediction, in Dice, and which class is that (docs/METHODS.md §6)?

Dice needs ground truth, so the quality of a prediction is estimated from the image and
the *soft* prediction (docs/METHODS.md §6.1). Here that is a fixed vector of hand-made features
(:func:`quality_features`: confidence, entropy, MC-dropout variance, shape and intensity
of the predicted region). :class:`QualityPredictor` predicts the Dice itself, with an
:data:`INTERVAL` interval, and derives the class from it with the paper's Dice bands
(configurable): Poor ``< 0.6`` (segment from scratch), Adjust ``0.6–0.8`` (check and edit),
Acceptable ``> 0.8`` (accept as pseudo-label). Because the rating is a number read from
each prediction, items rank even when every example so far was Poor.

Its starting point is the model's own soft Dice (:data:`PRIOR_FEATURE`), which needs no
example; predictions of known Dice (validation, out-of-fold, corrections) calibrate it,
and once there are :data:`MIN_FEATURE_CASES` of them the other features may join (only
where they lower the leave-one-out error). Below :data:`MIN_FIT_CASES` examples the
ratings stay close to the soft Dice, with wide intervals, and :attr:`QualityPredictor.note`
says so. How well it rates (cross-validated): :mod:`napari_alseg.quality_report`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from scipy import ndimage

from .domain import (QUALITY_CLASS_NAMES, TERM_QUALITY_CLASS, TERM_QUALITY_DICE, TERM_QUALITY_DICE_HIGH,
                     TERM_QUALITY_DICE_LOW, TERM_QUALITY_EXAMPLES)
from .errors import AlsegError
from .metrics import item_dice
from .uncertainty import entropy_map, top_fraction_mean

POOR, ADJUST, ACCEPTABLE = 0, 1, 2
MIN_FIT_CASES = 6  # below this many examples a note says the ratings are barely calibrated
MIN_FEATURE_CASES = 20  # from this many examples the other features may join the soft Dice
MODELS = ("auto", "prior")  # auto: features join where leave-one-out says they help; prior: soft Dice only
INTERVAL = 0.8  # the stated interval: 10th to 90th percentile of the predicted Dice
PRIOR_FEATURE = "mean_soft_dice"
PRIOR_SPREAD = 0.25  # assumed sd of true Dice about an uncalibrated soft Dice (wide on purpose)
PRIOR_WEIGHT = 3.0  # how many examples that assumed spread counts as
IDENTITY_POINTS = (0.3, 0.9)  # pseudo-examples "Dice = soft Dice" that hold the calibration near the identity
IDENTITY_WEIGHT = 1.0  # ... each worth one example
SLOPE_RANGE = (0.1, 2.0)  # the calibration's slope: never inverts or flattens the model's own ranking
RIDGE_PENALTIES = (3.0, 30.0, 300.0)  # tried for the feature terms (standardised)
HUBER_K, HUBER_FLOOR, HUBER_ITERATIONS = 1.345, 0.02, 3
SAVE_FORMAT = "napari-alseg-quality"
SAVE_VERSION = 2
FEATURE_NAMES = (
    "log_foreground_voxels",
    "log_soft_to_hard_volume",
    "mean_max_prob_foreground",
    "mean_entropy_foreground",
    "mean_entropy_boundary",
    "high_entropy_boundary_fraction",
    "boundary_to_foreground_ratio",
    "log_top_variance",
    "log_variance_sum",
    "log_mean_variance_foreground",
    "mean_soft_dice",
    "min_soft_dice",
    "foreground_soft_dice",
    "log_components",
    "largest_component_fraction",
    "predicted_class_fraction",
    "mean_intensity_foreground",
    "std_intensity_foreground",
    "contrast_to_surround",
)
_LOG_FLOOR = 1e-12
PRIOR_INDEX = FEATURE_NAMES.index(PRIOR_FEATURE)
_OTHER = [i for i in range(len(FEATURE_NAMES)) if i != PRIOR_INDEX]


@dataclass(frozen=True)
class QualityThresholds:
    """Dice bands (docs/METHODS.md §6.2): Poor ``< poor`` <= Adjust <= ``acceptable`` < Acceptable."""

    poor: float = 0.6
    acceptable: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.poor <= self.acceptable <= 1.0:
            raise AlsegError(
                f"quality thresholds must satisfy 0 <= poor <= acceptable <= 1, got {self.poor}, {self.acceptable}"
            )

    def classify(self, dice: np.ndarray) -> np.ndarray:
        """Quality class (0 Poor, 1 Adjust, 2 Acceptable) of each Dice value."""
        dice = np.asarray(dice, dtype=float)
        return np.where(dice < self.poor, POOR, np.where(dice > self.acceptable, ACCEPTABLE, ADJUST))


def quality_features(image: np.ndarray, probs: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` vector ``(F,)`` of one prediction; finite for any input.

    ``image`` ``(Cin, *S)`` normalised intensities; ``probs`` ``(C, *S)`` softmax (class 0
    background); ``variance`` ``(C, *S)`` MC-dropout variance. Volumes enter as logs so
    that cases of different size compare; empty predictions give zeros, not NaN.
    """
    image, probs, variance = (np.asarray(a, dtype=np.float32) for a in (image, probs, variance))
    if probs.shape != variance.shape or image.shape[1:] != probs.shape[1:]:
        raise AlsegError(f"image {image.shape}, probabilities {probs.shape} and variance {variance.shape} disagree")
    n_classes = probs.shape[0]
    hard = probs.argmax(axis=0)
    foreground = hard > 0
    n_foreground = int(foreground.sum())
    entropy = entropy_map(probs)
    voxel_variance = variance.mean(axis=0)
    band = ndimage.binary_dilation(foreground) & ~ndimage.binary_erosion(foreground)
    surround = ndimage.binary_dilation(foreground, iterations=2) & ~foreground
    soft_dice = _soft_dice_per_class(probs, hard)
    components, n_components = ndimage.label(foreground)
    largest = np.bincount(components.ravel())[1:].max() if n_components else 0
    inside = _channel_means(image, foreground)
    return np.array([
        np.log1p(n_foreground),
        np.log((1.0 - probs[0]).sum() + 1.0) - np.log(n_foreground + 1.0),
        _mean(probs.max(axis=0), foreground),
        _mean(entropy, foreground),
        _mean(entropy, band),
        _mean(entropy > 0.5 * np.log(n_classes), band),
        band.sum() / (n_foreground + 1.0),
        np.log(top_fraction_mean(voxel_variance) + _LOG_FLOOR),
        np.log(voxel_variance.sum() + _LOG_FLOOR),
        np.log(_mean(voxel_variance, foreground) + _LOG_FLOOR),
        soft_dice.mean() if soft_dice.size else 0.0,
        soft_dice.min() if soft_dice.size else 0.0,
        _soft_dice(1.0 - probs[0], foreground),
        np.log1p(n_components),
        largest / max(n_foreground, 1),
        soft_dice.size / max(n_classes - 1, 1),
        inside.mean(),
        np.mean([_std(channel, foreground) for channel in image]),
        np.abs(inside - _channel_means(image, surround)).mean(),
    ], dtype=float)


def prediction_dice(probs: np.ndarray, labels: np.ndarray, n_classes: int, *, whole: bool = False) -> float:
    """Quality target: mean foreground Dice of ``argmax(probs)`` against ``labels``.

    Classes absent from both are skipped; nothing to find and nothing found is 1.
    ``whole``: Dice of all foreground classes merged (BraTS "whole tumour") instead.
    """
    prediction = np.asarray(probs).argmax(axis=0)
    if whole:
        prediction, labels, n_classes = prediction > 0, np.asarray(labels) > 0, 2
    return item_dice(prediction, labels, n_classes)


@dataclass(frozen=True)
class QualityEstimate:
    """One prediction's rating: its expected Dice ``dice`` with the :data:`INTERVAL` interval
    ``[low, high]`` (all in [0, 1]), the quality class of ``dice`` (POOR / ADJUST / ACCEPTABLE)
    and ``examples``, how many predictions of known Dice the predictor rests on (None: not said)."""

    dice: float
    low: float
    high: float
    quality_class: int
    examples: int | None = None

    @property
    def class_name(self) -> str:
        return QUALITY_CLASS_NAMES[self.quality_class]


def estimate_from_terms(terms: Mapping[str, float]) -> QualityEstimate | None:
    """The rating an item's terms hold (a pool keeps numbers only, so its stored scores can
    hold the rating too: ``scoring.terms.quality_terms`` writes them); None where they hold
    none (or not all of the Dice, its interval and its class)."""
    dice, low, high, quality_class = (float(terms.get(name, math.nan)) for name in (
        TERM_QUALITY_DICE, TERM_QUALITY_DICE_LOW, TERM_QUALITY_DICE_HIGH, TERM_QUALITY_CLASS))
    if not all(math.isfinite(value) for value in (dice, low, high, quality_class)):
        return None
    examples = float(terms.get(TERM_QUALITY_EXAMPLES, math.nan))
    return QualityEstimate(dice, low, high, int(quality_class), int(examples) if math.isfinite(examples) else None)


class QualityPredictor:
    """Predicts the Dice of a prediction with an interval, and derives its quality class.

    The starting point is the model's own soft Dice (feature :data:`PRIOR_FEATURE`: the
    Dice it would reach were its probabilities calibrated). Predictions of known Dice
    calibrate it: a robust (Huber-weighted) line ``Dice ≈ a + b · soft Dice`` held towards
    the identity by :data:`IDENTITY_WEIGHT` pseudo-examples on the diagonal, its slope kept in
    :data:`SLOPE_RANGE` (a calibration never inverts or flattens the model's own ranking).
    From :data:`MIN_FEATURE_CASES` examples on (``model="auto"``) a ridge term on the other
    standardised features joins the line, if and only if it lowers the leave-one-out error.
    The spread of true Dice about the line, its leave-one-out residuals pooled with
    :data:`PRIOR_SPREAD` (worth :data:`PRIOR_WEIGHT` examples), gives the interval, so with
    no example at all the rating is the soft Dice itself with a wide interval (and
    :attr:`note` says so). ``model="prior"``: the calibrated line only. No scikit-learn.
    """

    def __init__(self, thresholds: QualityThresholds = QualityThresholds(), model: str = "auto",
                 seed: int = 0) -> None:
        if model not in MODELS:
            raise AlsegError(f"unknown quality model {model!r}; choose from {MODELS}")
        self.thresholds = thresholds
        self.model = model
        self.seed = seed  # kept for callers; the fit is deterministic
        self.fit(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0))

    @property
    def fitted(self) -> bool:
        """Always: with no example the predictor answers the uncalibrated prior."""
        return True

    @property
    def uses_features(self) -> bool:
        """Whether features beyond the soft Dice entered the fit (chosen by leave-one-out)."""
        return self.penalty is not None

    def fit(self, features: np.ndarray, dice: np.ndarray) -> QualityPredictor:
        """Fit on ``(N, F)`` features and the ``(N,)`` true Dice of those predictions (any N >= 0)."""
        features, dice = checked_examples(features, dice)
        n = len(dice)
        self.n_examples = n
        self.reason = ""  # ratings are always available; kept for callers that show why not
        self.z_mean = features[:, _OTHER].mean(axis=0) if n else np.zeros(len(_OTHER))
        self.z_std = np.maximum(features[:, _OTHER].std(axis=0), 1e-6) if n else np.ones(len(_OTHER))
        design = self._design(features, with_features=False)
        self.penalty = None
        self.theta = _robust_fit(design, dice, None)
        residuals = _loo_residuals(design, dice, None)
        if self.model == "auto" and n >= MIN_FEATURE_CASES:
            full = self._design(features, with_features=True)
            best = float(np.mean(residuals ** 2))
            for penalty in RIDGE_PENALTIES:
                candidate = _loo_residuals(full, dice, penalty)
                if float(np.mean(candidate ** 2)) < best:
                    best, residuals, self.penalty = float(np.mean(candidate ** 2)), candidate, penalty
            if self.penalty is not None:
                self.theta = _robust_fit(full, dice, self.penalty)
        self.sigma = float(np.sqrt((PRIOR_WEIGHT * PRIOR_SPREAD ** 2 + float(np.sum(residuals ** 2)))
                                   / (PRIOR_WEIGHT + n)))
        self.note = self._note()
        return self

    def _design(self, features: np.ndarray, *, with_features: bool) -> np.ndarray:
        columns = [np.ones(len(features)), features[:, PRIOR_INDEX]]
        design = np.column_stack(columns)
        if with_features:
            design = np.column_stack([design, (features[:, _OTHER] - self.z_mean) / self.z_std])
        return design

    def _note(self) -> str:
        half = NormalDist().inv_cdf(0.5 + INTERVAL / 2) * self.sigma
        if self.n_examples == 0:
            return (f"uncalibrated: no prediction of known Dice yet, so each rating is the model's own soft "
                    f"Dice (the Dice it would reach were its probabilities calibrated), ±{half:.2f} for "
                    f"{INTERVAL:.0%}")
        if self.n_examples < MIN_FIT_CASES:
            return (f"calibrated on only {self.n_examples} prediction(s) of known Dice: held near the model's "
                    f"own soft Dice, ±{half:.2f} for {INTERVAL:.0%}")
        return ""

    def predict_dice(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(dice, low, high)``, each ``(N,)`` in [0, 1]: the expected Dice and its
        :data:`INTERVAL` interval."""
        features = _checked_features(features)
        mean = self._design(features, with_features=self.uses_features) @ self.theta
        half = NormalDist().inv_cdf(0.5 + INTERVAL / 2) * self.sigma
        return np.clip(mean, 0.0, 1.0), np.clip(mean - half, 0.0, 1.0), np.clip(mean + half, 0.0, 1.0)

    def estimate(self, features: np.ndarray) -> list[QualityEstimate]:
        """One :class:`QualityEstimate` per row of ``(N, F)`` features."""
        dice, low, high = self.predict_dice(features)
        classes = self.thresholds.classify(dice)
        return [QualityEstimate(float(d), float(lo), float(hi), int(c), self.n_examples)
                for d, lo, hi, c in zip(dice, low, high, classes)]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, 3)`` probabilities of Poor, Adjust, Acceptable: the Dice bands' shares of a normal
        of the predicted Dice and the residual spread."""
        features = _checked_features(features)
        mean = self._design(features, with_features=self.uses_features) @ self.theta
        below_poor = np.array([NormalDist(m, self.sigma).cdf(self.thresholds.poor) for m in mean])
        below_acceptable = np.array([NormalDist(m, self.sigma).cdf(self.thresholds.acceptable) for m in mean])
        probabilities = np.column_stack([below_poor, below_acceptable - below_poor, 1.0 - below_acceptable])
        return probabilities.reshape(len(features), 3)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The quality class of each row's predicted Dice."""
        return self.thresholds.classify(self.predict_dice(features)[0])

    def save(self, path: str | os.PathLike) -> Path:
        """Write with joblib (a pickle: load only files from your own project folder)."""
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({
            "format": SAVE_FORMAT, "version": SAVE_VERSION, "feature_names": FEATURE_NAMES,
            "poor": self.thresholds.poor, "acceptable": self.thresholds.acceptable,
            "model": self.model, "seed": self.seed, "theta": self.theta, "penalty": self.penalty,
            "sigma": self.sigma, "z_mean": self.z_mean, "z_std": self.z_std,
            "n_examples": self.n_examples, "note": self.note,
        }, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityPredictor:
        """Inverse of :meth:`save`; refuses files of another format or feature set, and version 1
        files (a classifier of the class alone: refit it from the project's examples)."""
        import joblib

        path = Path(path)
        try:
            state = joblib.load(path)
        except (OSError, EOFError, ValueError, KeyError, AttributeError, ImportError) as error:
            raise AlsegError(f"{path.name}: not a readable quality model: {error}") from None
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise AlsegError(f"{path.name}: not a napari-alseg quality model")
        if state.get("version") == 1:
            raise AlsegError(f"{path.name}: a version 1 quality model (a classifier that predicts the class "
                             "only); this version predicts the Dice itself: refit it from the project's "
                             "examples (a retrain does)")
        if state.get("version") != SAVE_VERSION or tuple(state.get("feature_names", ())) != FEATURE_NAMES:
            raise AlsegError(f"{path.name}: quality model from another version; refit it")
        predictor = cls(QualityThresholds(state["poor"], state["acceptable"]), state["model"], state["seed"])
        predictor.theta = np.asarray(state["theta"], dtype=float)
        predictor.penalty = state["penalty"]
        predictor.sigma = float(state["sigma"])
        predictor.z_mean = np.asarray(state["z_mean"], dtype=float)
        predictor.z_std = np.asarray(state["z_std"], dtype=float)
        predictor.n_examples = int(state["n_examples"])
        predictor.note = str(state["note"])
        return predictor


def _robust_fit(design: np.ndarray, dice: np.ndarray, penalty: float | None) -> np.ndarray:
    """Coefficients of ``dice ≈ design @ θ`` (columns: 1, soft Dice, then standardised features):
    Huber-weighted least squares (a few reweightings) with :data:`IDENTITY_WEIGHT` pseudo-examples
    on the diagonal and ridge ``penalty`` on the feature terms; the slope is kept in
    :data:`SLOPE_RANGE`."""
    weights = np.ones(len(dice))
    theta = _solve(design, dice, weights, penalty)
    for _ in range(HUBER_ITERATIONS):
        residuals = dice - design @ theta
        if len(residuals) < 3:
            break
        scale = max(float(np.median(np.abs(residuals - np.median(residuals)))) / 0.6745, HUBER_FLOOR)
        weights = np.minimum(1.0, HUBER_K * scale / np.maximum(np.abs(residuals), 1e-12))
        theta = _solve(design, dice, weights, penalty)
    return theta


def _solve(design: np.ndarray, dice: np.ndarray, weights: np.ndarray, penalty: float | None) -> np.ndarray:
    width = design.shape[1]
    pseudo = np.zeros((len(IDENTITY_POINTS), width))
    pseudo[:, 0], pseudo[:, 1] = 1.0, IDENTITY_POINTS
    rows = np.vstack([design, pseudo])
    target = np.concatenate([dice, IDENTITY_POINTS])
    w = np.concatenate([weights, np.full(len(IDENTITY_POINTS), IDENTITY_WEIGHT)])
    ridge = np.zeros((width, width))
    if penalty is not None:
        ridge[2:, 2:] = penalty * np.eye(width - 2)
    theta = np.linalg.solve(rows.T @ (w[:, None] * rows) + ridge + 1e-9 * np.eye(width), rows.T @ (w * target))
    low, high = SLOPE_RANGE
    if not low <= theta[1] <= high:  # fix the slope at its bound, refit the rest
        slope = float(np.clip(theta[1], low, high))
        rest = np.delete(rows, 1, axis=1)
        ridge_rest = np.delete(np.delete(ridge, 1, axis=0), 1, axis=1)
        others = np.linalg.solve(rest.T @ (w[:, None] * rest) + ridge_rest + 1e-9 * np.eye(width - 1),
                                 rest.T @ (w * (target - slope * rows[:, 1])))
        theta = np.insert(others, 1, slope)
    return theta


def _loo_residuals(design: np.ndarray, dice: np.ndarray, penalty: float | None) -> np.ndarray:
    """Each example's residual under the fit to all the others (what a new item will see)."""
    residuals = np.empty(len(dice))
    keep = np.ones(len(dice), bool)
    for i in range(len(dice)):
        keep[i] = False
        residuals[i] = dice[i] - design[i] @ _robust_fit(design[keep], dice[keep], penalty)
        keep[i] = True
    return residuals


def class_quality_features(image: np.ndarray, probs: np.ndarray, variance: np.ndarray, class_id: int) -> np.ndarray:
    """:func:`quality_features` of class ``class_id`` alone (an ROI: one class on a slice), as
    the two-class prediction ``(1 - p_c, p_c)``; its Dice target is that class's Dice."""
    probs, variance = np.asarray(probs, dtype=np.float32), np.asarray(variance, dtype=np.float32)
    binary = np.stack([1.0 - probs[class_id], probs[class_id]])
    return quality_features(image, binary, np.stack([variance[class_id], variance[class_id]]))


def _checked_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=float)
    if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
        raise AlsegError(f"quality features must be (N, {len(FEATURE_NAMES)}), got {features.shape}")
    if not np.isfinite(features).all():
        raise AlsegError("quality features contain NaN or infinite values")
    return features


def checked_examples(features: np.ndarray, dice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, F)`` features and their ``(N,)`` finite Dice as float arrays, or one AlsegError line."""
    features = _checked_features(features)
    dice = np.asarray(dice, dtype=float)
    if dice.shape != (len(features),) or not np.isfinite(dice).all():
        raise AlsegError(f"need one finite Dice per feature row: {dice.shape} vs {len(features)} rows")
    return features, dice


def _soft_dice_per_class(probs: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """Agreement of each predicted foreground class's soft map with its own hard mask.

    A confident, crisp prediction scores near 1; a hesitant one lower: a label-free
    proxy for the Dice the prediction will reach.
    """
    scores = [_soft_dice(probs[class_id], hard == class_id) for class_id in range(1, probs.shape[0])
              if (hard == class_id).any()]
    return np.array(scores, dtype=float)


def _soft_dice(soft: np.ndarray, mask: np.ndarray) -> float:
    """``2 Σ p·m / (Σ p + Σ m)``; 0 when both are empty."""
    total = float(soft.sum() + mask.sum())
    return 2.0 * float(soft[mask].sum()) / total if total > 0 else 0.0


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else 0.0


def _std(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].std()) if mask.any() else 0.0


def _channel_means(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.array([_mean(channel, mask) for channel in image])
