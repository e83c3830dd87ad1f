"""Checking a source folder before a project is made from it: geometry, labels, classes, split.

Everything is read and validated first and nothing is written, so a bad file stops
``Project.create`` with one clear message and no half-made project.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..domain import CASE, PROJECT_GRANULARITIES, SLICE, Granularity
from ..errors import AlsegError, BadCasesError
from ..nifti import Volume, load_volume, read_affine
from .discover import (DATASET_FILE, CaseSource, SkippedCase, discover, msd_classes, read_classes,
                       read_dataset_info, skipped_message)
from .records import CaseGeometry, ClassInfo, HasGeometry

GRANULARITIES = PROJECT_GRANULARITIES
_AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True, eq=False)
class InspectedCase(HasGeometry):
    """A case whose files all load and agree, on the grid the project will record."""

    source: CaseSource
    geometry: CaseGeometry
    max_label: int | None


@dataclass(frozen=True)
class ProjectPlan:
    """All a new project needs, validated: classes, cases and the held-out validation items."""

    source_dir: Path
    dataset_name: str
    granularity: Granularity
    classes: tuple[ClassInfo, ...]
    cases: tuple[InspectedCase, ...]
    validation: tuple[tuple[str, int | None], ...]
    skipped: tuple[SkippedCase, ...] = ()


def plan_project(source_dir: Path, *, class_names: Sequence[str] | None, granularity: Granularity | None,
                 validation_fraction: float, seed: int, skip_bad_cases: bool = False) -> ProjectPlan:
    """Read and check every file under ``source_dir``.

    A case that cannot be used (unreadable, mismatched grids, a folder named like a file, ...)
    is never dropped silently: without ``skip_bad_cases`` every such case is named in one
    AlsegError; with it they are left out and listed in :attr:`ProjectPlan.skipped`.
    """
    info = read_dataset_info(source_dir)
    channel_order = info.get("channels")
    if channel_order is not None and not (isinstance(channel_order, list)
                                          and all(isinstance(c, str) for c in channel_order)):
        raise AlsegError(f"{source_dir / 'dataset.json'}: \"channels\" must be a list of names")
    found = discover(source_dir, channel_order)
    skipped = list(found.skipped)
    inspected = []
    for source in found.cases:
        try:
            inspected.append(inspect_case(source))
        except AlsegError as exc:
            skipped.append(SkippedCase(source.name, str(exc)))
    skipped.sort(key=lambda case: case.name)
    if skipped and not skip_bad_cases:
        raise BadCasesError(skipped_message(source_dir, skipped),
                            tuple((case.name, case.reason) for case in skipped))
    if not inspected:
        raise AlsegError(f"{source_dir}: no usable cases ({skipped_message(source_dir, skipped)})")
    cases = tuple(inspected)
    classes = _choose_classes(source_dir, class_names, cases,
                              msd_classes(info, source_dir / DATASET_FILE) if found.layout == "msd" else None)
    named = granularity or info.get("granularity") or (CASE if len(cases) > 1 else SLICE)
    if named not in GRANULARITIES:
        raise AlsegError(f"granularity must be one of {GRANULARITIES}, got {named!r}")
    granularity = Granularity(named)
    if not 0.0 <= validation_fraction < 1.0:
        raise AlsegError(f"validation fraction must be in [0, 1), got {validation_fraction}")
    validation = choose_validation(cases, granularity=granularity,
                                   fraction=validation_fraction, seed=seed)
    return ProjectPlan(source_dir=source_dir, dataset_name=str(info.get("name", source_dir.name)),
                       granularity=granularity, classes=classes, cases=cases, validation=validation,
                       skipped=tuple(skipped))


def inspect_case(source: CaseSource) -> InspectedCase:
    """Load each channel (one at a time) and the ground truth; shapes and affines must agree."""
    first_name, first_path = source.channels[0]
    reference = _load_channel(source, 0)
    for position, (_, path) in enumerate(source.channels[1:], start=1):
        _check_same_grid(_load_channel(source, position), reference, path, first_path)
    max_label = None
    if source.ground_truth is not None:
        truth = load_volume(source.ground_truth, as_label=True)
        _check_same_grid(truth, reference, source.ground_truth, first_path)
        max_label = int(truth.data.max())
    k, j, i = reference.shape
    return InspectedCase(
        source=source,
        geometry=CaseGeometry(shape=(k, j, i), spacing=reference.spacing,
                              origin=reference.origin, affine=reference.affine,
                              source_affine=read_affine(first_path)),
        max_label=max_label,
    )


def _load_channel(source: CaseSource, position: int) -> Volume:
    """Channel ``position`` of a case: a 3D file, or one channel of its 4D file."""
    _, path = source.channels[position]
    return load_volume(path, as_label=False, channel=source.channel_index(position),
                       channels_first=source.channels_first)


def affine_hash(affine: np.ndarray) -> str:
    """A short fingerprint of an affine, rounded to 1 µm so float noise does not change it."""
    rounded = np.round(np.asarray(affine, float), 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


def choose_validation(cases: Sequence[InspectedCase], *, granularity: Granularity, fraction: float,
                      seed: int) -> tuple[tuple[str, int | None], ...]:
    """The held-out items, drawn once with ``seed``: whole cases, or slices for one-stack data.

    At least one item is held out when ``fraction > 0`` and at least one is left to train on.
    """
    pool: list[tuple[str, int | None]]
    if granularity == CASE:
        pool = [(case.source.name, None) for case in cases]
    else:
        pool = [(case.source.name, k) for case in cases for k in range(case.shape[0])]
    if fraction == 0.0 or len(pool) < 2:
        return ()
    count = min(max(1, round(fraction * len(pool))), len(pool) - 1)
    picked = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return tuple(pool[i] for i in sorted(picked))


def _check_same_grid(volume: Volume, reference: Volume, path: Path, reference_path: Path) -> None:
    if volume.shape != reference.shape:
        raise AlsegError(f"{path}: shape {volume.shape} differs from {reference_path.name} "
                         f"{reference.shape} (k, j, i); channels and labels must share one grid")
    if not np.allclose(volume.affine, reference.affine, atol=_AFFINE_ATOL_MM):
        raise AlsegError(f"{path}: affine differs from {reference_path.name}; channels and "
                         "labels must be co-registered on one grid")


def _choose_classes(source_dir: Path, class_names: Sequence[str] | None,
                    cases: Sequence[InspectedCase],
                    dataset_classes: list[ClassInfo] | None = None) -> tuple[ClassInfo, ...]:
    """Given names win, then ``classes.json``, then dataset.json's ``labels`` (MSD layout),
    then as many classes as the ground truth uses."""
    classes: list[ClassInfo] | None
    if class_names is not None:
        classes = [ClassInfo(i, str(name)) for i, name in enumerate(class_names)]
        where = "class_names"
    else:
        classes = read_classes(source_dir)
        where = str(source_dir / "classes.json")
        if classes is None and dataset_classes is not None:
            classes, where = dataset_classes, str(source_dir / DATASET_FILE)
        if classes is None:
            top = max((c.max_label for c in cases if c.max_label is not None), default=1)
            classes = [ClassInfo(0, "background")] + [
                ClassInfo(i, f"class_{i}") for i in range(1, max(top, 1) + 1)]
    if len(classes) < 2:
        raise AlsegError(f"{where}: need at least 2 classes (background and one structure)")
    for case in cases:
        if case.max_label is not None and case.max_label >= len(classes):
            raise AlsegError(
                f"{case.source.ground_truth}: label id {case.max_label} is out of range; "
                f"{where} defines {len(classes)} classes (0..{len(classes) - 1})"
            )
    return tuple(classes)
