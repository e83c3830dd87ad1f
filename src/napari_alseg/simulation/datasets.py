"""The data a benchmark plan runs on: a folder, a sample or pool name, and a downsampled copy."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AlsegError
from ..nifti import load_volume, save_volume
from ..store.discover import discover_cases, read_dataset_info

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def resolve_dataset(dataset: str | Path, data_dir: Path, *, options: Mapping[str, Any] | None = None,
                    downsample: int = 1, progress: Callable[[str], None] | None = None) -> Path:
    """The folder to simulate on.

    ``dataset``: a folder of cases with ground truth, or a sample / benchmark pool name
    (``brain-stack``, ``tumour-cases``, ``brain-stack-72``, ``tumour-cases-60``). ``options``
    (a name only) are the generator's (e.g. ``{"size": 40}``): the set is then generated
    into ``data_dir``, else the cached copy is used. ``downsample`` > 1 makes a
    :func:`downsampled_copy` in ``data_dir`` (kept for reruns).
    """
    from ..samples import BENCHMARK_SETS, SAMPLE_SETS, generate_sample, sample_dir

    source = Path(dataset)
    if not source.exists():
        name = str(dataset)
        if name not in (*SAMPLE_SETS, *BENCHMARK_SETS):
            raise AlsegError(f"dataset {name!r} is neither a folder nor a sample name "
                             f"({', '.join((*SAMPLE_SETS, *BENCHMARK_SETS))})")
        if options:
            tag = "-".join(f"{key}{value}" for key, value in sorted(options.items()))
            folder = data_dir / f"{name}-{tag}"
            if not (folder / name / "dataset.json").exists():
                generate_sample(name, folder, progress=progress, **dict(options))
            source = folder / name
        else:
            source = sample_dir(name, progress=progress)
    elif options:
        raise AlsegError("dataset options apply to a sample name, not to a folder of cases")
    if downsample == 1:
        return source
    return downsampled_copy(source, data_dir / f"{source.name}-down{downsample}", downsample)


def downsampled_copy(source: Path, target: Path, factor: int) -> Path:
    """``source`` with every image and label volume shrunk ``factor``× (kept when already made).

    2D stacks (``granularity: slice``) shrink in-plane only, case sets along all three axes:
    images are block-averaged, labels sampled at each block's first voxel (no new classes),
    each axis cut to a multiple of ``factor``; the voxel size grows to match. Other files
    (classes.json, dataset.json) are copied.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise AlsegError(f"downsample must be a whole number >= 1, got {factor!r}")
    if (target / "dataset.json").exists() or (target / ".complete").exists():
        return target
    in_plane = read_dataset_info(source).get("granularity") == "slice"
    labels = {case.ground_truth for case in discover_cases(source) if case.ground_truth is not None}
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        out = staging / relative
        if path.is_dir():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if not path.name.endswith(NIFTI_SUFFIXES):
            shutil.copy(path, out)
            continue
        is_label = path in labels
        volume = load_volume(path, as_label=is_label)
        data, affine = _shrunk(np.asarray(volume.data), volume.affine, factor, in_plane, is_label)
        save_volume(out, data, affine, is_label=is_label)
    if not (staging / "dataset.json").exists():
        (staging / ".complete").write_text(json.dumps({"source": str(source), "factor": factor}))
    staging.rename(target)
    return target


def _shrunk(data: np.ndarray, affine: np.ndarray, factor: int, in_plane: bool,
            is_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(k, j, i)`` data shrunk along (j, i) or (k, j, i); the affine's voxel axes are (i, j, k)."""
    axes = (1, 2) if in_plane else (0, 1, 2)
    cut = tuple(slice(0, size // factor * factor) if axis in axes else slice(None)
                for axis, size in enumerate(data.shape))
    data = data[cut]
    if is_label:
        small = data[tuple(slice(None, None, factor) if axis in axes else slice(None) for axis in range(3))]
    else:
        shape = []
        for axis, size in enumerate(data.shape):
            shape += [size // factor, factor] if axis in axes else [size, 1]
        small = data.reshape(shape).mean(axis=(1, 3, 5)).astype(np.float32)
    affine = np.array(affine, dtype=float, copy=True)
    for axis in axes:
        affine[:3, 2 - axis] *= factor  # data axis k, j, i is affine column 2, 1, 0
    return small, affine
