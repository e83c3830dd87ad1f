"""napari reader contribution: NIfTI files as Image or Labels layers in scanner mm.

Layers keep the file's voxel spacing (``scale``) and origin (``translate``), so
co-registered channels and their label volumes overlay exactly, and distances
measured in the viewer are millimetres.

Memory is bounded before any voxel is read: the headers' declared sizes give the peak the
layers need (:func:`~napari_alseg.nifti.memory_needed`), and files that would exceed the
reader's budget (``NAPARI_ALSEG_READER_BUDGET_GB``, default 4) are refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AlsegError
from .geometry import display_placement, tilt_refusal
from .nifti import (READER_BUDGET_ENV, Volume, budget_refusal, is_nifti_path, load_volume, memory_needed, read_shape,
                    reader_budget)
from .store.discover import DATASET_FILE, msd_channel_names, read_dataset_info

LayerData = tuple[np.ndarray, dict[str, Any], str]


def napari_get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """Claim the path only when every file is a regular ``.nii`` / ``.nii.gz`` file (a FIFO or
    device so named would block the read forever)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(is_nifti_path(p) and Path(p).is_file() for p in paths):
        return None
    return read_nifti


MAX_CHANNEL_LAYERS = 8  # a 4D file with more volumes is a time series, not channels


def read_nifti(path: str | Sequence[str]) -> list[LayerData]:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    for p in paths:
        check_regular_file(p)
    plan = [(p, channel_names(p)) for p in paths]
    check_budget(plan)
    layers: list[LayerData] = []
    try:
        for p, channels in plan:
            if channels is None:
                layers.append(volume_layer_data(load_volume(p), layer_name(p), source=str(p)))
                continue
            for index, channel in enumerate(channels):  # MSD / BraTS: one layer per channel
                layers.append(volume_layer_data(load_volume(p, as_label=False, channel=index),
                                                f"{layer_name(p)} · {channel}", source=str(p),
                                                visible=index == 0))
    except MemoryError:  # within the budget, but the machine (or a ulimit) has less
        layers.clear()
        names = ", ".join(Path(str(p)).name for p, _ in plan)
        raise AlsegError(f"{names}: ran out of memory while reading, within the reader's budget of "
                         f"{reader_budget() / (1 << 30):g} GiB; lower {READER_BUDGET_ENV} to what this "
                         "machine can give, or free memory") from None
    return layers


def check_regular_file(path: str | Path) -> None:
    """One AlsegError line unless ``path`` is a regular file: reading a FIFO never ends."""
    if not Path(path).is_file():
        what = "does not exist" if not Path(path).exists() else "is not a regular file (a FIFO, device or folder)"
        raise AlsegError(f"{path}: {what}; the reader opens regular NIfTI files only")


def check_budget(plan: Sequence[tuple[str | Path, list[str] | None]]) -> None:
    """One AlsegError line, before any voxel is read, when the layers of ``plan`` (each file
    with its channel names, or None) would need more memory than :func:`reader_budget`."""
    budget = reader_budget()
    total, declarations = 0, []
    for p, channels in plan:
        if channels is None:
            needed, declaration = memory_needed(p)
        else:
            per_channel, declaration = memory_needed(p, channel=0)
            needed = per_channel * len(channels)
        total += needed
        declarations.append((Path(str(p)).name, declaration))
    if total > budget:
        names = ", ".join(name for name, _ in declarations)
        declared = "; ".join(text if len(declarations) == 1 else f"{name} {text}"
                             for name, text in declarations)
        raise AlsegError(budget_refusal(names, declared, total, budget))


def channel_names(path: str | Path) -> list[str] | None:
    """For a 4D multi-channel file (channels on the 4th axis, at most MAX_CHANNEL_LAYERS):
    its channels' names, from a ``dataset.json`` beside it or one folder up (MSD's
    ``"modality"`` / nnU-Net's ``"channel_names"``), else ``c0``, ``c1``, ...; None otherwise."""
    shape = read_shape(path)
    extra = [n for n in shape[3:] if n != 1]
    if len(extra) != 1 or extra[0] > MAX_CHANNEL_LAYERS:
        return None
    count = extra[0]
    for folder in (Path(path).parent, Path(path).parent.parent):
        try:
            info = read_dataset_info(folder)
            names = msd_channel_names(info, folder / DATASET_FILE)
        except AlsegError:
            continue
        if names is not None and len(names) == count:
            return names
    return [f"c{index}" for index in range(count)]


def layer_name(path: str | Path) -> str:
    name = Path(str(path)).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_layer_data(volume: Volume, name: str, *, source: str = "",
                      colors: dict[int, tuple[float, ...]] | None = None,
                      visible: bool = True) -> LayerData:
    """One layer tuple for a volume: Labels for label volumes, a grey Image otherwise.

    Placed at the file's world positions (:func:`~napari_alseg.geometry.display_placement`: a grid
    turned about its slice axis is rotated so); a grid tilted out of its slice plane, which
    napari cannot show in place, is refused in one line (:func:`~napari_alseg.geometry.tilt_refusal`).
    """
    refusal = tilt_refusal(Path(source).name if source else name, volume.affine, volume.data.shape)
    if refusal is not None:
        raise AlsegError(refusal)
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": volume.spacing,
        "translate": volume.origin,
        "rotate": display_placement(volume.affine, volume.data.shape).rotate,
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


DISPLAY_SAMPLE_VOXELS = 1 << 20  # percentiles of at most ~1M voxels: a few MB, not a volume's copies


def display_range(image: np.ndarray) -> tuple[float, float]:
    """Robust contrast limits (0.5–99.5th percentile of non-zero voxels): MRI is mostly air.

    A volume above :data:`DISPLAY_SAMPLE_VOXELS` is sampled on a regular strided grid (a view;
    only the sample is copied), so the limits cost a few MB whatever the volume's size.
    """
    image = np.asarray(image)
    if image.size > DISPLAY_SAMPLE_VOXELS:
        step = int(np.ceil((image.size / DISPLAY_SAMPLE_VOXELS) ** (1 / image.ndim)))
        while np.prod([-(-n // step) for n in image.shape]) > DISPLAY_SAMPLE_VOXELS:
            step += 1  # a thin axis takes no stride: the others take more
        image = image[(slice(None, None, step),) * image.ndim]
    sample = np.array(image)  # small: at most about DISPLAY_SAMPLE_VOXELS values
    foreground = sample[sample != 0]
    values = foreground if foreground.size else sample.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)
