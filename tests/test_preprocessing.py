"""Intensity normalisation: per channel, over the body, robust to a few extreme voxels."""

import numpy as np

from napari_alseg.model.preprocessing import normalise_image


def test_body_is_z_scored_per_channel_and_background_stays_zero():
    rng = np.random.default_rng(0)
    image = np.zeros((2, 20, 20), np.float32)
    image[0, 5:15, 5:15] = rng.normal(300, 20, (10, 10))
    image[1, 5:15, 5:15] = rng.normal(-5, 2, (10, 10))
    out = normalise_image(image, 2)
    body = image[0] != 0
    assert out.dtype == np.float32 and np.all(out[:, ~body] == 0)
    for channel in out:
        assert abs(channel[body].mean()) < 1e-5 and abs(channel[body].std() - 1) < 0.05


def test_a_few_extreme_voxels_do_not_squash_the_contrast():
    rng = np.random.default_rng(1)
    tissue = rng.choice([100.0, 200.0], size=(1, 40, 40)).astype(np.float32)
    spiked = tissue.copy()
    spiked[0, 0, :3] = 1e6
    gap = lambda image: np.ptp(np.unique(np.round(normalise_image(image, 2)[0, 1:], 3)))
    assert gap(spiked) > 0.9 * gap(tissue)
