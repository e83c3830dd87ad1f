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
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from types import EllipsisType
from typing import TYPE_CHECKING, Literal, cast, overload

import torch
import torch.nn.functional as F
from monai.networks.blocks import ADN, UpSample
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from ..errors import AlsegError

if TYPE_CHECKING:
    from torch.nn.modules.batchnorm import _NormBase  # what InstanceNorm and BatchNorm share

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
# Floats per (samples x rows x voxels) tile of LastDecoderBlock.softmax_moments: ~2 MiB, which
# kept its per-voxel work in cache and its per-call overhead small on the 2-core EPYC.
SOFTMAX_MOMENTS_TILE = 2**19
# Smallest per-voxel sum of exp(logits) trusted without the max shift (a normal float32).
SMALLEST_EXP_SUM = 1e-30
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


def _to_phase_rows(tensor: torch.Tensor) -> torch.Tensor:
    """``(F, *P)`` -> ``(F * 2^d, V)``: row ``(f, a)`` holds voxels ``2 * i + a`` over half-res voxels ``i``."""
    channels, dims = tensor.shape[0], tensor.dim() - 1
    split = tensor.reshape(channels, *(part for size in tensor.shape[1:] for part in (size // 2, 2)))
    return split.permute(0, *range(2, 2 * dims + 1, 2), *range(1, 2 * dims, 2)).reshape(channels * 2**dims, -1)


def _from_phase_rows(rows: torch.Tensor, half_shape: tuple[int, ...]) -> torch.Tensor:
    """``(F, 2^d, V)`` in phase layout -> ``(F, *2H)`` for half-resolution shape ``H``."""
    dims = len(half_shape)
    split = rows.reshape(rows.shape[0], *([2] * dims), *half_shape)
    order = [axis for offset in range(dims) for axis in (1 + dims + offset, 1 + offset)]
    return split.permute(0, *order).reshape(rows.shape[0], *(2 * size for size in half_shape))


@overload
def _softmax_(logits: torch.Tensor, shifted: Literal[False] = False) -> torch.Tensor | None: ...
@overload
def _softmax_(logits: torch.Tensor, shifted: Literal[True]) -> torch.Tensor: ...
def _softmax_(logits: torch.Tensor, shifted: bool = False) -> torch.Tensor | None:
    """In-place softmax over axis 1, what ``torch.softmax`` computes, in fewer passes.

    Unless ``shifted``, the logits are exponentiated without first subtracting each
    voxel's maximum, and None (logits spent) says that overflowed or underflowed: the
    caller recomputes them and asks for ``shifted``. A trained net's logits never do.
    """
    if shifted:
        logits.sub_(logits.amax(dim=1, keepdim=True))
    sums = logits.exp_().sum(dim=1, keepdim=True)
    low, high = torch.aminmax(sums)
    if not shifted and not (low >= SMALLEST_EXP_SUM and high < math.inf):
        return None
    return logits.mul_(sums.reciprocal_())


class LastDecoderBlock(nn.Module):
    """The UNet's last decoder block, built so that sampling it ``T`` times is cheap.

    BasicUNet's last ``UpCat`` computes ``conv(cat(skip, upsample(x)))`` and a second
    conv, all at full resolution. Here the decoder side is convolved at half
    resolution *before* a learned 2x upsampling (8x fewer voxels in 3D), and the
    skip side, ``skip_conv(skip)``, is added afterwards: a convolution is linear in
    its input channels, so the skip term is computed once by the backbone.
    Per sample: dropout -> 3x3 conv (half res) -> 2x deconv -> (+ skip term) ->
    norm/act -> 1x1 conv. Measured effect: ``benchmarks/bench_model.py``.
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

    def softmax_moments(
        self, dropped_chunks: Iterable[torch.Tensor], skip_term: torch.Tensor, spatial_shape: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance over samples of ``softmax(decode(dropped, skip_term))``, ``(C, *S)`` float64 each.

        ``dropped_chunks`` yields ``(t, f1, *P/2)`` dropped decoder features (any ``t``);
        ``skip_term`` is ``(1, f5, *P)``; ``S = spatial_shape <= P`` is the part kept (the
        unpadded input); the norm layer must be in eval mode. Equal to cropping
        :meth:`decode`'s softmax sample by sample and taking the (population) mean and
        variance up to float rounding, and several times faster on a CPU
        (:class:`_PhaseLayoutHead` says how).
        """
        head = _PhaseLayoutHead(self, skip_term, spatial_shape)
        for dropped in dropped_chunks:
            head.add(dropped)
        return head.moments()


class SampleMoments:
    """Running mean and variance of samples, batch by batch.

    Each sample is taken relative to the first before it is summed and squared: in
    float32, ``E[p^2] - E[p]^2`` keeps ~1e-7 of rounding at every voxel (worst where
    the net is nearly certain), which a sum of variance over a volume piles up, while
    deviations from a sample have nothing large to cancel. ``update`` can fill a slice
    of the statistics at a time.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.first = torch.empty(shape, device=device)
        self.deviation_sums = torch.zeros(shape, device=device)
        self.square_sums = torch.zeros(shape, device=device)
        self.count = 0

    def update(self, samples: torch.Tensor, where: tuple[slice, ...] = ()) -> None:
        """Adds ``samples`` ``(t, *shape[where])`` (overwritten) at ``where``; call
        :meth:`advance` once every slice has seen the batch."""
        if self.count == 0:
            self.first[where] = samples[0]
        deviations = samples.sub_(self.first[where])
        self.deviation_sums[where].add_(deviations.sum(dim=0))
        self.square_sums[where].add_(deviations.square_().sum(dim=0))

    def advance(self, batch: int) -> None:
        self.count += batch

    def mean_and_variance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (population) variance so far, ``shape`` float64 each."""
        mean_deviation = self.deviation_sums.double() / self.count
        return self.first + mean_deviation, self.square_sums.double() / self.count - mean_deviation.square()


class _PhaseLayoutHead:
    """:meth:`LastDecoderBlock.softmax_moments` for one skip term, without a per-sample ``(C, *P)`` tensor.

    The 2x deconv (kernel 2, stride 2) sends each half-resolution voxel to its own block
    of ``2^d`` voxels, and everything after it is per voxel. So the full-resolution work
    runs in a *phase layout*: ``R = f5 * 2^d`` rows (channel, offset in the block) by
    ``V`` columns (half-resolution voxels), where the deconv is an ``(R, f5)`` matrix and
    the skip term is permuted once. The eval-mode norm is a per-sample scale and shift;
    instance-norm statistics (over all of ``*P``) follow from the conv output's
    ``f5 x f5`` covariance and its cross-moments with the centred skip term, without
    forming the norm's input. The rest runs only over the half-resolution voxels that
    reach ``*S``, in tiles of :data:`SOFTMAX_MOMENTS_TILE` floats in buffers reused from
    tile to tile; only the mean and variance go back to ``(C, *S)``.
    """

    def __init__(self, block: LastDecoderBlock, skip_term: torch.Tensor, spatial_shape: tuple[int, ...]) -> None:
        self.block, self.spatial_shape = block, spatial_shape
        self.norm = cast("_NormBase", block.norm_act.N)  # ADN's norm: InstanceNorm or BatchNorm
        self.activation = cast(nn.Module, block.norm_act.A)
        dims = skip_term.dim() - 2
        self.half_shape = tuple(size // 2 for size in skip_term.shape[2:])
        self.kept_half_shape = tuple(-(-size // 2) for size in spatial_shape)
        self.phases, self.width = 2**dims, skip_term.shape[1]
        skip_rows = _to_phase_rows(skip_term[0])
        self.kept_skip_rows = self._kept(skip_rows[None])[0]
        deconv = cast("nn.ConvTranspose2d | nn.ConvTranspose3d", block.upsample.deconv).weight
        self.deconv_rows = deconv.permute(1, *range(2, 2 + dims), 0).reshape(self.width * self.phases, self.width)
        self.n_classes = block.final_conv.out_channels
        final_weight = block.final_conv.weight.reshape(1, self.n_classes, self.width)
        self.final_weight_bias = torch.cat([final_weight, block.final_conv.bias.reshape(1, -1, 1)], dim=2)
        self.statistics = SampleMoments((self.n_classes, self.phases, self.kept_skip_rows.shape[1]), skip_rows.device)
        self.uses_running_stats = not self.norm.training and self.norm.running_mean is not None
        if not self.uses_running_stats:
            self._prepare_instance_stats(skip_rows)

    def _prepare_instance_stats(self, skip_rows: torch.Tensor) -> None:
        """From the skip term's ``(R, V)`` phase rows: row means ``(R,)``, per-channel sums
        of row variances ``(f5,)``, and ``cross_weights`` ``(f5, V, f5)`` that turn a sample's
        centred conv output into per-channel covariance sums with the skip term in one
        batched product; ``quad_weights`` ``(f5, f5 * f5)`` turn the conv output's covariance
        into the deconv part's per-channel variance sums."""
        width, phases, voxels = self.width, self.phases, skip_rows.shape[1]
        self.skip_means = skip_rows.mean(dim=1)
        centred = skip_rows - self.skip_means[:, None]
        self.skip_variance_sums = torch.einsum("rv,rv->r", centred, centred).view(width, phases).sum(dim=1) / voxels
        deconv = self.deconv_rows.view(width, phases, width)
        self.cross_weights = torch.einsum("cav,cak->kvc", centred.view(width, phases, voxels), deconv)
        self.quad_weights = torch.einsum("cak,cal->ckl", deconv, deconv).reshape(width, -1)

    def _kept(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, F, V)`` half-resolution columns -> ``(B, F, V')``, only those that reach ``*S``."""
        if self.kept_half_shape == self.half_shape:
            return rows
        grid = rows.view(*rows.shape[:2], *self.half_shape)
        return crop_spatial(grid, self.kept_half_shape).reshape(*rows.shape[:2], -1)

    def add(self, dropped: torch.Tensor) -> None:
        """Adds the softmax of ``t`` samples, ``dropped`` ``(t, f1, *H)``, to the statistics.

        The conv output is centred per sample and channel as it is copied to rows: the
        norm statistics want it centred, and the deconv of its mean is a constant per row,
        which joins the norm's shift. That shift and the 1x1 conv's bias ride in the
        matrix products on rows of ones (one below the conv rows, ``2^d`` the first
        product writes below the normed rows).
        """
        samples, width, phases = dropped.shape[0], self.width, self.phases
        rows = width * phases
        conv = self.block.conv(dropped)
        conv_means = conv.mean(dim=tuple(range(2, conv.dim())))
        conv_rows = dropped.new_empty(samples, width + 1, math.prod(self.half_shape))
        torch.sub(conv, conv_means.view(*conv_means.shape, *[1] * len(self.half_shape)),
                  out=conv_rows[:, :width].view_as(conv))
        conv_rows[:, width] = 1.0
        scale, shift = self._scale_shift(conv_means, conv_rows[:, :width])
        row_scale = scale.repeat_interleave(phases, dim=1)
        row_shift = shift.repeat_interleave(phases, dim=1) + conv_means @ self.deconv_rows.T * row_scale
        normed_deconv = conv_rows.new_zeros(samples, rows + phases, width + 1)
        normed_deconv[:, :rows, :width] = self.deconv_rows * row_scale[..., None]
        normed_deconv[:, :rows, width] = row_shift
        normed_deconv[:, rows:, width] = 1.0
        self._add_tiles(self._kept(conv_rows), normed_deconv, row_scale[..., None])
        self.statistics.advance(samples)

    def _add_tiles(self, conv_rows: torch.Tensor, normed_deconv: torch.Tensor, row_scale: torch.Tensor) -> None:
        """Per tile of columns: deconv + norm, skip term, activation, 1x1 conv, softmax, statistics.

        ``conv_rows`` ``(t, f5 + 1, V')``, ``normed_deconv`` ``(t, R + 2^d, f5 + 1)``,
        ``row_scale`` ``(t, R, 1)`` (the norm's scale per row, for the skip term).
        """
        samples, rows, voxels = conv_rows.shape[0], row_scale.shape[1], conv_rows.shape[2]
        n_classes, phases, width = self.n_classes, self.phases, self.width
        final_weight_bias = self.final_weight_bias.expand(samples, -1, -1)
        tile = max(1, SOFTMAX_MOMENTS_TILE // (samples * (rows + phases)))
        normed_buffer = conv_rows.new_empty(samples * (rows + phases) * tile)
        logits_buffer = conv_rows.new_empty(samples * n_classes * phases * tile)
        for start in range(0, voxels, tile):
            columns = slice(start, start + tile)
            size = min(tile, voxels - start)
            with_ones = normed_buffer[: samples * (rows + phases) * size].view(samples, rows + phases, size)
            torch.bmm(normed_deconv, conv_rows[:, :, columns], out=with_ones)
            normed = with_ones[:, :rows]
            normed.addcmul_(self.kept_skip_rows[:, columns], row_scale)
            self.activation(normed)
            activated = with_ones.view(samples, width + 1, -1)
            logits = logits_buffer[: samples * n_classes * phases * size].view(samples, n_classes, -1)
            probs = _softmax_(torch.bmm(final_weight_bias, activated, out=logits))
            if probs is None:
                probs = _softmax_(torch.bmm(final_weight_bias, activated, out=logits), shifted=True)
            self.statistics.update(probs.view(samples, n_classes, phases, size), (slice(None), slice(None), columns))

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance so far, ``(C, *S)`` float64 each."""
        mean, variance = (crop_spatial(_from_phase_rows(rows, self.kept_half_shape), self.spatial_shape)
                          for rows in self.statistics.mean_and_variance())
        return mean, variance

    def _scale_shift(self, conv_means: torch.Tensor, centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The norm as ``x * scale + shift``, ``(t, f5)`` each, for ``x = deconv + skip``.

        ``conv_means`` ``(t, f5)`` and ``centred`` ``(t, f5, V)``: the conv output's means and
        the conv output minus them. Running statistics where the norm uses them (BatchNorm
        in eval mode); otherwise each sample's mean and variance over ``*P``. A channel's
        variance is the mean over its ``2^d`` rows of each row's variance (the deconv
        part's, the skip's, twice their covariance) plus the spread of the row means; both
        parts are centred, so no large sums cancel.
        """
        samples, width, voxels = centred.shape
        running_mean, running_var = self.norm.running_mean, self.norm.running_var
        if self.uses_running_stats and running_mean is not None and running_var is not None:
            mean = running_mean.expand(samples, width)
            variance = running_var.expand(samples, width)
        else:
            covariance = centred @ centred.transpose(1, 2) / voxels
            cross = torch.bmm(centred.transpose(0, 1), self.cross_weights).sum(dim=0) / voxels
            within = covariance.reshape(samples, -1) @ self.quad_weights.T + 2 * cross + self.skip_variance_sums
            row_means = (conv_means @ self.deconv_rows.T + self.skip_means).view(samples, width, -1)
            mean = row_means.mean(dim=2)
            spread = (row_means - mean[..., None]).square().sum(dim=2)
            variance = ((within + spread) / self.phases).clamp_min(0.0)
        scale = torch.rsqrt(variance + self.norm.eps)
        if self.norm.weight is not None:
            scale = scale * self.norm.weight
        shift = -mean * scale
        if self.norm.bias is not None:
            shift = shift + self.norm.bias
        return scale, shift


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
