"""How well the quality predictor rates predictions (docs/METHODS.md §6): its out-of-fold
ratings scored against the true quality classes and Dice (confusion, AUC, Spearman).

Evaluation only (scikit-learn, imported when called): the product rates with
:class:`~napari_alseg.quality.QualityPredictor` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .quality import ACCEPTABLE, ADJUST, POOR, QualityPredictor, QualityThresholds, checked_examples


@dataclass(frozen=True)
class QualityReport:
    """Cross-validated performance. ``confusion[true, predicted]`` counts (3×3);
    ``auc`` one-vs-rest per class (NaN when a class is absent); ``poor_as_acceptable``:
    the costly error, the share of truly Poor predictions classed Acceptable; ``spearman``:
    rank correlation of predicted and true Dice (NaN when not given or constant)."""

    confusion: np.ndarray
    accuracy: float
    auc: tuple[float, float, float]
    poor_as_acceptable: float
    n_examples: int
    spearman: float = float("nan")


def cross_validate(features: np.ndarray, dice: np.ndarray, *, thresholds: QualityThresholds = QualityThresholds(),
                   model: str = "auto", folds: int = 5, seed: int = 0,
                   groups: np.ndarray | None = None) -> QualityReport:
    """Out-of-fold predictions of :class:`QualityPredictor` and their :class:`QualityReport`.

    ``groups`` (e.g. the case of each example) keeps all examples of a group in one fold,
    so a case seen in training never rates itself.
    """
    from sklearn.model_selection import GroupKFold, KFold

    features, dice = checked_examples(features, dice)
    if groups is None:
        splits = KFold(folds, shuffle=True, random_state=seed).split(features)
    else:
        splits = GroupKFold(folds).split(features, dice, groups)
    probabilities = np.full((len(dice), 3), np.nan)
    predicted = np.full(len(dice), np.nan)
    for train, test in splits:
        predictor = QualityPredictor(thresholds, model, seed).fit(features[train], dice[train])
        probabilities[test] = predictor.predict_proba(features[test])
        predicted[test] = predictor.predict_dice(features[test])[0]
    return quality_report(thresholds.classify(dice), probabilities, dice=dice, predicted_dice=predicted,
                          thresholds=thresholds)


def quality_report(classes: np.ndarray, probabilities: np.ndarray, *, dice: np.ndarray | None = None,
                   predicted_dice: np.ndarray | None = None,
                   thresholds: QualityThresholds = QualityThresholds()) -> QualityReport:
    """:class:`QualityReport` of true ``classes`` ``(N,)`` and predicted ``(N, 3)`` probabilities.

    With ``predicted_dice`` the predicted class is its band (as the predictor answers), else the
    most probable class; with ``dice`` too (the true Dice) the Spearman correlation of the two.
    Rows with NaN probabilities are unknown and count as errors.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    classes = np.asarray(classes, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    known = ~np.isnan(probabilities).any(axis=1)
    if predicted_dice is not None:
        predicted_dice = np.asarray(predicted_dice, dtype=float)
        known &= np.isfinite(predicted_dice)
        predicted = np.where(known, thresholds.classify(np.nan_to_num(predicted_dice)), -1)
    else:
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
    spearman = float("nan")
    if dice is not None and predicted_dice is not None and known.sum() >= 3:
        truth, guess = np.asarray(dice, dtype=float)[known], predicted_dice[known]
        if np.ptp(truth) > 0 and np.ptp(guess) > 0:
            spearman = float(spearmanr(truth, guess).statistic)
    return QualityReport(confusion, float((predicted == classes).mean()), (auc[POOR], auc[ADJUST], auc[ACCEPTABLE]),
                         poor_as_acceptable,
                         len(classes), spearman)
