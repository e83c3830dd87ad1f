"""Label arrays and their append-only files under ``<project>/labels/<case>/``.

* ``v0007.nii.gz``: label version 7 of the case, the whole ``(k, j, i)`` volume, written once
  and never overwritten; the database row that records it is committed only after the file
  is fsynced and renamed into place.
* ``originals/e000042.nii.gz``: the model's prediction for the region event 42 submitted.
* ``v0007.json``: what made version 7 (its event, tools, region, annotator), written and fsynced
  beside it before its commit, so ``alseg recover`` can re-record the version if the commit is
  lost with ``project.sqlite-wal``.
* ``draft.nii.gz``: unsubmitted strokes, overwritten atomically on each autosave.

Temp files are dot-prefixed (``.v0007.nii.gz.XXXX.tmp.nii.gz``) and never read as data.
A label file no committed row records is moved to ``<project>/recovered/`` on open, never
deleted: it may be acknowledged work whose commit was lost with ``project.sqlite-wal``.
Label versions are written in the source file's own voxel orientation and affine, so any
NIfTI viewer overlays them on the source image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, fsync_folder
from ..errors import AlsegError, storage_error
from ..nifti import load_volume, save_volume
from .records import CaseRecord, LabelledItem

LABELS_DIR = "labels"
RECOVERED_DIR = "recovered"  # unrecorded label files, kept aside on open (never deleted)
LABEL_SUFFIX = ".nii.gz"  # gzip level 1 is faster than raw .nii here: less to fsync
_MANAGED_NAME = re.compile(r"^(v\d{4,}|e\d{6,}|draft)\.nii\.gz$")
_SIDECAR_NAME = re.compile(r"^v\d{4,}\.json$")
SIDECAR_SUFFIX = ".json"

log = logging.getLogger(__name__)


class LabelFiles:
    """Where a project's label files live; reading them; sweeping unfinished ones."""

    def __init__(self, project_folder: Path) -> None:
        self.folder = project_folder
        self.root = project_folder / LABELS_DIR

    def version_path(self, case: str, version: int) -> Path:
        return self.root / case / f"v{version:04d}{LABEL_SUFFIX}"

    def sidecar_path(self, case: str, version: int) -> Path:
        """What made label version ``version`` (JSON beside it; see :func:`write_sidecar`)."""
        return self.root / case / f"v{version:04d}{SIDECAR_SUFFIX}"

    def original_path(self, case: str, event_id: int) -> Path:
        return self.root / case / "originals" / f"e{event_id:06d}{LABEL_SUFFIX}"

    def draft_path(self, case: str) -> Path:
        return self.root / case / f"draft{LABEL_SUFFIX}"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.folder / relative

    def read(self, path: Path, dtype: np.dtype) -> np.ndarray:
        """A label file as a ``(k, j, i)`` array of ``dtype`` (flips undone by load_volume)."""
        return load_volume(path, as_label=True).data.astype(dtype, copy=False)

    def remove_debris(self, referenced: set[str]) -> list[Path]:
        """Delete temp files; move label files no committed row refers to into ``recovered/``.

        Temp files are never data. An unrecorded label file is fsynced work: a submit killed
        between its rename and its commit, or an acknowledged submit whose commit was lost
        with ``project.sqlite-wal`` (a backup without it, a damaged WAL). Only the user can
        tell which, so it is kept (:meth:`quarantine`), never deleted. Returns the kept files.
        """
        if not self.root.exists():
            return []
        orphans, removed = [], []
        for path in sorted(self.root.rglob("*")):
            if not path.is_file():
                continue
            if path.name.startswith(".") and ".tmp" in path.name:
                if remove_file(path):
                    removed.append(path)
            elif _MANAGED_NAME.match(path.name) and self.relative(path) not in referenced:
                orphans.append(path)
            elif _SIDECAR_NAME.match(path.name) and self.relative(_version_of(path)) not in referenced:
                orphans.append(path)  # it goes where its version goes
        if removed:
            log.warning("removed %d unfinished temp file(s): %s", len(removed),
                        ", ".join(self.relative(p) for p in removed))
        return self.quarantine(orphans)

    def quarantine(self, paths: list[Path]) -> list[Path]:
        """Move ``paths`` to ``recovered/<their path>`` and say so in one warning line.

        A label version's record (``v0002.json``) moves with it and keeps its name's pairing
        (``v0002~2.nii.gz`` with ``v0002~2.json`` when an earlier quarantine used the names)."""
        kept = []
        sidecars = {path for path in paths if _SIDECAR_NAME.match(path.name)}
        for path in paths:
            if path in sidecars:
                continue
            sidecar = _sidecar_of(path) if path.name.startswith("v") else None
            target = _free_name(self.folder / RECOVERED_DIR / self.relative(path))
            if not self._move(path, target):
                continue
            kept.append(target)
            if sidecar in sidecars:
                sidecars.discard(sidecar)
                if self._move(sidecar, _sidecar_of(target)):
                    kept.append(_sidecar_of(target))
        for sidecar in sorted(sidecars):  # a record whose label file is gone: kept all the same
            target = _free_name(self.folder / RECOVERED_DIR / self.relative(sidecar))
            if self._move(sidecar, target):
                kept.append(target)
        if kept:
            log.warning(quarantine_message(self.folder, kept))
        return kept

    def _move(self, path: Path, target: Path) -> bool:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError as exc:  # read-only: it stays where it is, still never deleted
            log.warning("cannot move unrecorded label file %s to %s/ (%s); it was left in place",
                        path, RECOVERED_DIR, exc.strerror or exc)
            return False
        fsync_folder(target.parent)
        fsync_folder(path.parent)
        return True

    def recovered_files(self) -> list[Path]:
        """Label files kept aside in ``recovered/`` (``alseg status --check`` lists them; their
        records, ``*.json``, go with them and are not listed)."""
        folder = self.folder / RECOVERED_DIR
        return sorted(p for p in folder.rglob(f"*{LABEL_SUFFIX}") if p.is_file()) if folder.is_dir() else []


def _version_of(sidecar: Path) -> Path:
    return sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)] + LABEL_SUFFIX)


def _sidecar_of(version: Path) -> Path:
    return version.with_name(version.name[: -len(LABEL_SUFFIX)] + SIDECAR_SUFFIX)


def write_sidecar(path: Path, record: dict) -> None:
    """Write ``record`` as JSON atomically and durably (temp, fsync, rename, folder fsync)."""
    try:
        with atomic_path(path) as temp:
            temp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    except OSError as exc:
        raise storage_error(path, exc, "write the label version's record") from None


def quarantine_message(project: Path, kept: list[Path]) -> str:
    """One line: what was kept, where, why it may matter, and how to restore it."""
    labels = [p for p in kept if p.name.endswith(LABEL_SUFFIX)]
    names = ", ".join(p.relative_to(project).as_posix() for p in labels)
    records = len(kept) - len(labels)
    return (f"kept {len(labels)} label file(s) that {project / 'project.sqlite'} does not record in "
            f"{project / RECOVERED_DIR}/ ({names}"
            + (f"; with {records} record(s) of what made them" if records else "") + "): work of a submit "
            "killed before it returned, or acknowledged submits whose commits were lost with "
            f"project.sqlite-wal. `alseg recover {project}` lists them and `alseg recover {project} "
            "--restore` records them again; or close the project, put back project.sqlite and "
            "project.sqlite-wal together from the backup, and move the files back to the same paths")


def _free_name(target: Path) -> Path:
    """``target``, or ``v0002~2.nii.gz`` etc. when an earlier quarantine already used the name
    (for a version, the name its record would take must be free too)."""
    suffix = next((s for s in (LABEL_SUFFIX, SIDECAR_SUFFIX) if target.name.endswith(s)), "")
    stem = target.name[: -len(suffix)] if suffix else target.name
    candidate, counter = target, 2
    while candidate.exists() or (suffix == LABEL_SUFFIX and _sidecar_of(candidate).exists()):
        candidate = target.with_name(f"{stem}~{counter}{suffix}")
        counter += 1
    return candidate


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files (``.<name>.XXXX.tmp``) interrupted atomic writes left in ``folder``.

    Used for ``models/``: a checkpoint save killed before its rename leaves one; the
    previous checkpoint is whole, and nothing refers to the temp file.
    """
    if not folder.is_dir():
        return []
    removed = [path for path in sorted(folder.iterdir())
               if path.is_file() and path.name.startswith(".") and ".tmp" in path.name and remove_file(path)]
    if removed:
        log.warning("removed %d unfinished file(s) in %s: %s", len(removed), folder,
                    ", ".join(p.name for p in removed))
    return removed


def remove_file(path: Path) -> bool:
    """Remove debris; on a read-only disk leave it (it is never read as data) and say so."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove unfinished file %s (%s)", path, exc.strerror or exc)
        return False
    return True


def write_label_volume(path: Path, data: np.ndarray, case: CaseRecord, *,
                       overwrite: bool = False) -> None:
    """Write a whole ``(k, j, i)`` volume durably, in the source file's orientation and affine."""
    if path.exists() and not overwrite:
        raise AlsegError(f"{path}: label file already exists; label versions are never "
                         "overwritten (is another writer using this project?)")
    _save(path, to_source_orientation(data, case.source_affine), case.source_affine)


def write_label_region(path: Path, data: np.ndarray, case: CaseRecord,
                       slice_index: int | None) -> None:
    """Write a region: one ``(j, i)`` slice as a 1-slice volume placed at its slice, or a volume."""
    if slice_index is None:
        write_label_volume(path, data, case)
        return
    offset = np.eye(4)
    offset[2, 3] = slice_index  # voxel k of the (flipped, positive) Volume grid
    _save(path, data[np.newaxis], case.affine @ offset)


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_volume(path, data, affine, is_label=True)
    except OSError as exc:
        raise storage_error(path, exc, "write the label file") from None


def to_source_orientation(data: np.ndarray, source_affine: np.ndarray) -> np.ndarray:
    """Undo load_volume's flips: a ``(k, j, i)`` array laid out as the source file stores it."""
    import nibabel as nib

    signs = nib.orientations.io_orientation(source_affine)[:, 1]  # per (i, j, k) file axis
    flipped_axes = tuple(2 - axis for axis in range(3) if signs[axis] < 0)
    return np.flip(data, axis=flipped_axes) if flipped_axes else data


def label_dtype(n_classes: int) -> np.dtype:
    """The smallest unsigned type for ``n_classes`` ids (napari Labels want uint8/uint16)."""
    return np.dtype(np.uint8 if n_classes <= 256 else np.uint16)


def array_sha256(data: np.ndarray) -> str:
    """Fingerprint of an array's dtype, shape and bytes: a changed file is caught on read."""
    digest = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    digest.update(np.ascontiguousarray(data).data)  # its buffer (a memoryview): no copy
    return digest.hexdigest()


def check_label_array(array: object, *, shape: tuple[int, ...], n_classes: int,
                      what: str) -> np.ndarray:
    """Validate class ids for one region and return them as the project's label dtype.

    Integer (or integer-valued float) arrays of exactly ``shape`` with ids in
    ``0..n_classes-1`` pass; anything else raises AlsegError naming ``what``.
    """
    data = np.asarray(array)
    if data.shape != tuple(shape):
        raise AlsegError(f"{what}: shape {data.shape} does not match the image {tuple(shape)} "
                         "(k, j, i)")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
            raise AlsegError(f"{what}: holds non-integer values; labels must be class ids "
                             f"0..{n_classes - 1}")
    elif not np.issubdtype(data.dtype, np.integer):
        raise AlsegError(f"{what}: dtype {data.dtype} is not a label type; use integers")
    if data.size and (data.min() < 0 or data.max() >= n_classes):
        bad = data.min() if data.min() < 0 else data.max()
        raise AlsegError(f"{what}: class id {bad:g} is out of range; this project has "
                         f"{n_classes} classes (0..{n_classes - 1})")
    return data.astype(label_dtype(n_classes))


def merge_region(base: np.ndarray, region: np.ndarray, slice_index: int | None,
                 class_id: int | None) -> np.ndarray:
    """A new volume: ``base`` with a submitted region (slice or volume; one class or all).

    With ``class_id`` only that class changes inside the region: voxels it used to cover
    become 0 and voxels ``region`` marks with it become it. Without, the region is replaced.
    """
    merged = base.copy()
    target = merged if slice_index is None else merged[slice_index]
    if class_id is None:
        target[...] = region
    else:
        target[target == class_id] = 0
        target[region == class_id] = class_id
    return merged


def labelled_mask(data: np.ndarray, items: Iterable[LabelledItem]) -> np.ndarray:
    """Which voxels of a label version carry an annotator-given class (``L_n`` of docs/METHODS.md §7.1).

    A whole-region item labels every voxel of its slice/volume; a single-class item labels
    the voxels that now hold that class. Everything else is unlabelled, even where 0.
    """
    mask = np.zeros(data.shape, dtype=bool)
    for item in items:
        region_mask = mask if item.slice_index is None else mask[item.slice_index]
        region_data = data if item.slice_index is None else data[item.slice_index]
        if item.class_id is None:
            region_mask[...] = True
        else:
            region_mask |= region_data == item.class_id
    return mask


def region_dice(original: np.ndarray, final: np.ndarray, class_id: int | None,
                n_classes: int) -> float:
    """Dice(original, final) over the submitted class, or the mean over foreground classes
    present in either; 1.0 when both are empty (nothing to change, nothing changed)."""
    classes = [class_id] if class_id is not None else range(1, n_classes)
    scores = []
    for c in classes:
        a, b = original == c, final == c
        total = int(a.sum()) + int(b.sum())
        if total:
            scores.append(2.0 * int(np.logical_and(a, b).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0
