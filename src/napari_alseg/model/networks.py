"""The segmentation network: MONAI's BasicUNet split so MC dropout re-runs only the head.

One dropout layer sits before the last decoder block (docs/METHODS.md §3.3). Splitting the
UNet there lets MC-dropout scoring run the encoder and the deeper decoder once and sample
only the dropout + last decoder block + 1x1 conv ``T`` times (``inference.mc_dropout``).

Any spatial size is accepted: the input is padded (replicate, at the far end of each
axis) to a multiple of 16 and at least 32 voxels per axis, which the four 2x poolings
and instance norm need, and ``forward`` crops the logits back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from types import EllipsisType
from typing import cast

import torch
import torch.nn.functional as F
from monai.networks.blocks import ADN, UpSample
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from ..errors import AlsegError

# (enc0, enc1, enc2, enc3, bottleneck, head widths), sized for a 2-core CPU. Measured
# by benchmarks/bench_model.py on a loaded 2-core EPYC: a 60-step round takes ~20-45 s
# in 2D (batch 4 x 160^2) and ~75-120 s in 3D (batch 2 x 64^3); narrow full-resolution
# layers (width 8) keep the T-times-sampled head cheap (MC dropout at T=20 ~11x faster
# than 20 full passes in 2D, ~9x in 3D, where the head's half-resolution conv dominates).
DEFAULT_FEATURES_2D = (8, 32, 64, 128, 256, 8)
DEFAULT_FEATURES_3D = (8, 16, 32, 64, 128, 8)
DEFAULT_DROPOUT = 0.2
# No dropout layer in MONAI's blocks: their Convolution takes None for that (0.0 would add
# Dropout(p=0) modules), but BasicUNet's blocks annotate ``dropout`` without None.
NO_DROPOUT = cast(float, None)
POOLING_FACTOR = 16
MIN_INPUT_SIZE = 32
NORMS = {"instance": ("instance", {"affine": True}), "batch": ("batch", {})}
_LINEAR = {2: "bilinear", 3: "trilinear"}
ACTIVATION = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
# Floor of an interpolated probability before its log (forward of a zoomed net).
SMALLEST_PROBABILITY = 1e-30
# The first convolution: the only weights that see the input channels (guidance included).
FIRST_CONV_WEIGHT = "conv_0.conv_0.conv.weight"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a :class:`SegmentationNet` (stored in checkpoints).

    ``features``: six widths (four encoder levels, bottleneck, head); empty means the
    default for ``spatial_dims``. ``dropout``: probability of the head dropout.
    ``zoom``: working / native resolution per axis (the training plan's), e.g. 0.5 runs
    the network on half the voxels per axis; empty or all 1 means native.
    ``guidance``: the network also reads one click map per class after the image's
    channels (:mod:`.guidance`); without them it reads zeros there (no clicks).
    """

    spatial_dims: int
    in_channels: int
    n_classes: int
    features: tuple[int, ...] = field(default=())
    dropout: float = DEFAULT_DROPOUT
    norm: str = "instance"
    zoom: tuple[float, ...] = field(default=())
    guidance: bool = False

    def __post_init__(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise AlsegError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.in_channels < 1:
            raise AlsegError(f"in_channels must be at least 1, got {self.in_channels}")
        if self.n_classes < 2:
            raise AlsegError(f"n_classes must be at least 2 (background + one structure), got {self.n_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise AlsegError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORMS:
            raise AlsegError(f"norm must be one of {sorted(NORMS)}, got {self.norm!r}")
        features = tuple(int(width) for width in self.features) or default_features(self.spatial_dims)
        if len(features) != 6 or min(features) < 1:
            raise AlsegError(f"features must be six positive widths, got {self.features}")
        object.__setattr__(self, "features", features)
        zoom = tuple(float(factor) for factor in self.zoom)
        if zoom and (len(zoom) != self.spatial_dims or not all(0 < factor <= 1 for factor in zoom)):
            raise AlsegError(f"zoom must hold {self.spatial_dims} factors in (0, 1], got {self.zoom}")
        object.__setattr__(self, "zoom", () if all(factor == 1 for factor in zoom) else zoom)
        object.__setattr__(self, "guidance", bool(self.guidance))

    @property
    def input_channels(self) -> int:
        """Channels the first convolution reads: the image's, then one click map per class if guided."""
        return self.in_channels + (self.n_classes if self.guidance else 0)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            values = json.loads(text)
            return cls(**{**values, "features": tuple(values.get("features", ())),
                          "zoom": tuple(values.get("zoom", ()))})
        except (TypeError, ValueError) as error:
            raise AlsegError(f"not a valid model spec: {error}") from error

    def build(self) -> SegmentationNet:
        return SegmentationNet(self)


def with_guidance(net: SegmentationNet, guidance: bool) -> SegmentationNet:
    """``net`` reading click maps (``guidance``) or not, with its output without clicks unchanged.

    Adding guidance gives the first convolution zero weights for the new channels; removing
    it drops them (they only ever saw zeros without clicks). ``net`` itself when it already
    is as asked.
    """
    if net.spec.guidance == guidance:
        return net
    spec = replace(net.spec, guidance=guidance)
    state = dict(net.state_dict())
    weight = state[FIRST_CONV_WEIGHT]
    if guidance:
        state[FIRST_CONV_WEIGHT] = torch.cat([weight, weight.new_zeros(weight.shape[0], spec.n_classes,
                                                                       *weight.shape[2:])], dim=1)
    else:
        state[FIRST_CONV_WEIGHT] = weight[:, : spec.in_channels]
    changed = spec.build().to(weight.device)
    changed.load_state_dict(state)
    return changed.train(net.training)


def default_features(spatial_dims: int) -> tuple[int, ...]:
    return DEFAULT_FEATURES_2D if spatial_dims == 2 else DEFAULT_FEATURES_3D


def valid_input_shape(spatial_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Smallest shape >= ``spatial_shape`` the four poolings and instance norm accept."""
    return tuple(max(MIN_INPUT_SIZE, -(-size // POOLING_FACTOR) * POOLING_FACTOR) for size in spatial_shape)


def crop_spatial(tensor: torch.Tensor, spatial_shape: tuple[int, ...]) -> torch.Tensor:
    """``tensor[..., :s0, :s1(, :s2)]``: undo the far-end padding of the input."""
    index: tuple[EllipsisType | slice, ...] = (Ellipsis, *(slice(0, size) for size in spatial_shape))
    return tensor[index]


class LastDecoderBlock(nn.Module):
    """The UNet's last decoder block, built so that sampling it ``T`` times is cheap.

    BasicUNet's last ``UpCat`` computes ``conv(cat(skip, upsample(x)))`` and a second
    conv, all at full resolution. Here the decoder side is convolved at half
    resolution *before* a learned 2x upsampling (8x fewer voxels in 3D), and the
    skip side, ``skip_conv(skip)``, is added afterwards: a convolution is linear in
    its input channels, so the skip term is computed once by the backbone.
    Per sample: dropout -> 3x3 conv (half res) -> 2x deconv -> (+ skip term) ->
    norm/act -> 1x1 conv. Measured effect: ``benchmarks/bench_model.py``. The mean and variance of
    its softmax over many dropout samples: :func:`.head_moments.softmax_moments`.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        dims, widths, norm = spec.spatial_dims, spec.features, NORMS[spec.norm]
        self.skip_conv = Conv["conv", dims](widths[0], widths[5], kernel_size=3, padding=1)
        self.dropout = nn.Dropout(spec.dropout)
        self.conv = Conv["conv", dims](widths[1], widths[5], kernel_size=3, padding=1, bias=False)
        self.upsample = UpSample(dims, widths[5], widths[5], 2, mode="deconv", bias=False)
        self.norm_act = ADN("NA", widths[5], act=ACTIVATION, norm=norm, norm_dim=dims)
        self.final_conv = Conv["conv", dims](widths[5], spec.n_classes, kernel_size=1)

    def forward(self, decoder_features: torch.Tensor, skip_term: torch.Tensor) -> torch.Tensor:
        return self.decode(self.dropout(decoder_features), skip_term)

    def decode(self, dropped_features: torch.Tensor, skip_term: torch.Tensor) -> torch.Tensor:
        """Everything after the dropout: ``(B, f1, *P/2)`` -> logits ``(B, C, *P)``.

        ``skip_term`` ``(B or 1, f5, *P)``. Lets MC dropout supply its own dropout samples.
        """
        upsampled = self.upsample(self.conv(dropped_features))
        return self.final_conv(self.norm_act(upsampled + skip_term))


class SegmentationNet(nn.Module):
    """BasicUNet (2D or 3D) with a dropout layer in front of its last decoder block.

    ``backbone(x)`` -> ``(decoder_features, skip, bottleneck)``: the part run once.
    ``head(decoder_features, skip)`` -> logits: dropout -> last up/decoder block ->
    1x1 conv, the only stochastic part. ``skip`` is the encoder's full-resolution
    output already passed through the last block's skip-side convolution (see
    :class:`LastDecoderBlock`). Shapes, for input ``(B, Cin, *S)`` padded to
    ``P = valid_input_shape(S)``: decoder_features ``(B, f1, *P/2)``, skip
    ``(B, f5, *P)``, bottleneck ``(B, f4, *P/16)``, head logits ``(B, C, *P)``. A guided
    net (``spec.guidance``) reads ``Cin + C`` channels, or ``Cin`` (its clicks then all zero):
    the clicks only enter at the input, so MC dropout samples the same head.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        dims, widths, norm = spec.spatial_dims, spec.features, NORMS[spec.norm]
        self.conv_0 = TwoConv(dims, spec.input_channels, widths[0], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.down_1 = Down(dims, widths[0], widths[1], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.down_2 = Down(dims, widths[1], widths[2], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.down_3 = Down(dims, widths[2], widths[3], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.down_4 = Down(dims, widths[3], widths[4], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.upcat_4 = UpCat(dims, widths[4], widths[3], widths[3], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.upcat_3 = UpCat(dims, widths[3], widths[2], widths[2], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.upcat_2 = UpCat(dims, widths[2], widths[1], widths[1], ACTIVATION, norm, True, dropout=NO_DROPOUT)
        self.last_block = LastDecoderBlock(spec)

    def backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic part: ``(B, Cin, *S)`` -> (decoder_features, skip, bottleneck) on the working grid."""
        return self._backbone_on_working_grid(self._to_working(x))

    def working_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, *W)`` for input already on the working grid (training resamples its
        items once, so the network and the loss run on the coarser grid only)."""
        decoder_features, skip, _ = self._backbone_on_working_grid(x)
        return crop_spatial(self.head(decoder_features, skip), tuple(x.shape[2:]))

    def _backbone_on_working_grid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self._pad(self._with_guidance(x))
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        bottleneck = self.down_4(x3)
        u3 = self.upcat_3(self.upcat_4(bottleneck, x3), x2)
        return self.upcat_2(u3, x1), self.last_block.skip_conv(x0), bottleneck

    def head(self, decoder_features: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Stochastic part: logits ``(B, C, *P)``; dropout acts on ``decoder_features``."""
        return self.last_block(decoder_features, skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, C, *S)`` for input ``(B, Cin, *S)`` whose softmax is the prediction.

        A native-grid net gives its logits. A zoomed net gives the log of its working-grid
        softmax interpolated to the native grid: probabilities are what is resampled (as
        nnU-Net resamples them), so MC-dropout moments, computed where the net works,
        reach the native grid the same way (:func:`inference.mc_dropout`).
        """
        decoder_features, skip, _ = self.backbone(x)
        native_shape = tuple(x.shape[2:])
        head_logits = self.head(decoder_features, skip)
        if not self.spec.zoom:
            return crop_spatial(head_logits, native_shape)
        probs = torch.softmax(crop_spatial(head_logits, self.working_shape(native_shape)), dim=1)
        return torch.log(self.to_native(probs, native_shape).clamp_min(SMALLEST_PROBABILITY))

    def working_shape(self, native_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial shape the network computes on for a native input shape (voxels)."""
        if not self.spec.zoom:
            return tuple(native_shape)
        return tuple(max(1, round(size * factor)) for size, factor in zip(native_shape, self.spec.zoom))

    def to_native(self, maps: torch.Tensor, native_shape: tuple[int, ...]) -> torch.Tensor:
        """Maps ``(B, K, *W)`` on the working grid -> ``(B, K, *S)`` on the native grid, linearly
        interpolated (unchanged for a native-grid net). Convex weights: probabilities stay
        probabilities, moments of samples stay moments of a mixture of them."""
        if not self.spec.zoom:
            return maps
        return F.interpolate(maps, size=native_shape, mode=_LINEAR[self.spec.spatial_dims], align_corners=False)

    def _to_working(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spec.zoom:
            return x
        working = self.working_shape(tuple(x.shape[2:]))
        return F.interpolate(x, size=working, mode=_LINEAR[self.spec.spatial_dims], align_corners=False)

    def bottleneck_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder bottleneck averaged over space, ``(B, f4)``: ``h_i`` of docs/METHODS.md §4.1."""
        return self.backbone(x)[2].mean(dim=tuple(range(2, x.dim())))

    def _with_guidance(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with zero click maps appended when a guided net is given the image's channels only
        (every unguided caller: prediction, MC dropout, scoring, validation)."""
        spec = self.spec
        if x.dim() != spec.spatial_dims + 2 or x.shape[1] not in (spec.in_channels, spec.input_channels):
            channels = f"{spec.in_channels}" + (f" or {spec.input_channels}" if spec.guidance else "")
            expected = f"(batch, {channels} channel(s), {spec.spatial_dims} spatial axes)"
            raise AlsegError(f"the model expects input {expected}, got shape {tuple(x.shape)}")
        if x.shape[1] == spec.input_channels:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], spec.n_classes, *x.shape[2:])], dim=1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        padded = valid_input_shape(spatial)
        if padded == spatial:
            return x
        padding = [amount for axis in reversed(range(len(spatial))) for amount in (0, padded[axis] - spatial[axis])]
        return F.pad(x, padding, mode="replicate")
