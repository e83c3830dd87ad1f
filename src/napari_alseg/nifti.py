"""Reading and writing NIfTI volumes with their geometry, and nothing else.

Every volume is handed out in one array convention, shared by the reader, the
sample generators, the store and the models: axes ``(k, j, i)`` of the file's voxel
grid, i.e. the file's last voxel axis first. For the usual axial or 2D-stack file
that makes axis 0 the slice axis, which is what napari's slider walks. Axes the
affine flips are flipped back so that spacing is always positive; the rotation part
of an oblique affine is kept in :attr:`Volume.affine` (and written back by
:func:`save_volume`). The affine maths, and where napari shows a volume, live in
:mod:`napari_alseg.geometry`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from .atomic import atomic_path
from .errors import AlsegError
from .geometry import check_affine, flip_to_positive, spacing_and_origin

if TYPE_CHECKING:
    from nibabel.nifti1 import Nifti1Header, Nifti1Image  # nibabel itself is imported when first read

NIFTI_SUFFIXES = (".nii", ".nii.gz")


_GZIP_MAX_RATIO = 1032  # deflate cannot expand more than this

LABEL_NAME_TOKENS = ("label", "labels", "seg", "mask", "gt", "truth", "aal", "atlas")
LABEL_FOLDER_NAMES = ("labelstr", "labels")  # folders of label volumes (MSD labelsTr/), lower-case


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


def is_label_file(path: str | os.PathLike) -> bool:
    """True when a source file holds labels: its name says so (:func:`looks_like_label_name`) or
    its header's intent is ``NIFTI_INTENT_LABEL`` (only the header is read). A file that cannot
    be read is not called labels here; it is reported where it is read."""
    if looks_like_label_name(path):
        return True
    path = Path(path)
    if not path.is_file():  # a FIFO or device would block; folders are no volumes
        return False
    try:
        return _open_image(path).header.get_intent()[0] == "label"
    except (AlsegError, AttributeError):  # AttributeError: a format without intents (ANALYZE)
        return False


def _is_integer_label_file(path: str | os.PathLike, header: Nifti1Header) -> bool:
    """An integer file in a label folder (``labelsTr/``, ``labels/``): labels without intent or name token."""
    return (Path(path).parent.name.lower() in LABEL_FOLDER_NAMES
            and np.issubdtype(header.get_data_dtype(), np.integer))


def load_volume(path: str | os.PathLike, *, as_label: bool | None = None,
                channel: int | None = None, channels_first: bool = False) -> Volume:
    """Load a 2D/3D NIfTI (or one channel of a 4D one) as a :class:`Volume`, or raise AlsegError.

    ``as_label=None`` decides from the header intent (``NIFTI_INTENT_LABEL``), the file name
    and, for an integer file, its folder (``labelsTr/``, ``labels/``); label volumes must hold
    non-negative integers and come back as ``uint8``/``uint16``; images come back as
    ``float32``. ``channel`` picks one channel of a 4D multi-channel file (Medical Segmentation
    Decathlon / BraTS): along the 4th axis, or along the 1st with ``channels_first`` (then the
    2nd-4th axes are space).

    Nothing is trusted before it is read: the header's declared size is checked against
    the file's size and the free memory, and the affine must be a usable, orthogonal grid.
    """
    path = Path(path)
    name = path.name
    image = _open_image(path)
    shape = tuple(int(n) for n in image.shape)
    spatial, index = _voxel_selection(shape, name, channel, channels_first)
    _check_declared_size(path, image, spatial)
    # A channel-first file is what saving a (C, x, y, z) array with the image's own affine
    # gives, so its affine is taken to describe the spatial axes 2-4, not 1-3.
    affine = np.asarray(image.affine, float)
    check_affine(affine, name)
    try:
        raw = np.asanyarray(image.dataobj[index] if index is not None else image.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AlsegError(f"{name}: truncated or corrupt gzip data ({exc})") from None
    except MemoryError:
        raise AlsegError(f"{name}: not enough memory to load {_human_bytes(_voxels(spatial) * 4)} "
                         "of image data") from None
    except PermissionError:
        raise AlsegError(f"{name}: permission denied; make the file readable "
                         "(e.g. chmod a+r) and try again") from None
    except (OSError, ValueError) as exc:  # nibabel's short-read message spans lines
        raise AlsegError(f"{name}: cannot read image data ({' '.join(str(exc).split())})") from None

    data = _as_3d(raw, name)
    del raw  # from here on only ``data`` holds the values read
    if as_label is None:
        as_label = (image.header.get_intent()[0] == "label" or looks_like_label_name(path)
                    or _is_integer_label_file(path, image.header))
    # Flips and the (i, j, k) -> (k, j, i) transpose are views; the one conversion below
    # writes the C-ordered result directly, so the values as read plus that one copy is the peak.
    data, affine = flip_to_positive(data, affine)
    try:
        data = (_as_label_array if as_label else _as_image_array)(data.transpose(2, 1, 0), name)
    except MemoryError:
        raise AlsegError(f"{name}: not enough memory to convert {_human_bytes(_voxels(spatial) * 4)} "
                         "of image data") from None
    spacing, origin = spacing_and_origin(affine)
    # (i, j, k) -> (k, j, i): the file's slice axis becomes napari's axis 0.
    return Volume(
        data=data,
        spacing=spacing[::-1],
        origin=origin[::-1],
        affine=affine,
        is_label=as_label,
    )


def read_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The header's array shape (no voxel data read), or AlsegError for an unreadable file."""
    return tuple(int(n) for n in _open_image(Path(path)).shape)


def read_affine(path: str | os.PathLike) -> np.ndarray:
    """The header's voxel-to-world affine ``(4, 4)``, as stored (no flips, no voxel data read)."""
    return np.asarray(_open_image(Path(path)).affine, float)


def _open_image(path: Path) -> Nifti1Image:
    """The nibabel image with only its header read; every failure as one AlsegError line."""
    import nibabel as nib

    name = path.name
    if not path.exists():
        raise AlsegError(f"{path}: file not found")
    if path.is_dir():
        raise AlsegError(f"{path}: is a folder, not a NIfTI file")
    if not is_nifti_path(path):
        raise AlsegError(f"{name}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        with open(path, "rb") as handle:
            empty = not handle.read(1)
    except PermissionError:
        raise AlsegError(f"{path}: permission denied; make the file readable "
                         "(e.g. chmod a+r) and try again") from None
    except OSError as exc:
        raise AlsegError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if empty:
        raise AlsegError(f"{name}: file is empty (0 bytes)")
    try:
        image = cast("Nifti1Image", nib.load(str(path)))  # a .nii(.gz) loads as NIfTI-1 or its subclass NIfTI-2
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AlsegError(f"{name}: truncated or corrupt gzip data ({exc})") from None
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as exc:
        raise AlsegError(f"{name}: not a readable NIfTI image ({exc})") from None
    except PermissionError:
        raise AlsegError(f"{path}: permission denied; make the file readable "
                         "(e.g. chmod a+r) and try again") from None
    except (OSError, ValueError, MemoryError) as exc:
        raise AlsegError(f"{name}: cannot read the header ({exc})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise AlsegError(f"{name}: not a NIfTI image ({type(image).__name__})")
    return image


def _voxel_selection(shape: tuple[int, ...], name: str, channel: int | None,
                     channels_first: bool) -> tuple[tuple[int, ...], tuple | None]:
    """The spatial shape read, and the index into ``dataobj`` that selects ``channel``."""
    if channel is None:
        if any(n != 1 for n in shape[3:]):  # refused before its data are read
            raise AlsegError(_four_d_message(name, shape))
        return shape[:3], None
    if channels_first:
        if len(shape) != 4 or not 0 <= channel < shape[0]:
            raise AlsegError(f"{name}: no channel {channel} along the first axis of shape {shape}")
        return shape[1:4], (channel,)
    extra = [axis for axis in range(3, len(shape)) if shape[axis] != 1]
    if len(shape) < 4 or len(extra) != 1 or not 0 <= channel < shape[extra[0]]:
        raise AlsegError(f"{name}: no channel {channel} in shape {shape} (expected one 4th axis "
                         "of channels)")
    index = tuple(slice(None) if axis < 3 else (channel if axis == extra[0] else 0)
                  for axis in range(len(shape)))
    return shape[:3], index


def _voxels(shape: tuple[int, ...]) -> int:
    total = 1
    for n in shape:
        total *= int(n)
    return total


def _check_declared_size(path: Path, image: Nifti1Image, spatial: tuple[int, ...]) -> None:
    """Refuse a header whose declared size the file cannot hold or memory cannot take.

    An uncompressed file must hold offset + voxels x bytes per voxel; a gzip file cannot
    expand more than ~1032 x (deflate's limit). Memory needed (:func:`_bytes_per_voxel`): the
    values as stored plus the float32 copy, against what the machine has available now. The
    napari reader also holds it to a stated budget (:func:`reader_budget`).
    """
    name = path.name
    shape = tuple(int(n) for n in image.shape)
    if 0 in shape:
        raise AlsegError(f"{name}: image has zero size (shape {shape})")
    itemsize = np.dtype(image.header.get_data_dtype()).itemsize
    stored = _voxels(shape) * itemsize
    size = path.stat().st_size
    offset = int(getattr(image.dataobj, "offset", 0) or 0)
    declared = f"{'x'.join(map(str, shape))} voxels of {image.header.get_data_dtype()}"
    if str(path).lower().endswith(".gz"):
        if stored > _GZIP_MAX_RATIO * size:
            raise AlsegError(f"{name}: header declares {declared} ({_human_bytes(stored)}), more than a "
                             f"{_human_bytes(size)} gzip file can hold; the header is damaged")
    elif offset + stored > size:
        raise AlsegError(f"{name}: header declares {declared} ({_human_bytes(stored)}) but the file "
                         f"holds {_human_bytes(max(size - offset, 0))} of data; truncated or damaged")
    needed = _voxels(spatial) * _bytes_per_voxel(path, image)
    available = _available_memory()
    if available is not None and needed > available:
        raise AlsegError(f"{name}: loading {declared} needs about {_human_bytes(needed)} of memory, "
                         f"only {_human_bytes(available)} is available")


def _bytes_per_voxel(path: Path, image: Nifti1Image) -> int:
    """Peak bytes per voxel while a volume loads: the values as stored, the float64 that
    nibabel's scaling makes of a scaled file, and the one float32 (or label) copy handed out;
    or, if more, a gzip file's read (Python's gzip reads into a buffer and then copies it:
    twice the stored size for a moment)."""
    itemsize = np.dtype(image.header.get_data_dtype()).itemsize
    converted = itemsize + (8 if _is_scaled(image) else 0) + 4
    return max(converted, 2 * itemsize) if str(path).lower().endswith(".gz") else converted


def memory_needed(path: str | os.PathLike, *, channel: int | None = None,
                  channels_first: bool = False) -> tuple[int, str]:
    """``(bytes, declaration)``: the peak memory :func:`load_volume` needs for ``path`` (or one
    of its channels), from the header alone, and what the header declares (shape x dtype and
    its size), for a message. Nothing but the header is read."""
    path = Path(path)
    image = _open_image(path)
    shape = tuple(int(n) for n in image.shape)
    spatial, _ = _voxel_selection(shape, path.name, channel, channels_first)
    stored = _voxels(shape) * np.dtype(image.header.get_data_dtype()).itemsize
    declaration = (f"{'x'.join(map(str, shape))} voxels of {image.header.get_data_dtype()} "
                   f"({_human_bytes(stored)})")
    return _voxels(spatial) * _bytes_per_voxel(path, image), declaration


READER_BUDGET_ENV = "NAPARI_ALSEG_READER_BUDGET_GB"
DEFAULT_READER_BUDGET_GB = 4.0


def reader_budget() -> int:
    """The napari reader's memory budget in bytes: ``NAPARI_ALSEG_READER_BUDGET_GB`` gigabytes
    (2**30 bytes; fractions allowed), default :data:`DEFAULT_READER_BUDGET_GB`."""
    text = os.environ.get(READER_BUDGET_ENV, "").strip()
    if not text:
        return int(DEFAULT_READER_BUDGET_GB * (1 << 30))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise AlsegError(f"{READER_BUDGET_ENV}={text!r} is not a positive number of gigabytes "
                         f"(e.g. {READER_BUDGET_ENV}=8)")
    return int(value * (1 << 30))


def budget_refusal(names: str, declaration: str, needed: int, budget: int) -> str:
    """The reader's one line for files whose declared size exceeds its memory budget."""
    return (f"{names}: header declares {declaration}; showing it needs about {_human_bytes(needed)} "
            f"of memory, more than the reader's budget of {_human_bytes(budget)}; set "
            f"{READER_BUDGET_ENV} (gigabytes, default {DEFAULT_READER_BUDGET_GB:g}) to raise it")


def _is_scaled(image: Nifti1Image) -> bool:
    slope = getattr(image.dataobj, "slope", 1.0)
    inter = getattr(image.dataobj, "inter", 0.0)
    return not (slope in (None, 1.0) and inter in (None, 0.0))


def _available_memory() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):
        return None


def _human_bytes(count: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


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
        raise AlsegError(_four_d_message(name, shape))
    if raw.ndim == 2:
        raw = raw[:, :, np.newaxis]
    if raw.ndim != 3:
        raise AlsegError(f"{name}: expected a 2D or 3D image, got shape {shape}")
    return raw


def _four_d_message(name: str, shape: tuple[int, ...]) -> str:
    return (f"{name}: 4D image (shape {shape}) where a 3D volume is expected; split time points "
            "or channels into separate 3D files, or name the channels in the source's dataset.json "
            "(\"modality\" or \"channel_names\") to use it as one multi-channel case")


_SLAB_VOXELS = 1 << 20  # checks run slab by slab: their temporaries stay a few MB


def _slabs(data: np.ndarray) -> Iterator[np.ndarray]:
    """Views of ``data`` along axis 0, each about :data:`_SLAB_VOXELS` voxels."""
    per_slice = max(1, data[:1].size)
    step = max(1, _SLAB_VOXELS // per_slice)
    for start in range(0, data.shape[0], step):
        yield data[start:start + step]


def _as_image_array(data: np.ndarray, name: str) -> np.ndarray:
    """``data`` as a C-ordered float32 array: one copy at most (none if it already is one)."""
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        n_bad = sum(int(np.count_nonzero(~np.isfinite(slab))) for slab in _slabs(data))
        if n_bad:
            raise AlsegError(
                f"{name}: {n_bad} voxels are NaN or infinite; replace them (e.g. with 0) before use"
            )
        top = max(max(abs(float(slab.min())), abs(float(slab.max()))) for slab in _slabs(data))
        if top > float(np.finfo(np.float32).max):
            raise AlsegError(f"{name}: values up to {top:.3g} exceed float32's range (±3.4e38); "
                             "rescale the image before use")
    return np.ascontiguousarray(data, dtype=np.float32)


def _as_label_array(data: np.ndarray, name: str) -> np.ndarray:
    """``data`` as a C-ordered uint8/uint16 array (one copy), after checking it holds class ids."""
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        if not all(np.all(np.isfinite(slab)) for slab in _slabs(data)):
            raise AlsegError(f"{name}: label volume contains NaN or infinite values")
        if not all(np.all(slab == np.round(slab)) for slab in _slabs(data)):
            raise AlsegError(f"{name}: label volume holds non-integer values; labels must be class ids")
    if data.min() < 0:
        raise AlsegError(f"{name}: label volume holds negative values; class ids start at 0")
    top = int(data.max())
    if top > np.iinfo(np.uint16).max:
        raise AlsegError(f"{name}: label id {top} is out of range (at most 65535)")
    return np.ascontiguousarray(data, dtype=np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)


