"""MC-dropout statistics of the network's head without a full-resolution tensor per sample.

:func:`softmax_moments` gives the mean and variance over dropout samples of the head's
softmax (docs/METHODS.md §3.3) from :class:`~.networks.LastDecoderBlock`'s weights, in a
phase layout at half resolution (:class:`_PhaseLayoutHead`); :class:`SampleMoments` keeps
running moments of samples for it and for ``inference``'s sample-by-sample path. Measured
effect: ``benchmarks/bench_model.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, cast, overload

import torch
from torch import nn

from .networks import LastDecoderBlock, crop_spatial

if TYPE_CHECKING:
    from torch.nn.modules.batchnorm import _NormBase  # what InstanceNorm and BatchNorm share

# Floats per (samples x rows x voxels) tile of softmax_moments: ~2 MiB, which kept its
# per-voxel work in cache and its per-call overhead small on the 2-core EPYC.
SOFTMAX_MOMENTS_TILE = 2**19
# Smallest per-voxel sum of exp(logits) trusted without the max shift (a normal float32).
SMALLEST_EXP_SUM = 1e-30


def softmax_moments(
    block: LastDecoderBlock, dropped_chunks: Iterable[torch.Tensor], skip_term: torch.Tensor,
    spatial_shape: tuple[int, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over samples of ``softmax(block.decode(dropped, skip_term))``, ``(C, *S)`` float64 each.

    ``dropped_chunks`` yields ``(t, f1, *P/2)`` dropped decoder features (any ``t``);
    ``skip_term`` is ``(1, f5, *P)``; ``S = spatial_shape <= P`` is the part kept (the
    unpadded input); the block's norm layer must be in eval mode. Equal to cropping
    :meth:`~.networks.LastDecoderBlock.decode`'s softmax sample by sample and taking the
    (population) mean and variance up to float rounding, and several times faster on a CPU
    (:class:`_PhaseLayoutHead` says how).
    """
    head = _PhaseLayoutHead(block, skip_term, spatial_shape)
    for dropped in dropped_chunks:
        head.add(dropped)
    return head.moments()


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
    """:func:`softmax_moments` for one skip term, without a per-sample ``(C, *P)`` tensor.

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
