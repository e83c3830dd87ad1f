"""Random spatial transforms shared by the sample sets: similarity + smooth B-spline field.

All transforms here are *backward* maps in voxel (px) units: for every output voxel
they give the position in the source array to sample from, as an array of shape
``(ndim, *output_shape)`` ready for :func:`scipy.ndimage.map_coordinates`. Images and
labels of one sample are resampled with the same map (order 1 vs order 0), so the
ground truth stays exact.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def identity_grid(shape: tuple[int, ...]) -> np.ndarray:
    """Voxel coordinates of every output voxel, shape ``(ndim, *shape)``, float64."""
    return np.indices(shape, dtype=np.float64)


def random_rotation(rng: np.random.Generator, ndim: int, sigma_deg: float) -> np.ndarray:
    """A random ``(ndim, ndim)`` rotation: one angle per axis pair, each N(0, sigma_deg)."""
    rotation = np.eye(ndim)
    for first in range(ndim):
        for second in range(first + 1, ndim):
            angle = np.deg2rad(rng.normal(0.0, sigma_deg))
            plane = np.eye(ndim)
            plane[[first, first, second, second], [first, second, first, second]] = (
                np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle))
            rotation = rotation @ plane
    return rotation


def random_similarity(rng: np.random.Generator, shape: tuple[int, ...], *, rotation_sd_deg: float,
                      shift_sd_px: float, log_scale_sd: float) -> np.ndarray:
    """A random similarity about the array centre as a backward map ``(ndim, *shape)`` in px.

    Rotation angles ~ N(0, rotation_sd_deg) degrees, shift ~ N(0, shift_sd_px) px per axis,
    isotropic scale = exp(N(0, log_scale_sd)). A scale above 1 shows the content smaller.
    """
    ndim = len(shape)
    matrix = random_rotation(rng, ndim, rotation_sd_deg) * np.exp(rng.normal(0.0, log_scale_sd))
    shift = rng.normal(0.0, shift_sd_px, size=ndim)
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    offsets = identity_grid(shape) - centre.reshape((ndim,) + (1,) * ndim)
    mapped = np.tensordot(matrix, offsets, axes=1)
    return mapped + (centre + shift).reshape((ndim,) + (1,) * ndim)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], *, control_spacing_px: float,
                 sigma: float) -> np.ndarray:
    """A random smooth scalar field of shape ``shape`` (float32), in the units of ``sigma``.

    Random N(0, sigma) values sit on a control grid about every ``control_spacing_px``
    (one extra point beyond each edge) and are the coefficients of a cubic B-spline (as
    in elastix / SimpleITK B-spline transforms): the field is C2-smooth and, unlike a
    spline through the points, does not overshoot. Evaluated one axis at a time.
    """
    n_control = [int(np.ceil((size - 1) / control_spacing_px)) + 1 for size in shape]
    field = rng.normal(0.0, sigma, size=[count + 2 for count in n_control])
    for axis, (size, count) in enumerate(zip(shape, n_control)):
        weights = _cubic_bspline_weights(size, count)
        field = np.moveaxis(np.tensordot(weights, field, axes=(1, axis)), 0, axis)
    return field.astype(np.float32)


def smooth_displacement(rng: np.random.Generator, shape: tuple[int, ...], *,
                        control_spacing_px: float, sigma_px: float,
                        squarings: int = 6) -> np.ndarray:
    """A random smooth, invertible displacement field ``(ndim, *shape)`` in px.

    One :func:`smooth_field` per axis gives a velocity field, which is integrated by
    scaling and squaring (as in VoxelMorph / SynthSeg). The displacement keeps the size
    set by ``sigma_px`` but cannot fold, even where control points are only a few px
    apart and the raw B-spline field would tear labels into fragments.
    """
    velocity = np.stack([
        smooth_field(rng, shape, control_spacing_px=control_spacing_px, sigma=sigma_px)
        for _ in shape]).astype(np.float64)
    displacement = velocity / 2**squarings
    grid = identity_grid(shape)
    for _ in range(squarings):
        positions = grid + displacement
        displacement = displacement + np.stack([
            ndimage.map_coordinates(component, positions, order=1, mode="nearest")
            for component in displacement])
    return displacement


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to mean 0, standard deviation 1 (float32)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px,
                                    mode="wrap")
    return (noise - noise.mean()) / max(float(noise.std()), 1e-6)


def warp(array: np.ndarray, coordinates: np.ndarray, *, order: int) -> np.ndarray:
    """Sample ``array`` at ``coordinates`` (px); outside the array is 0.

    Use ``order=1`` for images and ``order=0`` for labels (nearest: no mixed class ids).
    """
    output_dtype = array.dtype if order == 0 else np.float32
    return ndimage.map_coordinates(array, coordinates, order=order, mode="constant", cval=0,
                                   output=output_dtype, prefilter=False)


def _cubic_bspline_weights(n_samples: int, n_control: int) -> np.ndarray:
    """``(n_samples, n_control + 2)`` cubic B-spline weights; the ends align with the first
    and last inner control points."""
    positions = np.linspace(1.0, n_control, n_samples)
    distance = np.abs(positions[:, None] - np.arange(n_control + 2)[None, :])
    return np.where(distance < 1.0, (4.0 - 6.0 * distance**2 + 3.0 * distance**3) / 6.0,
                    np.where(distance < 2.0, (2.0 - distance) ** 3 / 6.0, 0.0))


def jacobian_determinant(coordinates: np.ndarray) -> np.ndarray:
    """Local volume change of a backward map, shape ``coordinates.shape[1:]``; <= 0 is folding."""
    ndim = coordinates.shape[0]
    gradients = np.stack([np.stack(np.gradient(coordinates[axis]), axis=-1)
                          for axis in range(ndim)], axis=-2)
    return np.linalg.det(gradients)
