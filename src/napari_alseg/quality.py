"""Quality predictor: is a prediction Poor, Acceptable with adjustments, or Acceptable (METHODS A)?

Dice needs ground truth, so METHODS A estimates the quality class of a prediction from
the image and the *soft* prediction. Here that is a fixed vector of hand-made features
(:func:`quality_features`: confidence, entropy, MC-dropout variance, shape and intensity
of the predicted region) and a small scikit-learn classifier, calibrated with
``CalibratedClassifierCV``. Classes follow the paper's Dice bands (configurable):
Poor ``< 0.6`` (segment from scratch), Adjust ``0.6–0.8`` (check and edit), Acceptable
``> 0.8`` (accept as pseudo-label). scikit-learn is imported only when fitting.

With fewer than :data:`MIN_FIT_CASES` examples the predictor stays unfitted and answers
NaN probabilities: quality is *unknown*, and the quality-threshold strategy falls back to
MC-dropout ranking instead of trusting a guess. With enough examples of one class only
(a first round's model is often Poor everywhere) it answers that class's base rate by the
rule of succession, and says so in :attr:`QualityPredictor.note`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .domain import QUALITY_CLASS_NAMES as CLASS_NAMES  # noqa: F401 (the old name, re-exported)
from .errors import AlsegError
from .metrics import dice_per_class, mean_dice
from .uncertainty import entropy_map, top_fraction_mean

POOR, ADJUST, ACCEPTABLE = 0, 1, 2
MIN_FIT_CASES = 6
MODELS = ("boosting", "logistic")
SAVE_FORMAT = "napari-alseg-quality"
SAVE_VERSION = 1
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


@dataclass(frozen=True)
class QualityThresholds:
    """Dice bands (METHODS A): Poor ``< poor`` <= Adjust <= ``acceptable`` < Acceptable."""

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
    score = mean_dice(dice_per_class(prediction, labels, n_classes))
    return 1.0 if np.isnan(score) else score


class QualityPredictor:
    """Calibrated 3-class classifier of prediction quality from :func:`quality_features`.

    ``model``: ``"boosting"`` (gradient boosting, the default) or ``"logistic"``
    (standardised logistic regression), each wrapped in ``CalibratedClassifierCV``
    (sigmoid) when every class has at least two examples. ``benchmarks/bench_quality.py``
    compares them (3 seeds): equal accuracy (0.89-0.94), boosting with the better recall
    of the middle class, Adjust (0.84-0.85 vs 0.77-0.85), whose errors become unchecked
    pseudo-labels; with few examples and many uninformative features logistic
    regression rarely predicts Adjust (tests/test_quality.py).
    """

    def __init__(self, thresholds: QualityThresholds = QualityThresholds(), model: str = "boosting",
                 seed: int = 0) -> None:
        if model not in MODELS:
            raise AlsegError(f"unknown quality model {model!r}; choose from {MODELS}")
        self.thresholds = thresholds
        self.model = model
        self.seed = seed
        self.estimator = None
        self.reason = "not fitted yet"
        self.n_examples = 0  # the rated predictions the last fit rested on
        self.note = ""  # a caveat on the ratings ("" when read from each prediction's features)

    @property
    def fitted(self) -> bool:
        return self.estimator is not None

    def fit(self, features: np.ndarray, dice: np.ndarray) -> QualityPredictor:
        """Fit on ``(N, F)`` features and the ``(N,)`` true Dice of those predictions.

        Too few examples or a single quality class leave it unfitted (see :attr:`reason`).
        """
        features, dice = _checked_examples(features, dice)
        classes = self.thresholds.classify(dice)
        present = np.unique(classes)
        self.estimator = None
        self.n_examples = len(dice)
        self.note = ""
        if len(dice) < MIN_FIT_CASES:
            self.reason = f"quality unknown: {len(dice)} rated prediction(s), at least {MIN_FIT_CASES} needed"
        elif present.size < 2:
            # nothing to tell the classes apart by: every candidate gets the examples' base rate
            self.estimator = _BaseRate(classes)
            self.reason = ""
            self.note = (f"all {len(dice)} rated predictions were {CLASS_NAMES[present[0]]}: every rating is "
                         "that base rate (rule of succession), not read from the prediction itself")
        else:
            smallest_class = int(np.bincount(classes)[present].min())
            self.estimator = _estimator(self.model, self.seed, smallest_class).fit(features, classes)
            self.reason = ""
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``(N, 3)`` probabilities of Poor, Adjust, Acceptable; NaN rows when unfitted."""
        features = _checked_features(features)
        probabilities = np.full((len(features), 3), np.nan)
        if self.estimator is None or not len(features):
            return probabilities
        probabilities[:] = 0.0
        probabilities[:, self.estimator.classes_] = self.estimator.predict_proba(features)
        return probabilities

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Most probable class per row, -1 when unknown."""
        probabilities = self.predict_proba(features)
        known = ~np.isnan(probabilities).any(axis=1)
        return np.where(known, np.nan_to_num(probabilities).argmax(axis=1), -1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write with joblib (a pickle: load only files from your own project folder)."""
        import joblib

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({
            "format": SAVE_FORMAT, "version": SAVE_VERSION, "feature_names": FEATURE_NAMES,
            "poor": self.thresholds.poor, "acceptable": self.thresholds.acceptable,
            "model": self.model, "seed": self.seed, "estimator": self.estimator, "reason": self.reason,
            "n_examples": self.n_examples, "note": self.note,
        }, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityPredictor:
        """Inverse of :meth:`save`; rejects files of another format or feature set."""
        import joblib

        path = Path(path)
        try:
            state = joblib.load(path)
        except (OSError, EOFError, ValueError, KeyError) as error:
            raise AlsegError(f"{path.name}: not a readable quality model: {error}") from None
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise AlsegError(f"{path.name}: not a napari-alseg quality model")
        if state.get("version") != SAVE_VERSION or tuple(state.get("feature_names", ())) != FEATURE_NAMES:
            raise AlsegError(f"{path.name}: quality model from another version; refit it")
        predictor = cls(QualityThresholds(state["poor"], state["acceptable"]), state["model"], state["seed"])
        predictor.estimator, predictor.reason = state["estimator"], state["reason"]
        predictor.n_examples = int(state.get("n_examples", 0))
        predictor.note = str(state.get("note", ""))
        return predictor


@dataclass(frozen=True)
class QualityReport:
    """Cross-validated performance. ``confusion[true, predicted]`` counts (3×3);
    ``auc`` one-vs-rest per class (NaN when a class is absent); ``poor_as_acceptable``:
    the costly error, the share of truly Poor predictions classed Acceptable."""

    confusion: np.ndarray
    accuracy: float
    auc: tuple[float, float, float]
    poor_as_acceptable: float
    n_examples: int


def cross_validate(features: np.ndarray, dice: np.ndarray, *, thresholds: QualityThresholds = QualityThresholds(),
                   model: str = "boosting", folds: int = 5, seed: int = 0,
                   groups: np.ndarray | None = None) -> QualityReport:
    """Out-of-fold predictions of :class:`QualityPredictor` and their :class:`QualityReport`.

    ``groups`` (e.g. the case of each example) keeps all examples of a group in one fold,
    so a case seen in training never rates itself. Folds whose training part cannot be
    fitted leave their rows unknown; those count as errors.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    features, dice = _checked_examples(features, dice)
    classes = thresholds.classify(dice)
    if groups is None:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        splits = splitter.split(features, classes)
    else:
        splits = GroupKFold(folds).split(features, classes, groups)
    probabilities = np.full((len(dice), 3), np.nan)
    for train, test in splits:
        predictor = QualityPredictor(thresholds, model, seed).fit(features[train], dice[train])
        probabilities[test] = predictor.predict_proba(features[test])
    return quality_report(classes, probabilities)


def quality_report(classes: np.ndarray, probabilities: np.ndarray) -> QualityReport:
    """:class:`QualityReport` of true ``classes`` ``(N,)`` and predicted ``(N, 3)`` probabilities."""
    from sklearn.metrics import roc_auc_score

    classes = np.asarray(classes, dtype=int)
    known = ~np.isnan(probabilities).any(axis=1)
    predicted = np.where(known, np.nan_to_num(probabilities).argmax(axis=1), -1)
    confusion = np.zeros((3, 3), dtype=int)
    for true, guess in zip(classes[known], predicted[known]):
        confusion[true, guess] += 1
    auc = []
    for quality_class in range(3):
        positives = classes[known] == quality_class
        if positives.all() or not positives.any():
            auc.append(float("nan"))
        else:
            auc.append(float(roc_auc_score(positives, probabilities[known, quality_class])))
    n_poor = int((classes == POOR).sum())
    poor_as_acceptable = float(confusion[POOR, ACCEPTABLE] / n_poor) if n_poor else float("nan")
    return QualityReport(confusion, float((predicted == classes).mean()), tuple(auc), poor_as_acceptable,
                         len(classes))


class _BaseRate:
    """Rates every prediction alike when the examples hold one quality class only: Laplace's
    rule of succession over the 3 classes, ``(n_c + 1) / (n + 3)`` (7 Poor examples: Poor 0.8)."""

    def __init__(self, classes: np.ndarray) -> None:
        counts = np.bincount(np.asarray(classes, dtype=int), minlength=3)[:3]
        self.classes_ = np.arange(3)
        self.probabilities = (counts + 1.0) / (counts.sum() + 3.0)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.tile(self.probabilities, (len(features), 1))


def _estimator(model: str, seed: int, smallest_class: int):
    """The classifier, calibrated (sigmoid, up to 3 folds) when every class has 2+ examples."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "logistic":
        base = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    else:
        base = GradientBoostingClassifier(n_estimators=100, max_depth=2, learning_rate=0.1,
                                          subsample=0.8, random_state=seed)
    if smallest_class < 2:
        return base
    return CalibratedClassifierCV(base, method="sigmoid", cv=min(3, smallest_class))


def _checked_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=float)
    if features.ndim != 2 or features.shape[1] != len(FEATURE_NAMES):
        raise AlsegError(f"quality features must be (N, {len(FEATURE_NAMES)}), got {features.shape}")
    if not np.isfinite(features).all():
        raise AlsegError("quality features contain NaN or infinite values")
    return features


def _checked_examples(features: np.ndarray, dice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
