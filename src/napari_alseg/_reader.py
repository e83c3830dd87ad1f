"""napari reader contribution: NIfTI files as Image or Labels layers in scanner mm.

Layers keep the file's voxel spacing (``scale``) and origin (``translate``), so
co-registered channels and their label volumes overlay exactly, and distances
measured in the viewer are millimetres.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .nifti import Volume, is_nifti_path, load_volume

LayerData = tuple[np.ndarray, dict[str, Any], str]


def napari_get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """Claim the path only when every file is ``.nii`` / ``.nii.gz``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(is_nifti_path(p) for p in paths):
        return None
    return read_nifti


def read_nifti(path: str | Sequence[str]) -> list[LayerData]:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [volume_layer_data(load_volume(p), layer_name(p), source=str(p)) for p in paths]


def layer_name(path: str | Path) -> str:
    name = Path(str(path)).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_layer_data(volume: Volume, name: str, *, source: str = "",
                      colors: dict[int, tuple[float, ...]] | None = None,
                      visible: bool = True) -> LayerData:
    """One layer tuple for a volume: Labels for label volumes, a grey Image otherwise."""
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": volume.spacing,
        "translate": volume.origin,
        "visible": visible,
        "metadata": {"source": source, "affine": volume.affine, "spacing_mm": volume.spacing},
    }
    if volume.is_label:
        kwargs["opacity"] = 0.5  # anatomy must stay readable under the labels
        if colors:
            kwargs["colormap"] = {None: (0, 0, 0, 0), **colors}
        return volume.data, kwargs, "labels"
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = display_range(volume.data)
    return volume.data, kwargs, "image"


def display_range(image: np.ndarray) -> tuple[float, float]:
    """Robust contrast limits (0.5–99.5th percentile of non-zero voxels): MRI is mostly air."""
    foreground = image[image != 0]
    values = foreground if foreground.size else image.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)
