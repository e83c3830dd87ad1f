"""Reading and writing NIfTI volumes with their geometry, and nothing else.

Every volume is handed out in one array convention, shared by the reader, the
sample generators, the store and the models: axes ``(k, j, i)`` of the file's voxel
grid, i.e. the file's last voxel axis first. For the usual axial or 2D-stack file
that makes axis 0 the slice axis, which is what napari's slider walks. Axes the
affine flips are flipped back so that spacing is always positive; the rotation part
of an oblique affine is kept in :attr:`Volume.affine` but not shown by napari.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import AlsegError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


LABEL_NAME_TOKENS = ("label", "labels", "seg", "mask", "gt", "truth", "aal", "atlas")


@dataclass(frozen=True)
class Volume:
    """A 3D array in ``(k, j, i)`` order with its physical geometry.

    ``spacing`` and ``origin`` are in mm and in the same axis order as ``data``:
    ``origin`` is the scanner position of voxel ``(0, 0, 0)`` along each axis'
    dominant world direction, ready for napari's ``scale`` / ``translate``.
    ``affine`` is the file's voxel-to-world affine after the flips, in nibabel's
    ``(i, j, k)`` order, so :func:`save_volume` can write it back unchanged.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    affine: np.ndarray
    is_label: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def looks_like_label_name(path: str | os.PathLike) -> bool:
    """True when a file name marks a label volume (``case01_seg.nii.gz``, ``labels.nii``)."""
    stem = Path(str(path)).name.lower()
    for suffix in NIFTI_SUFFIXES:
        stem = stem.removesuffix(suffix)
    tokens = stem.replace("-", "_").replace(".", "_").split("_")
    return any(token in LABEL_NAME_TOKENS for token in tokens)


def load_volume(path: str | os.PathLike, *, as_label: bool | None = None) -> Volume:
    """Load a 2D/3D NIfTI as a :class:`Volume`, or raise :class:`AlsegError`.

    ``as_label=None`` decides from the header intent (``NIFTI_INTENT_LABEL``) and the
    file name; label volumes must hold non-negative integers and come back as
    ``uint8``/``uint16``; images come back as ``float32``.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name
    if not path.exists():
        raise AlsegError(f"{path}: file not found")
    if not is_nifti_path(path):
        raise AlsegError(f"{name}: not a NIfTI file (expected .nii or .nii.gz)")
    if path.stat().st_size == 0:
        raise AlsegError(f"{name}: file is empty (0 bytes)")
    try:
        image = nib.load(str(path))
        raw = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AlsegError(f"{name}: truncated or corrupt gzip data ({exc})") from None
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as exc:
        raise AlsegError(f"{name}: not a readable NIfTI image ({exc})") from None
    except (OSError, ValueError) as exc:
        raise AlsegError(f"{name}: cannot read image data ({exc})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise AlsegError(f"{name}: not a NIfTI image ({type(image).__name__})")

    data = _as_3d(raw, name)
    if as_label is None:
        as_label = image.header.get_intent()[0] == "label" or looks_like_label_name(path)
    data = _as_label_array(data, name) if as_label else _as_image_array(data, name)
    data, affine = _flip_to_positive(data, image.affine)
    spacing, origin = _geometry(affine)
    # (i, j, k) -> (k, j, i): the file's slice axis becomes napari's axis 0.
    return Volume(
        data=np.ascontiguousarray(data.transpose(2, 1, 0)),
        spacing=spacing[::-1],
        origin=origin[::-1],
        affine=affine,
        is_label=as_label,
    )


def save_volume(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, *,
                is_label: bool = False) -> Path:
    """Write a ``(k, j, i)`` array as NIfTI atomically: temp file, fsync, rename.

    A reader never sees a half-written file, and a crash leaves either the old file
    or the new one. Label volumes get ``NIFTI_INTENT_LABEL`` so they reopen as labels.
    """
    import nibabel as nib

    path = Path(path)
    array = np.asarray(data)
    if array.ndim != 3 or 0 in array.shape:
        raise AlsegError(f"{path.name}: expected a non-empty 3D array, got shape {array.shape}")
    # a view: nibabel reorders once while writing
    image = nib.Nifti1Image(array.transpose(2, 1, 0), np.asarray(affine, float))
    image.header.set_xyzt_units("mm")
    if is_label:
        image.header.set_intent("label")
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_path(path, suffix=".tmp" + suffix) as temp:
        nib.save(image, str(temp))
    return path


def _as_3d(raw: np.ndarray, name: str) -> np.ndarray:
    if raw.size == 0 or 0 in raw.shape:
        raise AlsegError(f"{name}: image has zero size (shape {raw.shape})")
    shape = raw.shape
    while raw.ndim > 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim > 3:
        raise AlsegError(
            f"{name}: 4D image (shape {shape}) where a 3D volume is expected; "
            "split time points or channels into separate 3D files"
        )
    if raw.ndim == 2:
        raw = raw[:, :, np.newaxis]
    if raw.ndim != 3:
        raise AlsegError(f"{name}: expected a 2D or 3D image, got shape {shape}")
    return raw


def _as_image_array(data: np.ndarray, name: str) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise AlsegError(
            f"{name}: {n_bad} voxels are NaN or infinite; replace them (e.g. with 0) before use"
        )
    return data


def _as_label_array(data: np.ndarray, name: str) -> np.ndarray:
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)):
            raise AlsegError(f"{name}: label volume contains NaN or infinite values")
        if not np.all(data == np.round(data)):
            raise AlsegError(f"{name}: label volume holds non-integer values; labels must be class ids")
    if data.min() < 0:
        raise AlsegError(f"{name}: label volume holds negative values; class ids start at 0")
    top = int(data.max())
    if top > np.iinfo(np.uint16).max:
        raise AlsegError(f"{name}: label id {top} is out of range (at most 65535)")
    return data.astype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)


def _flip_to_positive(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip voxel axes whose direction points the negative world way (e.g. LAS files)."""
    import nibabel as nib

    signs = nib.orientations.io_orientation(affine)[:, 1]
    flips = np.column_stack([np.arange(3), signs])
    if np.all(flips[:, 1] > 0):
        return data, np.asarray(affine, float)
    flipped = nib.orientations.apply_orientation(data, flips)
    new_affine = affine @ nib.orientations.inv_ornt_aff(flips, data.shape)
    return flipped, new_affine


def _geometry(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Spacing (column norms) and, per voxel axis, the origin on its dominant world axis."""
    import nibabel as nib

    linear = np.asarray(affine)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    if np.any(spacing == 0):
        raise AlsegError("affine has a zero-length voxel axis")
    world_axis = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    origin = np.asarray(affine)[world_axis, 3]
    return tuple(float(s) for s in spacing), tuple(float(o) for o in origin)
