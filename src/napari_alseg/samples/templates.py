"""Reading and checking the registry-installed templates the sample sets are made from.

Two sources, both installed by package managers and never downloaded here:
Debian's ``mricron-data`` (Colin27 T1 + AAL atlas) and the MNI152 2009 maps bundled in
the ``nilearn`` wheel. Arrays are returned in the files' own ``(i, j, k)`` voxel order
(nibabel's), because the generators sample them with their own affines.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from ..errors import AlsegError

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage

DEFAULT_MRICRON_DIR = Path("/usr/share/mricron/templates")
MRICRON_FILES = ("ch2bet.nii.gz", "aal.nii.gz", "aal.nii.txt")


@dataclass(frozen=True)
class ColinTemplates:
    """Colin27 skull-stripped T1 and the AAL atlas on its 1 mm grid, arrays ``(x, y, z)``."""

    t1: np.ndarray
    aal: np.ndarray
    aal_names: dict[int, str]
    affine: np.ndarray
    folder: Path


@dataclass(frozen=True)
class MniTissueMaps:
    """Tissue probabilities on one grid, arrays ``(x, y, z)`` in [0, 1]; ``affine`` in mm.

    MNI152 2009 from nilearn (:func:`load_mni_tissue_maps`), or Colin27 in the same form
    (:func:`colin_tissue_maps`).
    """

    grey_matter: np.ndarray
    white_matter: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray


def mricron_dir_from_env() -> Path:
    """``$ALSEG_MRICRON_DIR`` if set, else where Debian's ``mricron-data`` puts its templates."""
    return Path(os.environ.get("ALSEG_MRICRON_DIR", DEFAULT_MRICRON_DIR))


def load_colin_templates(folder: Path | None = None) -> ColinTemplates:
    """Load ``ch2bet.nii.gz`` + ``aal.nii.gz`` + ``aal.nii.txt``, or raise :class:`AlsegError`."""
    folder = Path(folder) if folder is not None else mricron_dir_from_env()
    missing = [name for name in MRICRON_FILES if not (folder / name).is_file()]
    if missing:
        raise AlsegError(
            f"{folder}: missing {', '.join(missing)} (install the templates with "
            "`apt-get install -y mricron-data` or set ALSEG_MRICRON_DIR)"
        )
    (t1, t1_affine), (aal, aal_affine) = (_read_nifti(folder / name)
                                          for name in ("ch2bet.nii.gz", "aal.nii.gz"))
    require_same_grid({"ch2bet.nii.gz": (t1.shape, t1_affine),
                       "aal.nii.gz": (aal.shape, aal_affine)})
    return ColinTemplates(
        t1=require_finite("ch2bet.nii.gz", t1).astype(np.float32),
        aal=np.rint(require_finite("aal.nii.gz", aal)).astype(np.int16),
        aal_names=read_aal_names(folder / "aal.nii.txt"),
        affine=t1_affine,
        folder=folder,
    )


def read_aal_names(path: Path) -> dict[int, str]:
    """Parse mricron's ``aal.nii.txt`` lines ``<id> <name> <code>`` into ``{id: name}``."""
    names: dict[int, str] = {}
    for line_number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise AlsegError(f"{path.name}: line {line_number} is not '<id> <name> ...': {line!r}")
        names[int(fields[0])] = fields[1]
    return names


def load_mni_tissue_maps() -> MniTissueMaps:
    """MNI152 2009 grey/white matter maps and brain mask at 2 mm, from nilearn's bundled files.

    These ``load_mni152_*`` functions read files shipped inside the nilearn wheel; they
    never touch the network (unlike nilearn's ``fetch_*`` atlas functions).
    """
    try:
        from nilearn import datasets
    except ImportError as exc:
        raise AlsegError(
            f"nilearn is needed for the tumour-cases set: pip install \"napari-alseg[tumour-sample]\" ({exc})") from None
    loaders = {
        "grey matter": datasets.load_mni152_gm_template,
        "white matter": datasets.load_mni152_wm_template,
        "brain mask": datasets.load_mni152_brain_mask,
    }
    try:
        images = {name: load(resolution=2) for name, load in loaders.items()}
    except (OSError, ValueError) as exc:
        raise AlsegError(f"nilearn's MNI152 template files are missing or unreadable ({exc}); "
                         "reinstall nilearn") from None
    require_same_grid({name: (image.shape, image.affine) for name, image in images.items()})
    arrays = {name: require_finite(f"MNI152 {name}", np.asarray(image.get_fdata(), np.float32))
              for name, image in images.items()}
    return MniTissueMaps(
        grey_matter=np.clip(arrays["grey matter"], 0.0, 1.0),
        white_matter=np.clip(arrays["white matter"], 0.0, 1.0),
        brain_mask=np.clip(arrays["brain mask"], 0.0, 1.0),
        affine=np.asarray(images["brain mask"].affine, float),
    )


def colin_tissue_maps(templates: ColinTemplates) -> MniTissueMaps:
    """Colin27 as grey/white-matter probabilities and a brain mask at 2 mm, like the MNI maps.

    A second healthy anatomy for the tumour cases (one subject's brain, sharper than the
    MNI152 average). Probabilities are a partial-volume model of the T1 inside the brain:
    the 3-class Otsu split gives the CSF, grey- and white-matter means, and a voxel between
    two means is a linear mixture of those two tissues. The 1 mm maps are then averaged in
    2 x 2 x 2 blocks (the affine moves to the block centres).
    """
    from skimage.filters import threshold_multiotsu

    t1, inside = templates.t1, templates.t1 > 0
    csf_top, grey_top = threshold_multiotsu(t1[inside], classes=3)
    values = t1[inside]
    csf_mean, grey_mean, white_mean = (float(values[mask].mean()) for mask in (
        values < csf_top, (values >= csf_top) & (values < grey_top), values >= grey_top))
    white = np.clip((t1 - grey_mean) / (white_mean - grey_mean), 0.0, 1.0)
    grey = np.where(t1 < grey_mean, np.clip((t1 - csf_mean) / (grey_mean - csf_mean), 0.0, 1.0), 1.0 - white)
    maps = [np.where(inside, array, 0.0) for array in (grey, white, inside.astype(np.float32))]
    even = tuple(size // 2 * 2 for size in t1.shape)
    grey, white, brain = (
        array[:even[0], :even[1], :even[2]].reshape(even[0] // 2, 2, even[1] // 2, 2, even[2] // 2, 2)
        .mean(axis=(1, 3, 5)).astype(np.float32) for array in maps)
    affine = templates.affine.copy()
    affine[:3, :3] = templates.affine[:3, :3] * 2.0
    affine[:3, 3] = templates.affine[:3, :3] @ np.full(3, 0.5) + templates.affine[:3, 3]
    return MniTissueMaps(grey_matter=grey, white_matter=white, brain_mask=brain, affine=affine)


def require_same_grid(grids: dict[str, tuple[tuple[int, ...], np.ndarray]]) -> None:
    """Raise :class:`AlsegError` unless every ``(shape, affine)`` matches the first one."""
    (first_name, (first_shape, first_affine)), *others = grids.items()
    for name, (shape, affine) in others:
        if tuple(shape) != tuple(first_shape) or not np.allclose(affine, first_affine, atol=1e-3):
            raise AlsegError(
                f"{name}: not on the same voxel grid as {first_name} "
                f"(shape {tuple(shape)} vs {tuple(first_shape)}, or different affine)"
            )


def require_finite(name: str, array: np.ndarray) -> np.ndarray:
    """Return ``array`` unchanged, or raise :class:`AlsegError` if it holds NaN/inf."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.floating):
        n_bad = int(np.count_nonzero(~np.isfinite(array)))
        if n_bad:
            raise AlsegError(f"{name}: template holds {n_bad} NaN or infinite voxels")
    return array


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxel array ``(x, y, z)`` and affine of a 3D NIfTI, read eagerly to catch corrupt files."""
    import nibabel as nib

    try:
        image = cast("SpatialImage", nib.load(str(path)))  # a NIfTI template: a spatial image
        array = np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise AlsegError(f"{path.name}: cannot read template ({exc})") from None
    if array.ndim != 3:
        raise AlsegError(f"{path.name}: expected a 3D template, got shape {array.shape}")
    return array, np.asarray(image.affine, float)
