"""The split UNet: shapes for 2D/3D multi-channel input, backbone/head split, spec round-trip."""

import pytest
import torch

from napari_alseg.errors import AlsegError
from napari_alseg.model.networks import (
    DEFAULT_FEATURES_2D,
    DEFAULT_FEATURES_3D,
    ModelSpec,
    SegmentationNet,
    valid_input_shape,
)

TINY = (4, 8, 8, 8, 16, 4)


@pytest.mark.parametrize(
    ("spatial_dims", "in_channels", "n_classes", "spatial"),
    [(2, 2, 3, (40, 36)), (3, 3, 4, (16, 20, 18))],
)
def test_net_builds_and_keeps_input_size(spatial_dims, in_channels, n_classes, spatial):
    net = ModelSpec(spatial_dims, in_channels, n_classes, TINY).build().eval()
    x = torch.randn(2, in_channels, *spatial)
    with torch.no_grad():
        logits = net(x)
        decoder_features, skip, bottleneck = net.backbone(x)
        features = net.bottleneck_features(x)
    padded = valid_input_shape(spatial)
    assert logits.shape == (2, n_classes, *spatial)
    assert decoder_features.shape == (2, TINY[1], *(size // 2 for size in padded))
    assert skip.shape == (2, TINY[5], *padded)
    assert bottleneck.shape == (2, TINY[4], *(size // 16 for size in padded))
    assert features.shape == (2, TINY[4])


def test_forward_is_head_of_backbone_cropped():
    net = ModelSpec(2, 1, 3, TINY).build().eval()
    x = torch.randn(1, 1, 33, 47)
    with torch.no_grad():
        decoder_features, skip, _ = net.backbone(x)
        head = net.head(decoder_features, skip)[..., :33, :47]
        assert torch.equal(net(x), head)


def test_valid_input_shape_is_pool_friendly():
    assert valid_input_shape((16, 33, 180)) == (32, 48, 192)


def test_spec_json_round_trip_and_defaults():
    spec = ModelSpec(3, 3, 4, dropout=0.3, norm="batch")
    assert spec.features == DEFAULT_FEATURES_3D
    assert ModelSpec(2, 1, 11).features == DEFAULT_FEATURES_2D
    assert ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    "arguments",
    [dict(spatial_dims=4), dict(n_classes=1), dict(features=(8, 8)), dict(dropout=1.0), dict(norm="group")],
)
def test_bad_spec_is_a_user_error(arguments):
    values = dict(spatial_dims=2, in_channels=1, n_classes=3) | arguments
    with pytest.raises(AlsegError):
        ModelSpec(**values)


def test_wrong_channel_count_is_a_user_error():
    net = SegmentationNet(ModelSpec(2, 2, 3, TINY))
    with pytest.raises(AlsegError, match="2 channel"):
        net(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize(("spatial_dims", "spatial", "zoom"), [(2, (50, 38), (0.5, 0.5)), (3, (24, 30, 20), (0.5, 1.0, 0.75))])
def test_zoomed_net_computes_on_the_working_grid_and_answers_on_the_native_one(spatial_dims, spatial, zoom):
    net = ModelSpec(spatial_dims, 1, 3, TINY, zoom=zoom).build().eval()
    x = torch.randn(1, 1, *spatial)
    with torch.no_grad():
        logits = net(x)
        decoder_features, _, _ = net.backbone(x)
    working = net.working_shape(spatial)
    assert working == tuple(round(size * factor) for size, factor in zip(spatial, zoom))
    assert decoder_features.shape[2:] == tuple(size // 2 for size in valid_input_shape(working))
    assert logits.shape == (1, 3, *spatial)


@pytest.mark.parametrize(("spatial_dims", "spatial", "zoom"), [(2, (50, 38), (0.5, 0.5)), (3, (24, 30, 20), (0.5, 1.0, 0.75))])
def test_a_zoomed_net_resamples_its_probabilities_not_its_logits(spatial_dims, spatial, zoom):
    net = ModelSpec(spatial_dims, 1, 3, TINY, zoom=zoom).build().eval()
    x = torch.randn(1, 1, *spatial)
    with torch.no_grad():
        working = torch.nn.functional.interpolate(x, size=net.working_shape(spatial), mode="bilinear" if spatial_dims == 2
                                                  else "trilinear", align_corners=False)
        expected = net.to_native(torch.softmax(net.working_forward(working), dim=1), spatial)
        probs = torch.softmax(net(x), dim=1)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, *spatial), atol=1e-6)


def test_zoom_round_trips_and_old_specs_load_at_native_resolution():
    spec = ModelSpec(2, 1, 3, TINY, zoom=(0.5, 0.5))
    assert ModelSpec.from_json(spec.to_json()) == spec
    old = ModelSpec.from_json('{"spatial_dims": 2, "in_channels": 1, "n_classes": 3, "features": [4, 8, 8, 8, 16, 4], '
                              '"dropout": 0.2, "norm": "instance"}')
    assert old.zoom == () and ModelSpec(2, 1, 3, TINY, zoom=(1, 1)).zoom == ()
    with pytest.raises(AlsegError):
        ModelSpec(2, 1, 3, TINY, zoom=(0.5,))
