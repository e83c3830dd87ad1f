"""Prediction, sliding windows and MC dropout (head-only sampler vs T full passes)."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_alseg.errors import AlsegError
from napari_alseg.model.inference import mc_dropout, mc_dropout_full_passes, mc_dropout_mode, predict_proba
from napari_alseg.model.networks import ModelSpec

TINY = (4, 8, 8, 8, 16, 4)
NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def tiny_net(spatial_dims=2, in_channels=1, n_classes=3, norm="instance", dropout=0.5):
    torch.manual_seed(0)
    return ModelSpec(spatial_dims, in_channels, n_classes, TINY, dropout=dropout, norm=norm).build()


def square_image(in_channels=1, shape=(32, 32)):
    image = np.random.default_rng(0).normal(0, 0.1, (in_channels, *shape)).astype(np.float32)
    image[(slice(None), *(slice(size // 4, 3 * size // 4) for size in shape))] += 1.0
    return image


def test_predict_proba_shape_and_normalisation():
    probs = predict_proba(tiny_net(), square_image(shape=(30, 34)))
    assert probs.shape == (3, 30, 34) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize(("spatial_dims", "shape", "patch"), [(2, (70, 50), (32, 32)), (3, (40, 20, 24), (32, 32, 32))])
def test_sliding_window_prediction_on_image_larger_than_patch(spatial_dims, shape, patch):
    net = tiny_net(spatial_dims, in_channels=2, n_classes=4)
    image = square_image(2, shape)
    probs = predict_proba(net, image, patch_size=patch)
    assert probs.shape == (4, *shape)
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    result = mc_dropout(net, image, samples=3, seed=1, patch_size=patch)
    assert result.mean_probs.shape == result.variance.shape == (4, *shape)
    assert result.features.shape == (TINY[4],)
    assert np.allclose(result.mean_probs.sum(axis=0), 1.0, atol=1e-5)


def test_head_only_sampler_matches_full_passes():
    net = tiny_net()
    image = square_image(shape=(36, 32))
    head_only = mc_dropout(net, image, samples=6, seed=7)
    full = mc_dropout_full_passes(net, image, samples=6, seed=7)
    assert np.allclose(head_only.mean_probs, full.mean_probs, atol=1e-5)
    assert np.allclose(head_only.variance, full.variance, atol=1e-6)
    assert np.allclose(head_only.features, full.features, atol=1e-5)
    assert head_only.variance.max() > 1e-6
    again = mc_dropout(net, image, samples=6, seed=7)
    assert np.allclose(again.variance, head_only.variance, atol=1e-6)
    assert not np.allclose(mc_dropout(net, image, samples=6, seed=8).variance, head_only.variance)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_mc_mode_switches_on_only_dropout_and_restores_modes(norm):
    net = tiny_net(norm=norm).train()
    net.conv_0.eval()
    before = {name: module.training for name, module in net.named_modules()}
    norms = [module for module in net.modules() if isinstance(module, NORM_TYPES)]
    seen_in_forward = []
    for module in norms:
        module.register_forward_pre_hook(lambda module, inputs: seen_in_forward.append(module.training))
    with mc_dropout_mode(net):
        modes = {type(module): module.training for module in net.modules()}
        assert modes[nn.Dropout] is True
        assert not any(module.training for module in norms)
        assert sum(isinstance(module, nn.Dropout) and module.training for module in net.modules()) == 1
    mc_dropout(net, square_image(), samples=2)
    assert seen_in_forward and not any(seen_in_forward)
    assert {name: module.training for name, module in net.named_modules()} == before


def test_inference_leaves_caller_state_alone():
    net = tiny_net().train()
    rng_state = torch.get_rng_state()
    predict_proba(net, square_image())
    mc_dropout(net, square_image(), samples=2, seed=3)
    assert net.training and all(module.training for module in net.modules())
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_bad_inputs_are_user_errors():
    net = tiny_net()
    with pytest.raises(AlsegError, match="at least 2 samples"):
        mc_dropout(net, square_image(), samples=1)
    with pytest.raises(AlsegError, match="channel"):
        predict_proba(net, square_image(in_channels=2))
    with pytest.raises(AlsegError, match="patch_size"):
        predict_proba(net, square_image(), patch_size=(32, 32, 32))
