"""Uncertainty scores on probability maps whose right answer is known by construction."""

import math

import numpy as np
import pytest

from napari_alseg.errors import AlsegError
from napari_alseg.uncertainty import (
    bootstrap_score,
    class_entropy,
    class_mean_variance_map,
    class_mean_variance_sum,
    dice_gap,
    entropy_map,
    margin_score,
    mc_variance_map,
    mean_entropy,
    top_fraction_mean,
)


def foreground_map(p_fg, shape=(4, 4)):
    """Two-class probabilities (2, *shape) with a constant foreground probability."""
    return np.stack([np.full(shape, 1 - p_fg), np.full(shape, p_fg)])


def test_entropy_is_max_for_uniform_and_zero_for_one_hot():
    uniform = np.full((4, 3, 3), 0.25)
    np.testing.assert_allclose(entropy_map(uniform), math.log(4))
    one_hot = np.zeros((4, 3, 3))
    one_hot[2] = 1.0
    np.testing.assert_array_equal(entropy_map(one_hot), 0.0)
    skewed = np.stack([np.full((3, 3), p) for p in (0.7, 0.1, 0.1, 0.1)])
    assert mean_entropy(skewed) < mean_entropy(uniform) == pytest.approx(math.log(4))


def test_mean_entropy_over_mask():
    probs = np.concatenate([foreground_map(0.5, (2, 2)), foreground_map(1.0, (2, 2))], axis=2)
    mask = np.zeros((2, 4), bool)
    mask[:, :2] = True
    assert mean_entropy(probs, mask) == pytest.approx(math.log(2))
    assert mean_entropy(probs) == pytest.approx(math.log(2) / 2)
    assert mean_entropy(probs, np.zeros((2, 4), bool)) == 0.0


def binary(p):
    """Binary entropy in nats."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_class_entropy_is_binary_entropy_over_the_predicted_region():
    probs = np.zeros((3, 1, 4))
    probs[:, 0, 0] = [0.1, 0.6, 0.3]  # predicted class 1
    probs[:, 0, 1] = [0.2, 0.8, 0.0]  # predicted class 1
    probs[:, 0, 2:] = [[1.0], [0.0], [0.0]]  # background
    expected = (binary(0.6) + binary(0.8)) / 2
    assert class_entropy(probs, 1) == pytest.approx(expected)
    region = np.array([[True, False, False, False]])
    assert class_entropy(probs, 1, region) == pytest.approx(binary(0.6))
    assert class_entropy(probs, 2) == 0.0  # never predicted: nothing to delineate
    with pytest.raises(AlsegError):
        class_entropy(probs, 3)


def test_margins_pick_the_map_nearest_one_half():
    near_half, confident = foreground_map(0.45), foreground_map(0.9)
    assert margin_score(near_half) == pytest.approx(-0.05)
    assert margin_score(near_half) > margin_score(confident)
    three_class = np.stack([np.full((2, 2), 0.5), np.full((2, 2), 0.3), np.full((2, 2), 0.2)])
    assert margin_score(three_class) == pytest.approx(0.0)  # p_fg = 1 - p_background
    assert margin_score(np.full((1, 2, 2), 0.7)) == pytest.approx(-0.2)  # sigmoid output


def alternating_samples(low, high, where):
    """(T=2, C=2, *shape) members alternating p_fg between low and high inside ``where``."""
    members = []
    for p in (low, high):
        p_fg = np.where(where, p, 0.0)
        members.append(np.stack([1 - p_fg, p_fg]))
    return np.stack(members)


def test_mc_variance_map_and_class_mean():
    samples = alternating_samples(0.1, 0.9, np.ones((2, 3), bool))
    variance = mc_variance_map(samples)
    assert variance.shape == (2, 2, 3)
    np.testing.assert_allclose(variance, 0.16)
    np.testing.assert_allclose(class_mean_variance_map(samples), 0.16)
    with pytest.raises(AlsegError):
        mc_variance_map(samples[:1])


def test_top_fraction_localises_while_the_volume_sum_prefers_broad_noise():
    shape = (20, 20, 20)
    blob = np.zeros(shape, bool)
    blob[8:11, 8:11, 8:11] = True  # 27 voxels, very uncertain
    small_blob = alternating_samples(0.1, 0.9, blob)
    broad_noise = alternating_samples(0.4, 0.6, np.ones(shape, bool))

    blob_top = top_fraction_mean(class_mean_variance_map(small_blob))
    noise_top = top_fraction_mean(class_mean_variance_map(broad_noise))
    assert blob_top == pytest.approx(0.16)
    assert noise_top == pytest.approx(0.01)
    assert blob_top > noise_top  # docs/METHODS.md §3.4: Kim et al.'s score localises to the ROI

    # docs/METHODS.md §3.5 sums V over the volume: 27 × 0.16 = 4.32 < 8000 × 0.01 = 80.
    assert class_mean_variance_sum(small_blob) == pytest.approx(27 * 0.16)
    assert class_mean_variance_sum(broad_noise) == pytest.approx(8000 * 0.01)
    assert class_mean_variance_sum(broad_noise) > class_mean_variance_sum(small_blob)


def test_top_fraction_keeps_at_least_one_voxel():
    values = np.arange(10.0)
    assert top_fraction_mean(values) == 9.0
    assert top_fraction_mean(values, fraction=0.3) == pytest.approx(8.0)
    assert top_fraction_mean(values, fraction=1.0) == pytest.approx(4.5)
    with pytest.raises(AlsegError):
        top_fraction_mean(values, fraction=0.0)


def test_bootstrap_score_is_mean_variance_across_members():
    where = np.zeros((4, 5), bool)
    where[0, :2] = True
    members = alternating_samples(0.1, 0.9, where)
    assert bootstrap_score(members) == pytest.approx(0.16 * 2 / 20)
    agreeing = np.stack([foreground_map(0.3)] * 3)
    assert bootstrap_score(agreeing) == pytest.approx(0.0, abs=1e-12)


def test_dice_gap_formula():
    assert dice_gap([]) == 1.0
    assert dice_gap([0.8]) == pytest.approx(0.2)
    assert dice_gap([0.6, 0.7, 0.8]) == pytest.approx(1 - (0.5 * 0.8 + 0.5 * 0.7))
    assert dice_gap([0.6, 0.7, 0.8], alpha=0.75) == pytest.approx(1 - (0.75 * 0.8 + 0.25 * 0.7))
    with pytest.raises(AlsegError):
        dice_gap([0.5], alpha=1.5)


@pytest.mark.parametrize(
    "score",
    [
        entropy_map,
        mean_entropy,
        margin_score,
        lambda probs: class_entropy(probs, 1),
        lambda probs: mc_variance_map(np.stack([probs, probs])),
        lambda probs: class_mean_variance_sum(np.stack([probs, probs])),
        lambda probs: bootstrap_score(np.stack([probs, probs])),
        lambda probs: top_fraction_mean(probs[1]),
    ],
)
def test_nan_inputs_raise(score):
    probs = foreground_map(0.5)
    probs[1, 0, 0] = np.nan
    with pytest.raises(AlsegError, match="NaN"):
        score(probs)


def test_nan_dice_history_raises():
    with pytest.raises(AlsegError, match="NaN"):
        dice_gap([0.5, float("nan")])
