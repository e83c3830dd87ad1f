"""Sample data sets generated reproducibly from templates installed by package managers.

``brain-stack``: deformed coronal slices of Colin27 with 10 structures (Debian
``mricron-data``). ``tumour-cases``: 3-channel 3D brains with a synthetic tumour
(nilearn's bundled MNI152 2009 maps). Nothing is downloaded; the same seed gives the
same arrays. Pure Python: no Qt, no napari.

Larger variants for the simulation benchmark, named in :data:`BENCHMARK_SETS` and made
by the same generators with preset options: ``brain-stack-72`` (slices every 2.5 mm, 72
slices) and ``tumour-cases-60`` (60 graded cases: one to three lesions, graded size,
contrast, bias and noise, two base brains where installed). They are never part of
:func:`generate_all`; :func:`generate_sample` and :func:`sample_dir` take their names.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import make_folder
from ..errors import AlsegError
from . import brain_stack, tumour_cases
from .layout import DATASET_FILE, dataset_field, is_complete, load_class_names, write_json

__all__ = ["BENCHMARK_SETS", "SAMPLE_SETS", "generate_all", "generate_sample", "load_class_names", "sample_dir"]

SAMPLE_SETS: tuple[str, ...] = ("brain-stack", "tumour-cases")
# name -> (generator set, preset options); options given to generate_sample override them
BENCHMARK_SETS: dict[str, tuple[str, dict]] = {
    "brain-stack-72": ("brain-stack", {"slice_step_mm": 2.5}),
    "tumour-cases-60": ("tumour-cases", {"n_cases": 60, "variety": "graded"}),
}
DEFAULT_SEEDS = {"brain-stack": 2022, "tumour-cases": 2009}
# Per generator: a cached set made by an older version is made anew. brain-stack 2: the stack's
# affine says where its axes point (columns left-right, rows inferior-superior, slices
# posterior-anterior) instead of a diagonal placeholder; the voxels are unchanged.
GENERATOR_VERSIONS = {"brain-stack": 2, "tumour-cases": 1}
_WRITERS: dict[str, Callable[..., dict]] = {"brain-stack": brain_stack.write_set, "tumour-cases": tumour_cases.write_set}

Progress = Callable[[str], None]


def generate_sample(name: str, out_dir: Path, *, seed: int | None = None,
                    progress: Progress | None = None, **options: Any) -> Path:
    """Write sample set ``name`` into ``out_dir/<name>/`` and return that folder.

    The set is built in a hidden sibling folder and renamed into place, replacing any
    previous copy, so a crash never leaves a half-written set under the real name;
    ``dataset.json`` is written last. ``options`` go to the set's generator
    (brain-stack: ``mricron_dir``, ``slice_step_mm``; tumour-cases: ``n_cases``, ``size``,
    ``variety``, ``brains``). A :data:`BENCHMARK_SETS` name uses its generator with its
    preset options, the given ones on top, and its generator's default seed.
    """
    writer = _writer(name)
    _check_options(name, writer, options)
    generator, preset = BENCHMARK_SETS.get(name, (name, {}))
    options = {**preset, **options}
    seed = DEFAULT_SEEDS[generator] if seed is None else int(seed)
    out_dir = _writable_folder(out_dir)
    report = progress or (lambda message: None)
    started = time.perf_counter()
    staging = _staging_folder(out_dir, name)
    try:
        info = writer(staging, seed=seed, progress=progress, **options)
        write_json(staging / DATASET_FILE, {
            "name": name, "granularity": info.pop("granularity"), "seed": seed,
            "channels": info.pop("channels"), "classes": info.pop("classes"),
            "source": info.pop("source"), "generator_version": GENERATOR_VERSIONS[generator],
            "options": {key: str(value) for key, value in options.items()}, **info,
        })
        target = _swap_into_place(staging, out_dir / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report(f"{name}: written to {target} in {time.perf_counter() - started:.1f} s")
    return target


def generate_all(out_dir: Path, *, progress: Progress | None = None) -> list[Path]:
    """Write every set in :data:`SAMPLE_SETS` with its default seed; returns their folders."""
    return [generate_sample(name, out_dir, progress=progress) for name in SAMPLE_SETS]


def sample_dir(name: str, *, progress: Progress | None = None) -> Path:
    """The cached copy of set ``name``, generated on first use (or when the generator changed).

    Cache root: ``$ALSEG_DATA_DIR`` if set, else ``~/.cache/napari-alseg/samples``.
    """
    _writer(name)
    target = cache_root() / name
    generator = BENCHMARK_SETS.get(name, (name, {}))[0]
    if is_complete(target) and dataset_field(target, "generator_version") == GENERATOR_VERSIONS[generator]:
        return target
    return generate_sample(name, cache_root(), progress=progress)


def cache_root() -> Path:
    """Where :func:`sample_dir` keeps generated sets."""
    configured = os.environ.get("ALSEG_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "napari-alseg" / "samples"


def _writer(name: str) -> Callable[..., dict]:
    generator = BENCHMARK_SETS.get(name, (name, {}))[0]
    if generator not in _WRITERS:
        valid = ", ".join((*SAMPLE_SETS, *BENCHMARK_SETS))
        raise AlsegError(f"unknown sample set {name!r}; valid names: {valid}")
    return _WRITERS[generator]


def _check_options(name: str, writer: Callable[..., dict], options: dict) -> None:
    valid = [parameter for parameter in inspect.signature(writer).parameters
             if parameter not in ("folder", "seed", "progress")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise AlsegError(
            f"{name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")


def _writable_folder(out_dir: Path) -> Path:
    folder = make_folder(Path(out_dir).expanduser(), "the output folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AlsegError(f"{folder}: output folder is not writable")
    return folder


def _staging_folder(out_dir: Path, name: str) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out_dir))
    except OSError as exc:
        raise AlsegError(
            f"{out_dir}: cannot write the sample data there ({exc.strerror})") from None
    staging.chmod(0o755)
    return staging


def _swap_into_place(staging: Path, target: Path) -> Path:
    """Rename ``staging`` to ``target``; an old ``target`` is moved aside, then deleted."""
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                        dir=target.parent))
        os.replace(target, retired / target.name)
    os.replace(staging, target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return target
