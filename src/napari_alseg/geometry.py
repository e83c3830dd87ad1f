"""Where a voxel grid lies in the world and how napari shows it.

Affines are nibabel's voxel-to-world ``(4, 4)`` matrices with ``(i, j, k)`` columns in RAS+
mm. The reader (:func:`~napari_alseg.nifti.load_volume`) checks a file's affine
(:func:`check_affine`), flips its voxel axes to positive spacing (:func:`flip_to_positive`)
and hands out spacing and origin in ``(k, j, i)`` order (:func:`spacing_and_origin`);
:func:`affine_from_geometry` builds the affine back from them. napari places a volume by
spacing and origin, plus the turn of its grid about the slice axis (:func:`display_placement`);
a tilt out of the slice plane, which napari's 2D view cannot follow, is refused by the reader
(:func:`tilt_refusal`) and said on the dock's canvas; :func:`oblique_line` says what an oblique
file gets, and :func:`display_orientation` how a slice view shows it radiologically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AlsegError

_MAX_SHEAR_DEGREES = 0.1  # float noise in an sform stays far below


def check_affine(affine: np.ndarray, name: str) -> None:
    """A usable grid: finite, no zero-length or parallel axes, no shear (napari would drop it)."""
    linear = np.asarray(affine, float)[:3, :3]
    if not np.all(np.isfinite(affine)):
        raise AlsegError(f"{name}: affine holds NaN or infinite values; fix the header's sform/qform")
    lengths = np.sqrt((linear**2).sum(axis=0))
    if np.any(lengths == 0):
        axis = "ijk"[int(np.argmin(lengths))]
        raise AlsegError(f"{name}: affine has a zero-length voxel axis ({axis}); the header's voxel "
                         "size (pixdim) or sform/qform is broken")
    unit = linear / lengths
    cosines = np.abs(unit.T @ unit)
    np.fill_diagonal(cosines, 0.0)
    a, b = (int(n) for n in np.unravel_index(int(np.argmax(cosines)), cosines.shape))
    if cosines[a, b] > 1 - 1e-6:
        raise AlsegError(f"{name}: affine is singular (voxel axes {'ijk'[a]} and {'ijk'[b]} are "
                         "parallel); fix the header's sform/qform")
    angle = float(np.degrees(np.arccos(min(float(cosines[a, b]), 1.0))))  # acute angle between the axes
    if abs(angle - 90.0) > _MAX_SHEAR_DEGREES:
        raise AlsegError(f"{name}: sheared affine (voxel axes {'ijk'[a]} and {'ijk'[b]} meet at "
                         f"{angle:.2f}°, not 90°); napari-alseg needs an orthogonal voxel grid and "
                         "would drop the shear. Resample the image onto an orthogonal grid first")


def flip_to_positive(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip voxel axes whose direction points the negative world way (e.g. LAS files)."""
    import nibabel as nib

    signs = nib.orientations.io_orientation(affine)[:, 1]
    flips = np.column_stack([np.arange(3), signs])
    if np.all(flips[:, 1] > 0):
        return data, np.asarray(affine, float)
    flipped = nib.orientations.apply_orientation(data, flips)
    new_affine = affine @ nib.orientations.inv_ornt_aff(flips, data.shape)
    return flipped, new_affine


def spacing_and_origin(affine: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Spacing (column norms) and, per voxel axis, the origin on its dominant world axis, both in
    the affine's ``(i, j, k)`` order."""
    import nibabel as nib

    linear = np.asarray(affine)[:3, :3]
    spacing = np.sqrt((linear**2).sum(axis=0))
    if np.any(spacing == 0):
        raise AlsegError("affine has a zero-length voxel axis")
    world_axis = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    origin = np.asarray(affine)[world_axis, 3]
    return _three(spacing), _three(origin)


def _three(values: np.ndarray) -> tuple[float, float, float]:
    first, second, third = (float(value) for value in values)
    return first, second, third


def obliquity(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[float, float]:
    """How far an oblique grid is from what napari shows: ``(degrees, mm)``.

    ``degrees``: the turn of the voxel axes away from the scanner axes they are nearest to
    (flips and axis order are no turn). ``mm``: the largest distance, over the grid's corners,
    between a voxel's world position by ``affine`` (nibabel's ``(i, j, k)`` columns) and where
    napari places it from :class:`~napari_alseg.nifti.Volume`'s spacing and origin alone (axis-aligned, after the
    reader's flips). ``shape``: the file's ``(i, j, k)`` voxel counts.
    """
    import nibabel as nib

    affine = np.asarray(affine, float)
    shape = tuple(int(n) for n in shape[:3])
    ornt = nib.orientations.io_orientation(affine)
    flips = np.column_stack([np.arange(3), ornt[:, 1]])
    positive = affine @ nib.orientations.inv_ornt_aff(flips, shape)  # as the reader flips it
    unit = affine_direction(positive)
    world_axis = ornt[:, 0].astype(int)
    aligned = np.zeros((3, 3))
    aligned[world_axis, np.arange(3)] = 1.0
    turn = unit @ aligned.T
    degrees = float(np.degrees(np.arccos(np.clip((np.trace(turn) - 1) / 2, -1.0, 1.0))))
    spacing = np.sqrt((positive[:3, :3] ** 2).sum(axis=0))
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    true = positive[:3, :3] @ corners + positive[:3, 3:4]
    shown = np.zeros_like(true)
    shown[world_axis] = positive[world_axis, 3][:, None] + spacing[:, None] * corners
    return degrees, float(np.sqrt(((true - shown) ** 2).sum(axis=0)).max())


def oblique_line(name: str, affine: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """One line saying a file's grid is oblique and what that does (None when napari's axis-aligned
    placement is within half a voxel of the file's world position everywhere)."""
    degrees, offset = obliquity(affine, shape)
    half_voxel = 0.5 * float(np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0)).min())
    if offset <= half_voxel:
        return None
    placement = display_placement(_positive(affine, shape), tuple(int(n) for n in shape[:3])[::-1])
    shown = ("shown turned, at its world position" if placement.offset_mm <= half_voxel else
             f"tilted {placement.tilt_degrees:.1f}° out of its slice plane: shown on its acquired slices, up to "
             f"{placement.offset_mm:.1f} mm from its world position")
    return (f"{name}: oblique voxel grid (turned {degrees:.1f}° from the scanner axes): {shown} (placed "
            f"axis-aligned it would be up to {offset:.1f} mm off); the file's affine, rotation included, is kept "
            "for what napari-alseg writes")


def _positive(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``affine`` with its voxel axes flipped to positive, as :func:`~napari_alseg.nifti.load_volume` reads it
    (``shape``: the file's ``(i, j, k)`` voxel counts)."""
    import nibabel as nib

    affine = np.asarray(affine, float)
    flips = np.column_stack([np.arange(3), nib.orientations.io_orientation(affine)[:, 1]])
    return affine @ nib.orientations.inv_ornt_aff(flips, tuple(int(n) for n in shape[:3]))


@dataclass(frozen=True)
class DisplayPlacement:
    """How napari places a :class:`~napari_alseg.nifti.Volume` (:func:`display_placement`): ``rotate`` is the
    layers' rotation, in napari's ``(k, j, i)`` order, between ``scale`` (the spacing) and
    ``translate`` (the origin); ``turn_degrees`` the grid's whole turn from the scanner axes,
    ``tilt_degrees`` how far its slice axis leans off its scanner axis, and ``offset_mm`` the
    largest distance, over the grid's corners, between where napari shows a voxel and the
    file's world position (0 unless tilted)."""

    rotate: np.ndarray
    turn_degrees: float
    tilt_degrees: float
    offset_mm: float


def display_placement(affine: np.ndarray, shape: tuple[int, ...]) -> DisplayPlacement:
    """napari's placement of a volume read with ``affine`` (the :class:`~napari_alseg.nifti.Volume`'s, flipped to
    positive) and ``(k, j, i)`` ``shape``.

    napari's world axes are the scanner axes nearest the voxel axes, in the ``(k, j, i)``
    order (what ``translate`` already holds). A turn about the slice axis keeps every slice
    on its scanner plane, and napari slices a layer so rotated exactly: ``rotate`` carries it
    and every voxel is shown at the file's world position. A tilt of the slice axis napari's
    2D view cannot follow (it drops the out-of-slice part and its slider then picks other
    slices for a world position), so ``rotate`` keeps only the in-plane part and
    ``offset_mm`` says how far that leaves a voxel from its world position.
    """
    import nibabel as nib

    affine = np.asarray(affine, float)
    unit = affine_direction(affine)  # rows x, y, z; columns i, j, k
    nearest = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    turn = unit[nearest[::-1]][:, ::-1]  # napari's world axes x (k, j, i) data axes
    left, _, right = np.linalg.svd(turn[1:, 1:])
    rotate = np.eye(3)
    rotate[1:, 1:] = left @ right  # the in-plane part: the nearest rotation about the slice axis
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[::-1]
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    steps = spacing[:, None] * corners
    offset = float(np.sqrt((((turn - rotate) @ steps) ** 2).sum(axis=0)).max())
    degrees = float(np.degrees(np.arccos(np.clip((np.trace(turn) - 1) / 2, -1.0, 1.0))))
    tilt = float(np.degrees(np.arccos(np.clip(abs(turn[0, 0]), -1.0, 1.0))))
    if offset < 1e-9:
        rotate, offset = turn, 0.0
    return DisplayPlacement(rotate, degrees, tilt, offset)


def tilt_refusal(name: str, affine: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """One line refusing to show a file napari would place wrongly: a slice axis tilted so far
    that napari's 2D view would put a voxel more than half a voxel from its world position
    (None otherwise). ``shape``: the volume's ``(k, j, i)`` voxel counts."""
    placement = display_placement(affine, shape)
    if placement.offset_mm <= 0.5 * float(np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0)).min()):
        return None
    return (f"{name}: voxel grid tilted {placement.tilt_degrees:.1f}° out of its slice plane; napari can only "
            f"show its slices flat, up to {placement.offset_mm:.1f} mm from their world position, so it is not "
            "opened here: reslice it to the scanner axes first, or create a project from it (the dock shows "
            "it on its acquired slices and exports labels with its affine)")


def affine_direction(affine: np.ndarray) -> np.ndarray:
    """The voxel axes' unit world directions: the columns of ``affine[:3, :3]``, normalised.

    ``(i, j, k)`` order like the affine; what an oblique or permuted grid keeps once its
    spacing is taken out, for :func:`affine_from_geometry`.
    """
    linear = np.asarray(affine, float)[:3, :3]
    lengths = np.sqrt((linear**2).sum(axis=0))
    if np.any(lengths == 0) or not np.all(np.isfinite(linear)):
        raise AlsegError("affine has a zero-length or non-finite voxel axis")
    return linear / lengths


def affine_from_geometry(spacing: tuple[float, ...] | np.ndarray, origin: tuple[float, ...] | np.ndarray,
                         direction: np.ndarray | None = None) -> np.ndarray:
    """The voxel-to-world affine of a ``(k, j, i)`` volume: the inverse of the reader's geometry
    (:func:`~napari_alseg.nifti.load_volume`).

    ``spacing`` and ``origin`` (mm) are in the array's ``(k, j, i)`` order, as in
    :class:`~napari_alseg.nifti.Volume` and a layer's napari ``scale`` / ``translate``. ``direction`` holds the
    voxel axes' unit world directions as ``(i, j, k)`` columns (:func:`affine_direction` of
    the affine the volume was read with); None means the axis-aligned grid (identity).
    Each origin entry is the world coordinate on its axis' dominant world axis, as the
    reader reports it, so for the file's own spacing, origin and direction this gives back
    the file's (flipped-to-positive) affine. Returned in nibabel's ``(i, j, k)`` order.
    """
    import nibabel as nib

    spacing_ijk = np.asarray(spacing, float)[::-1]
    origin_ijk = np.asarray(origin, float)[::-1]
    if spacing_ijk.shape != (3,) or origin_ijk.shape != (3,):
        raise AlsegError(f"expected 3 spacings and 3 origin values, got {spacing_ijk.size} and "
                         f"{origin_ijk.size}")
    if not (np.all(np.isfinite(spacing_ijk)) and np.all(np.isfinite(origin_ijk))):
        raise AlsegError("spacing and origin must be finite numbers")
    if np.any(spacing_ijk == 0):
        raise AlsegError(f"spacing {tuple(spacing_ijk[::-1])} has a zero-length axis")
    unit = np.eye(3) if direction is None else affine_direction(np.asarray(direction, float))
    affine = np.eye(4)
    affine[:3, :3] = unit * spacing_ijk
    check_affine(affine, "direction")
    world_axis = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    affine[world_axis, 3] = origin_ijk
    return affine


WORLD_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # RAS+ world axes: (towards -, towards +)


@dataclass(frozen=True)
class DisplayOrientation:
    """How a slice view shows a ``(k, j, i)`` volume in radiological convention: superior (or
    anterior, on an axial slice) up, the patient's right on the screen's left, anterior on
    the left of a sagittal slice. ``vertical`` / ``horizontal`` are the directions rows and
    columns grow on screen (napari's ``camera.orientation2d``); ``top``, ``bottom``,
    ``left``, ``right`` the anatomical letters at the screen's edges."""

    vertical: str
    horizontal: str
    top: str
    bottom: str
    left: str
    right: str


def display_orientation(affine: np.ndarray) -> DisplayOrientation:
    """The radiological display of a volume whose voxel-to-world ``affine`` (nibabel's ``(i, j, k)``
    columns, RAS+ world) it is: rows (j) and columns (i) are the slice view's axes."""
    directions = affine_direction(affine)
    row_plus, row_minus = _letters(directions[:, 1])  # the letters rows grow towards and from
    column_plus, column_minus = _letters(directions[:, 0])
    vertical = "up" if row_plus in ("S", "A", "R") else "down"
    horizontal = "left" if column_plus in ("R", "A", "I") else "right"
    top, bottom = (row_plus, row_minus) if vertical == "up" else (row_minus, row_plus)
    left, right = (column_plus, column_minus) if horizontal == "left" else (column_minus, column_plus)
    return DisplayOrientation(vertical, horizontal, top, bottom, left, right)


def _letters(direction: np.ndarray) -> tuple[str, str]:
    """The anatomical letters a voxel axis of world ``direction`` grows towards and comes from."""
    axis = int(np.argmax(np.abs(direction)))
    towards = int(direction[axis] > 0)
    return WORLD_LETTERS[axis][towards], WORLD_LETTERS[axis][1 - towards]
