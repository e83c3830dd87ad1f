"""Quality predictor (docs/METHODS.md §6.1): classes, features, predicted Dice with its interval,
persistence."""

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.quality import (
    ACCEPTABLE,
    ADJUST,
    FEATURE_NAMES,
    POOR,
    PRIOR_INDEX,
    QualityPredictor,
    QualityThresholds,
    prediction_dice,
    quality_features,
)
from napari_alseg.quality_report import cross_validate, quality_report


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


def prior_examples(n=60, seed=0, shift=-0.25, noise=0.05):
    """True Dice = soft Dice + ``shift`` + noise (an over-confident model); other features noise."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, len(FEATURE_NAMES)))
    soft = rng.uniform(0.4, 1.0, n)
    features[:, PRIOR_INDEX] = soft
    return features, np.clip(soft + shift + rng.normal(0, noise, n), 0.0, 1.0)


def test_without_examples_the_rating_is_the_soft_dice_with_a_wide_interval_and_says_so():
    features, _ = prior_examples(5)
    predictor = QualityPredictor()
    assert predictor.n_examples == 0 and predictor.reason == ""
    assert "uncalibrated" in predictor.note
    dice, low, high = predictor.predict_dice(features)
    np.testing.assert_allclose(dice, features[:, PRIOR_INDEX], atol=1e-6)
    assert np.all((high - dice >= 0.3) | (high == 1.0)) and np.all((dice - low >= 0.3) | (low == 0.0))
    estimates = predictor.estimate(features)
    assert [e.quality_class for e in estimates] == QualityThresholds().classify(dice).tolist()


def test_the_class_is_the_band_of_the_predicted_dice():
    features, _ = prior_examples(3)
    features[:, PRIOR_INDEX] = [0.5, 0.7, 0.9]
    estimates = QualityPredictor().estimate(features)
    assert [e.quality_class for e in estimates] == [POOR, ADJUST, ACCEPTABLE]
    assert estimates[1].class_name == "Acceptable with adjustments"
    assert QualityPredictor().predict(features).tolist() == [POOR, ADJUST, ACCEPTABLE]


def test_all_poor_examples_still_rank_items_by_their_prediction():
    features, dice = prior_examples(7, shift=-0.6)
    assert (QualityThresholds().classify(dice) == POOR).all()
    predictor = QualityPredictor().fit(features, dice)
    candidates, _ = prior_examples(20, seed=1)
    predicted = predictor.predict_dice(candidates)[0]
    order = np.argsort(candidates[:, PRIOR_INDEX])
    assert np.all(np.diff(predicted[order]) > 0)  # strictly increasing with the soft Dice
    assert predicted.max() < 0.6  # and the level follows the examples: Poor
    probabilities = predictor.predict_proba(candidates)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    assert len(set(np.round(probabilities[:, POOR], 6))) > 1  # not one base rate for all


def test_few_examples_pull_the_calibration_towards_them_and_the_note_says_how_few():
    features, dice = prior_examples(3)
    predictor = QualityPredictor().fit(features, dice)
    assert predictor.n_examples == 3 and "only 3" in predictor.note
    candidates, _ = prior_examples(10, seed=2)
    shifted = predictor.predict_dice(candidates)[0] - candidates[:, PRIOR_INDEX]
    assert np.all(shifted < -0.03)  # below the uncalibrated soft Dice, as the examples are


def test_many_examples_recover_the_calibration_and_an_honest_interval():
    features, dice = prior_examples(80, noise=0.05)
    predictor = QualityPredictor(model="prior").fit(features[:60], dice[:60])
    assert predictor.note == ""
    predicted, low, high = predictor.predict_dice(features[60:])
    assert np.abs(predicted - dice[60:]).mean() < 0.06
    inside = ((dice[60:] >= low) & (dice[60:] <= high)).mean()
    assert 0.6 <= inside <= 1.0 and (high - low).mean() < 0.3


def test_robust_to_an_outlier_example():
    features, dice = prior_examples(30, noise=0.02)
    spoiled = dice.copy()
    spoiled[0] = 1.0 - spoiled[0] + 0.5  # one wildly wrong Dice (clipped)
    spoiled = np.clip(spoiled, 0, 1)
    clean = QualityPredictor(model="prior").fit(features, dice).predict_dice(features)[0]
    robust = QualityPredictor(model="prior").fit(features, spoiled).predict_dice(features)[0]
    assert np.abs(clean - robust)[1:].max() < 0.03


def test_features_join_only_when_they_help():
    features, dice = prior_examples(60, noise=0.01)
    informative = features.copy()
    other = [i for i in range(len(FEATURE_NAMES)) if i != PRIOR_INDEX][0]
    signal = np.random.default_rng(5).normal(size=60)
    informative[:, other] = signal
    with_signal = np.clip(dice + 0.1 * signal, 0, 1)
    assert QualityPredictor().fit(informative, with_signal).uses_features
    assert not QualityPredictor(model="prior").fit(informative, with_signal).uses_features
    assert not QualityPredictor().fit(features[:10], dice[:10]).uses_features  # too few examples to try


def test_v1_files_are_refused_clearly(tmp_path):
    import joblib

    path = tmp_path / "old.joblib"
    joblib.dump({"format": "napari-alseg-quality", "version": 1, "feature_names": FEATURE_NAMES}, path)
    with pytest.raises(AlsegError, match="version 1.*refit"):
        QualityPredictor.load(path)


def test_save_and_load_round_trip(tmp_path):
    features, dice = prior_examples(40)
    predictor = QualityPredictor(QualityThresholds(0.5, 0.85)).fit(features, dice)
    loaded = QualityPredictor.load(predictor.save(tmp_path / "models" / "quality.joblib"))
    assert loaded.thresholds == QualityThresholds(0.5, 0.85) and loaded.n_examples == 40
    np.testing.assert_allclose(loaded.predict_proba(features), predictor.predict_proba(features))
    assert loaded.estimate(features) == predictor.estimate(features) and loaded.note == predictor.note
    (tmp_path / "junk.joblib").write_bytes(b"not a model")
    with pytest.raises(AlsegError):
        QualityPredictor.load(tmp_path / "junk.joblib")


def test_cross_validation_report():
    features, dice = prior_examples(60, shift=-0.1)
    report = cross_validate(features, dice, folds=3)
    assert report.confusion.sum() == 60 and report.n_examples == 60
    assert report.accuracy >= 0.7 and all(0.8 < auc <= 1.0 for auc in report.auc)
    assert 0.0 <= report.poor_as_acceptable <= 0.1 and report.spearman > 0.9


def test_report_counts_the_costly_error():
    classes = np.array([POOR, POOR, ADJUST, ACCEPTABLE])
    probabilities = np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    report = quality_report(classes, probabilities)
    assert report.poor_as_acceptable == 0.5 and report.accuracy == 0.75
    assert report.confusion[POOR, ACCEPTABLE] == 1
