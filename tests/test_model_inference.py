"""Prediction, sliding windows and MC dropout (head-only sampler vs T full passes).

Stated tolerance of the head-only sampler against the full-pass reference (same masks):
mean-probability and variance maps within MAP_TOLERANCE (absolute), the scores made
from them (mc_top, mc_sum, entropy_mc) within SCORE_TOLERANCE (relative). Against
nn.Dropout's own masks the agreement is statistical (see the test at the end).
"""

import numpy as np
import pytest
import torch
from torch import nn

from napari_alseg.errors import AlsegError
from napari_alseg.model import head_moments, inference, networks
from napari_alseg.model.inference import (
    _dropped_features,
    _keep_mask,
    mc_dropout,
    mc_dropout_full_passes,
    predict_proba,
)
from napari_alseg.model.modes import mc_dropout_mode
from napari_alseg.model.networks import ModelSpec
from napari_alseg.model.preprocessing import normalise_image
from napari_alseg.scoring import region_terms

TINY = (4, 8, 8, 8, 16, 4)
NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d, nn.InstanceNorm3d)
MAP_TOLERANCE = 1e-5
SCORE_TOLERANCE = 1e-5


def tiny_net(spatial_dims=2, in_channels=1, n_classes=3, norm="instance", dropout=0.5, zoom=()):
    torch.manual_seed(0)
    net = ModelSpec(spatial_dims, in_channels, n_classes, TINY, dropout=dropout, norm=norm, zoom=zoom).build()
    for module in net.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return net


def assert_scores_agree(head_only, full):
    """The stated tolerance: maps within MAP_TOLERANCE, derived scores within SCORE_TOLERANCE."""
    assert np.abs(head_only.mean_probs - full.mean_probs).max() <= MAP_TOLERANCE
    assert np.abs(head_only.variance - full.variance).max() <= MAP_TOLERANCE
    assert np.allclose(head_only.features, full.features, atol=1e-5)
    terms, reference = (
        region_terms(result.mean_probs, result.mean_probs, result.variance) for result in (head_only, full)
    )
    for name in ("mc_top", "mc_sum", "entropy_mc"):
        assert terms[name] == pytest.approx(reference[name], rel=SCORE_TOLERANCE, abs=1e-9)


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
    full = mc_dropout_full_passes(net, image, samples=3, seed=1, patch_size=patch)
    assert np.abs(result.mean_probs - full.mean_probs).max() <= MAP_TOLERANCE
    # Blending both moments gives the mixture's variance: never below that of blended samples.
    assert (result.variance >= full.variance - MAP_TOLERANCE).all()


def test_head_only_sampler_matches_full_passes():
    net = tiny_net()
    image = square_image(shape=(36, 32))
    head_only = mc_dropout(net, image, samples=6, seed=7)
    assert_scores_agree(head_only, mc_dropout_full_passes(net, image, samples=6, seed=7))
    assert head_only.variance.max() > 1e-3
    again = mc_dropout(net, image, samples=6, seed=7)
    assert np.array_equal(again.variance, head_only.variance)
    assert not np.allclose(mc_dropout(net, image, samples=6, seed=8).variance, head_only.variance)


@pytest.mark.parametrize(
    ("spatial_dims", "shape", "norm", "zoom"),
    [
        (2, (30, 34), "batch", ()),
        (3, (20, 24, 18), "instance", ()),
        (3, (17, 20, 33), "batch", ()),
        (2, (50, 38), "instance", (0.5, 0.5)),
        (3, (24, 30, 20), "instance", (0.5, 1.0, 0.75)),
    ],
)
def test_head_only_sampler_matches_full_passes_for_each_norm_padding_and_zoom(spatial_dims, shape, norm, zoom):
    net = tiny_net(spatial_dims, in_channels=2, n_classes=4, norm=norm, zoom=zoom)
    image = square_image(2, shape)
    head_only = mc_dropout(net, image, samples=5, seed=3)
    assert head_only.mean_probs.shape == (4, *shape)
    assert_scores_agree(head_only, mc_dropout_full_passes(net, image, samples=5, seed=3))
    assert head_only.variance.max() > 1e-6


@pytest.mark.parametrize(("spatial_dims", "shape"), [(2, (36, 30)), (3, (18, 20, 17))])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_softmax_moments_equal_the_block_run_sample_by_sample(spatial_dims, shape, norm, monkeypatch):
    monkeypatch.setattr(head_moments, "SOFTMAX_MOMENTS_TILE", 999)  # many tiles, a short last one
    net = tiny_net(spatial_dims, n_classes=4, norm=norm)
    block = net.last_block
    with mc_dropout_mode(net), torch.no_grad():
        decoder_features, skip, _ = net.backbone(torch.from_numpy(square_image(shape=shape))[None])
        dropped = _dropped_features(block.dropout, decoder_features, range(5))
        mean, variance = head_moments.softmax_moments(block, [dropped[:2], dropped[2:]], skip, shape)
        probs = networks.crop_spatial(torch.softmax(block.decode(dropped, skip), dim=1), shape).double()
    assert mean.shape == variance.shape == (4, *shape)
    assert torch.allclose(mean, probs.mean(dim=0), atol=MAP_TOLERANCE)
    assert torch.allclose(variance, probs.var(dim=0, unbiased=False), atol=MAP_TOLERANCE)


def test_softmax_moments_shift_logits_too_large_to_exponentiate():
    net = tiny_net(n_classes=4)
    block = net.last_block
    with torch.no_grad():
        block.final_conv.weight.mul_(500.0)
    with mc_dropout_mode(net), torch.no_grad():
        decoder_features, skip, _ = net.backbone(torch.from_numpy(square_image())[None])
        dropped = _dropped_features(block.dropout, decoder_features, range(3))
        logits = block.decode(dropped, skip)
        mean, _ = head_moments.softmax_moments(block, [dropped], skip, (32, 32))
    assert logits.abs().max() > 200
    assert torch.isfinite(mean).all()
    assert torch.allclose(mean, torch.softmax(logits, dim=1).mean(dim=0).double(), atol=MAP_TOLERANCE)


def test_chunks_and_tiles_do_not_change_the_scores(monkeypatch):
    net = tiny_net(3, n_classes=4)
    image = square_image(shape=(20, 18, 24))
    default = mc_dropout(net, image, samples=6, seed=2)
    monkeypatch.setattr(inference, "MC_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(head_moments, "SOFTMAX_MOMENTS_TILE", 500)
    one_at_a_time = mc_dropout(net, image, samples=6, seed=2)
    assert np.abs(one_at_a_time.mean_probs - default.mean_probs).max() <= MAP_TOLERANCE
    assert np.abs(one_at_a_time.variance - default.variance).max() <= MAP_TOLERANCE


def test_without_dropout_every_sample_is_the_plain_prediction():
    net = tiny_net(dropout=0.0)
    image = square_image(shape=(36, 32))
    head_only = mc_dropout(net, image, samples=4)
    assert np.abs(head_only.mean_probs - predict_proba(net, image)).max() <= 1e-6
    assert head_only.variance.max() <= 1e-12
    assert mc_dropout_full_passes(net, image, samples=4).variance.max() <= 1e-12


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_keep_masks_keep_each_element_with_probability_one_minus_p(p):
    keep = np.empty(1_000_000, np.bool_)
    _keep_mask(np.random.SFC64(0), p, keep)
    standard_error = np.sqrt(p * (1 - p) / keep.size)
    assert abs(keep.mean() - (1 - p)) < 5 * standard_error
    other = np.empty_like(keep)
    _keep_mask(np.random.SFC64(1), p, other)
    assert (keep != other).mean() == pytest.approx(2 * p * (1 - p), abs=0.01)


def test_sample_moments_keep_the_tiny_variance_of_nearly_certain_probabilities():
    samples = (0.999 + 1e-5 * np.random.default_rng(0).standard_normal((20, 1000))).astype(np.float32)
    moments = head_moments.SampleMoments((1000,), torch.device("cpu"))
    for batch in (samples[:7], samples[7:13], samples[13:]):
        for part in (slice(0, 400), slice(400, 1000)):
            moments.update(torch.from_numpy(batch[:, part].copy()), (part,))
        moments.advance(len(batch))
    mean, variance = moments.mean_and_variance()
    exact = samples.astype(np.float64)
    assert np.abs(mean.numpy() - exact.mean(axis=0)).max() < 1e-9
    assert np.allclose(variance.numpy(), exact.var(axis=0), rtol=1e-4, atol=0)
    in_float32 = (samples**2).mean(axis=0) - samples.mean(axis=0) ** 2
    assert not np.allclose(in_float32, exact.var(axis=0), rtol=0.5)


def test_head_only_sampler_agrees_in_distribution_with_nn_dropout_masks():
    """nn.Dropout's own Bernoulli masks, in T plain forward passes, versus the sampler's.

    Tolerance: mean probabilities within 5 standard errors of the difference of two
    T-sample means (+1e-4) at every pixel; mean variance within 10 %; mc_top within 15 %.
    """
    samples = 300
    net = tiny_net(n_classes=3)
    image = square_image(shape=(32, 32))
    head_only = mc_dropout(net, image, samples=samples, seed=5)
    torch.manual_seed(11)
    with mc_dropout_mode(net), torch.no_grad():
        inputs = torch.from_numpy(normalise_image(image, 2))[None]
        passes = torch.stack([torch.softmax(net(inputs), dim=1)[0] for _ in range(samples)]).numpy()
    mean, variance = passes.mean(axis=0), passes.var(axis=0)
    standard_error = np.sqrt((variance + head_only.variance) / samples)
    assert (np.abs(head_only.mean_probs - mean) <= 5 * standard_error + 1e-4).all()
    assert head_only.variance.mean() == pytest.approx(variance.mean(), rel=0.1)
    terms = region_terms(head_only.mean_probs, head_only.mean_probs, head_only.variance)
    assert terms["mc_top"] == pytest.approx(region_terms(mean, mean, variance)["mc_top"], rel=0.15)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_head_only_sampler_matches_full_passes_on_cuda():
    net = tiny_net(3, n_classes=4)
    image = square_image(shape=(20, 24, 18))
    head_only = mc_dropout(net, image, samples=6, seed=4, device="cuda")
    assert_scores_agree(head_only, mc_dropout_full_passes(net, image, samples=6, seed=4, device="cuda"))


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
