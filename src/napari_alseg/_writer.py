"""napari writer contribution: an Image or Labels layer as a ``.nii`` / ``.nii.gz`` file.

File › Save Layers, ``viewer.layers.save`` and ``napari.save_layers`` reach these
functions through the npe2 manifest. The file gets the geometry the reader gave the
layer: ``scale`` / ``translate`` are the spacing and origin in mm, and the reader's
affine kept in ``metadata["affine"]`` gives the voxel axes' directions, so reading the
written file gives back the same data, spacing, origin and affine. A layer made in the
viewer (no stored affine) is written on the axis-aligned grid of its scale/translate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import AlsegError
from .geometry import affine_direction, affine_from_geometry, display_placement
from .nifti import _as_label_array, is_nifti_path, save_volume

_AFFINE_TOLERANCE = 1e-6  # mm; closer than this, the stored affine is written unchanged


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels: class ids as uint8/uint16 with NIfTI's label intent."""
    return [str(write_layer(path, data, meta, is_label=True))]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for a grey (not RGB) Image layer."""
    return [str(write_layer(path, data, meta, is_label=False))]


def write_layer(path: str | Path, data: Any, meta: dict[str, Any], *, is_label: bool) -> Path:
    """Write one layer's data tuple as NIfTI atomically, or raise AlsegError (one line)."""
    path = Path(path)
    array, affine = layer_volume(data, meta, is_label=is_label, name=path.name)
    return save_volume(path, array, affine, is_label=is_label)


def layer_volume(data: Any, meta: dict[str, Any], *, is_label: bool,
                 name: str = "layer") -> tuple[np.ndarray, np.ndarray]:
    """The ``(k, j, i)`` array and the ``(i, j, k)`` voxel-to-world affine to save for a layer.

    ``data`` / ``meta`` are a napari layer data tuple's first two parts. A 2D layer is
    written as one slice (spacing 1 mm, origin 0 on the added axis), as the reader opens a
    2D file. Refused: non-NIfTI names, multiscale, RGB, anything but 2D/3D, a layer rotated,
    sheared or given an affine in napari (only scale and translate map to the file).
    """
    if not is_nifti_path(name):
        raise AlsegError(f"{name}: NIfTI files end in .nii or .nii.gz")
    if meta.get("multiscale"):
        raise AlsegError(f"{name}: multiscale layers cannot be saved as NIfTI; save one level "
                         "as its own layer")
    if meta.get("rgb"):
        raise AlsegError(f"{name}: RGB(A) image layers cannot be saved as NIfTI; split the colour "
                         "channels into separate layers")
    array = np.asarray(data)
    if array.ndim not in (2, 3):
        raise AlsegError(f"{name}: a {array.ndim}D layer (shape {array.shape}) cannot be saved as one "
                         "NIfTI volume; only 2D and 3D layers can")
    if array.size == 0:
        raise AlsegError(f"{name}: the layer is empty (shape {array.shape}); nothing to save")
    stored = _stored_affine(meta) if array.ndim == 3 else None
    _refuse_extra_transforms(meta, array.ndim, name, None if stored is None else
                             display_placement(stored, array.shape).rotate)
    scale = np.asarray(meta.get("scale", np.ones(array.ndim)), float)
    translate = np.asarray(meta.get("translate", np.zeros(array.ndim)), float)
    if array.ndim == 2:
        array = array[np.newaxis]
        scale = np.concatenate([[1.0], scale])
        translate = np.concatenate([[0.0], translate])
    try:
        direction = None if stored is None else affine_direction(stored)
        affine = affine_from_geometry(scale, translate, direction)
    except AlsegError as exc:
        raise AlsegError(f"{name}: {exc}") from None
    if stored is not None and np.allclose(affine, stored, rtol=0.0, atol=_AFFINE_TOLERANCE):
        affine = stored  # bit-exact round trip of what the reader kept
    array = _as_label_array(array, name) if is_label else _image_array(array, name)
    return array, affine


def _refuse_extra_transforms(meta: dict[str, Any], ndim: int, name: str, placed: np.ndarray | None) -> None:
    """Refuse napari transforms NIfTI cannot hold; ``placed`` is the rotation the reader gave a
    layer of the stored affine (a turn about the slice axis, which that affine already holds)."""
    rotate = np.asarray(meta.get("rotate", np.eye(ndim)), float)
    if placed is not None and rotate.shape == placed.shape and np.allclose(rotate, placed, atol=1e-6):
        rotate = np.eye(ndim)
    shear = np.asarray(meta.get("shear", np.zeros(ndim * (ndim - 1) // 2)), float)
    layer_affine = np.asarray(meta.get("affine", np.eye(ndim + 1)), float)
    identity = (np.allclose(rotate, np.eye(ndim)) and np.allclose(shear, 0.0)
                and np.allclose(layer_affine, np.eye(layer_affine.shape[0])))
    if not identity:
        raise AlsegError(f"{name}: the layer is rotated, sheared or has an affine in napari; only "
                         "scale and translate can be written to NIfTI. Reset those transforms first")


def _stored_affine(meta: dict[str, Any]) -> np.ndarray | None:
    """The reader's affine from ``metadata["affine"]`` when it is a usable 4x4, else None."""
    value = (meta.get("metadata") or {}).get("affine")
    if value is None:
        return None
    try:
        affine = np.asarray(value, float)
    except (TypeError, ValueError):
        return None
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        return None
    return affine


def _image_array(array: np.ndarray, name: str) -> np.ndarray:
    """Image values in a NIfTI data type: bool as uint8, float16 as float32, 64-bit ints narrowed."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.complexfloating) or not np.issubdtype(array.dtype, np.number):
        raise AlsegError(f"{name}: {array.dtype} image values cannot be saved as NIfTI")
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise AlsegError(f"{name}: image values exceed int32's range; convert the layer to float")
        return array.astype(np.int32)
    return array
