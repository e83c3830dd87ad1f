"""Quality predictor (METHODS A): classes, features, fitting, fallback, persistence."""

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.quality import (
    ACCEPTABLE,
    ADJUST,
    FEATURE_NAMES,
    POOR,
    QualityPredictor,
    QualityThresholds,
    cross_validate,
    prediction_dice,
    quality_features,
    quality_report,
)


def test_thresholds_follow_the_paper_bands_and_are_configurable():
    dice = [0.59, 0.6, 0.8, 0.81]
    assert QualityThresholds().classify(dice).tolist() == [POOR, ADJUST, ADJUST, ACCEPTABLE]
    assert QualityThresholds(poor=0.7, acceptable=0.9).classify([0.65, 0.85]).tolist() == [POOR, ADJUST]
    with pytest.raises(AlsegError):
        QualityThresholds(poor=0.9, acceptable=0.8)


def blob_prediction(confidence, shape=(8, 16, 16)):
    """A cube predicted as class 1 with probability ``confidence``; image bright inside."""
    probs = np.zeros((2, *shape), np.float32)
    inside = np.zeros(shape, bool)
    inside[2:6, 4:12, 4:12] = True
    probs[1] = np.where(inside, confidence, 1 - confidence)
    probs[0] = 1 - probs[1]
    image = (inside.astype(np.float32) + 0.1)[None]
    variance = np.full(probs.shape, (1 - confidence) * 0.01, np.float32)
    return image, probs, variance


def test_features_are_finite_named_and_track_confidence():
    crisp = quality_features(*blob_prediction(0.99))
    hesitant = quality_features(*blob_prediction(0.6))
    assert crisp.shape == (len(FEATURE_NAMES),) and np.isfinite(crisp).all()
    index = FEATURE_NAMES.index
    assert crisp[index("mean_soft_dice")] > hesitant[index("mean_soft_dice")]
    assert crisp[index("mean_entropy_foreground")] < hesitant[index("mean_entropy_foreground")]
    assert crisp[index("log_components")] == pytest.approx(np.log(2))
    image, probs, variance = blob_prediction(0.99)
    nothing = np.stack([np.ones_like(probs[0]), np.zeros_like(probs[0])])
    empty = quality_features(image, nothing, variance)
    assert np.isfinite(empty).all() and empty[index("log_foreground_voxels")] == 0.0


def test_prediction_dice_is_mean_foreground_dice():
    labels = np.zeros((4, 4), int)
    labels[:2] = 1
    probs = np.stack([labels == 0, labels == 1]).astype(float)
    assert prediction_dice(probs, labels, 2) == 1.0
    assert prediction_dice(probs[::-1], labels, 2) == 0.0
    assert prediction_dice(np.stack([np.ones((4, 4)), np.zeros((4, 4))]), np.zeros((4, 4), int), 2) == 1.0
    swapped = np.where(labels == 1, 2, 0)  # right region, wrong class
    three = np.stack([labels == 0, labels == 1, np.zeros((4, 4))]).astype(float)
    assert prediction_dice(three, swapped, 3) == 0.0
    assert prediction_dice(three, swapped, 3, whole=True) == 1.0


def separable_examples(n=60, seed=0):
    """Dice driven by two features with a little noise; the rest is noise."""
    rng = np.random.default_rng(seed)
    dice = rng.uniform(0.3, 1.0, n)
    features = rng.normal(size=(n, len(FEATURE_NAMES)))
    features[:, 0] = dice * 5 + rng.normal(0, 0.1, n)
    features[:, 1] = -dice * 3 + rng.normal(0, 0.1, n)
    return features, dice


@pytest.mark.parametrize(("model", "min_accuracy"), [("boosting", 0.8), ("logistic", 0.6)])
def test_fitted_predictor_separates_the_classes(model, min_accuracy):
    # Logistic regression rarely predicts the middle class with few examples and many
    # uninformative features; that is why boosting is the default.
    features, dice = separable_examples()
    predictor = QualityPredictor(model=model).fit(features[:40], dice[:40])
    assert predictor.fitted and predictor.reason == ""
    probabilities = predictor.predict_proba(features[40:])
    assert probabilities.shape == (20, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    truth = QualityThresholds().classify(dice[40:])
    assert (predictor.predict(features[40:]) == truth).mean() >= min_accuracy


def test_too_few_examples_leave_quality_unknown():
    features, dice = separable_examples(5)
    few = QualityPredictor().fit(features, dice)
    assert not few.fitted and "at least 6" in few.reason and few.n_examples == 5
    assert np.isnan(few.predict_proba(features)).all()
    assert (few.predict(features) == -1).all()


def test_single_class_examples_give_their_base_rate_and_say_so(tmp_path):
    features, _ = separable_examples(7)
    single = QualityPredictor().fit(features, np.full(7, 0.2))
    assert single.fitted and single.reason == "" and single.n_examples == 7
    assert "all 7 rated predictions were Poor" in single.note
    np.testing.assert_allclose(single.predict_proba(features[:2]), [[0.8, 0.1, 0.1]] * 2)
    assert (single.predict(features) == POOR).all()
    reloaded = QualityPredictor.load(single.save(tmp_path / "q.joblib"))
    np.testing.assert_allclose(reloaded.predict_proba(features[:1]), [[0.8, 0.1, 0.1]])
    assert reloaded.note == single.note and reloaded.n_examples == 7


def test_two_classes_present_still_give_three_columns():
    features, _ = separable_examples(12)
    dice = np.array([0.3] * 6 + [0.9] * 6)
    features[:, 0] = dice * 5
    probabilities = QualityPredictor().fit(features, dice).predict_proba(features)
    assert probabilities.shape == (12, 3) and np.all(probabilities[:, ADJUST] == 0.0)


def test_save_and_load_round_trip(tmp_path):
    features, dice = separable_examples()
    predictor = QualityPredictor(QualityThresholds(0.5, 0.85), model="logistic").fit(features, dice)
    loaded = QualityPredictor.load(predictor.save(tmp_path / "models" / "quality.joblib"))
    assert loaded.thresholds == QualityThresholds(0.5, 0.85)
    np.testing.assert_allclose(loaded.predict_proba(features), predictor.predict_proba(features))
    (tmp_path / "junk.joblib").write_bytes(b"not a model")
    with pytest.raises(AlsegError):
        QualityPredictor.load(tmp_path / "junk.joblib")


def test_cross_validation_report():
    features, dice = separable_examples(60)
    report = cross_validate(features, dice, folds=3)
    assert report.confusion.sum() == 60 and report.n_examples == 60
    assert report.accuracy >= 0.8 and all(0.5 < auc <= 1.0 for auc in report.auc)
    assert 0.0 <= report.poor_as_acceptable <= 0.1


def test_report_counts_the_costly_error():
    classes = np.array([POOR, POOR, ADJUST, ACCEPTABLE])
    probabilities = np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    report = quality_report(classes, probabilities)
    assert report.poor_as_acceptable == 0.5 and report.accuracy == 0.75
    assert report.confusion[POOR, ACCEPTABLE] == 1
