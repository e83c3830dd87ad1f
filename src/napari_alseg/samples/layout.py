"""The on-disk layout shared by every sample set: ``classes.json`` and ``dataset.json``.

``dataset.json`` is written last; its presence is what marks a set folder as complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AlsegError
from ..nifti import save_volume

DATASET_FILE = "dataset.json"
CLASSES_FILE = "classes.json"


def stack_affine(world_axes: Sequence[int], spacing_mm: Sequence[float]) -> np.ndarray:
    """Voxel-to-world (RAS) affine of a stack saved as ``(k, j, i)`` = (slice, row, column).

    ``world_axes``: the world axis (0 = x, left to right; 1 = y, posterior to anterior;
    2 = z, inferior to superior) that columns, rows and slices run along, in that order;
    ``spacing_mm`` the same three steps. A viewer then shows the slices in their true
    orientation, and the training plan finds the left-right axis (``plan.left_right_axis``).
    """
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for voxel_axis, (world_axis, step) in enumerate(zip(world_axes, spacing_mm)):
        affine[world_axis, voxel_axis] = float(step)
    return affine


def write_json(path: Path, content: dict) -> Path:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(temporary, path)
    return path


def write_classes(folder: Path, classes: dict[int, tuple[str, tuple[int, int, int]]]) -> Path:
    """Write ``classes.json``: ``{"<id>": {"name": ..., "color": [r, g, b]}}`` (0-255)."""
    content = {str(class_id): {"name": name, "color": list(color)}
               for class_id, (name, color) in sorted(classes.items())}
    return write_json(folder / CLASSES_FILE, content)


def write_t1_stack(folder: Path, images: np.ndarray, labels: np.ndarray, affine: np.ndarray,
                   classes: dict[int, tuple[str, tuple[int, int, int]]]) -> None:
    """A one-stack set: ``stack/stack_t1.nii.gz`` (``images`` ``(slice, rows, cols)`` rounded to
    int16), ``stack/stack_seg.nii.gz`` (``labels``, same shape, stored as labels) and
    ``classes.json``. The brain-stack sample and the benchmark's sagittal set write this layout."""
    stack_folder = folder / "stack"
    stack_folder.mkdir()
    save_volume(stack_folder / "stack_t1.nii.gz", np.rint(images).astype(np.int16), affine)
    save_volume(stack_folder / "stack_seg.nii.gz", labels, affine, is_label=True)
    write_classes(folder, classes)


def load_class_names(set_dir: Path) -> dict[int, str]:
    """Class id -> name from a set folder's ``classes.json``, or raise :class:`AlsegError`."""
    path = Path(set_dir) / CLASSES_FILE
    if not path.is_file():
        raise AlsegError(f"{path}: file not found (not a sample-set folder?)")
    try:
        content = json.loads(path.read_text())
        return {int(class_id): (entry["name"] if isinstance(entry, dict) else str(entry))
                for class_id, entry in content.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AlsegError(f"{path}: not a valid classes file ({exc!r})") from None


def dataset_field(set_dir: Path, key: str) -> Any:
    """One top-level field of a set folder's ``dataset.json`` (None when unreadable or absent):
    what a cache compares its generator version with."""
    try:
        return json.loads((Path(set_dir) / DATASET_FILE).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def is_complete(set_dir: Path) -> bool:
    """True once a set folder's ``dataset.json`` exists (it is written last)."""
    return (Path(set_dir) / DATASET_FILE).is_file()
