"""Dataset fingerprint -> training plan: nnU-Net's idea, sized to this machine.

A project's images decide, once, how its model is trained: the working spacing
(large or anisotropic items are resampled inside the network to a coarser, more
isotropic grid), the crop (patch) and batch sizes, the network's widths, the
round's wall-clock budget, and which axis training may mirror (the patient's
left-right, unless the classes name sides). The plan is stored with the project
(``alseg status`` shows it) and any field can be overridden.

Pure numbers, no torch (outside the ``model`` package, whose import loads torch): the
CLI can show a plan without importing the model backend.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol

import numpy as np

from .errors import AlsegError

# 2: mirror_axes (a version-1 plan gets them from the data); 3: guidance (an older plan gets
# False, what its models were); the rest of an older plan is kept.
PLAN_VERSION = 3
MIRROR_PLAN_VERSION = 2
# Whether a new project's network reads clicks (TrainingPlan.guidance). Off: at equal training
# time (one 150 s round, seed 0, a loaded 2-core CPU) a guided net's test Dice without clicks
# was 0.858 against 0.856 unguided on tumour-cases but 0.415 against 0.438 on brain-stack.
GUIDED_BY_DEFAULT = False
POOLING_FACTOR = 16
MIN_PATCH = 32
ANISOTROPY_LIMIT = 3.0

CPU, CUDA = "cpu", "cuda"
PLAN_SETTING = "training_plan"  # the project's meta key the plan is kept under
DEFAULT_LEARNING_RATE = 1e-2
# A voxel axis counts as left-right when it is within ~35 degrees of the world x axis.
LEFT_RIGHT_COSINE = 0.82
SIDE_WORDS = frozenset({"left", "right", "l", "r", "lh", "rh", "lt", "rt"})


@dataclass(frozen=True)
class DeviceBudget:
    """What one device affords per training step, chosen from measurements (RESULTS.md).

    ``max_working_voxels``: items larger than this (after anisotropy correction) are
    resampled to a coarser grid. ``max_patch``: crop edge in working voxels.
    ``batch``: crops per step. ``features``: the six widths of the network.
    ``seconds``: default wall-clock budget of one training round.
    """

    max_working_voxels: int
    max_patch: int
    batch: int
    features: tuple[int, ...]
    seconds: float


# Chosen with benchmarks/bench_learner.py on the sample sets (brain-stack, tumour-cases) on a
# 2-core CPU: working on about 90^2 px (2D) or 48^3 voxels (3D) lets a 2-minute round take
# several times more steps than the native grid, which learnt more per minute there
# (benchmarks/RESULTS.md). GPU sizes follow nnU-Net's scale; not measured here (no GPU lent).
BUDGETS: dict[tuple[str, int], DeviceBudget] = {
    (CPU, 2): DeviceBudget(8192, 160, 8, (16, 32, 64, 128, 256, 32), 120.0),
    (CPU, 3): DeviceBudget(48 ** 3, 64, 2, (8, 16, 32, 64, 128, 8), 120.0),
    (CUDA, 2): DeviceBudget(512 * 512, 256, 16, (32, 64, 128, 256, 320, 32), 60.0),
    (CUDA, 3): DeviceBudget(160 ** 3, 128, 2, (16, 32, 64, 128, 256, 16), 60.0),
}


@dataclass(frozen=True)
class Fingerprint:
    """What the plan is decided from: the items the model sees, not their contents.

    ``median_shape``: spatial shape of a training item in voxels (a slice for 2D
    projects, a case for 3D); ``median_spacing_mm``: its voxel size per axis.
    ``left_right_axis``: the item axis along the patient's left-right (None: not known
    or not in the item, e.g. sagittal slices); ``lateral_labels``: some class names a side.
    """

    spatial_dims: int
    n_channels: int
    n_classes: int
    n_items: int
    median_shape: tuple[int, ...]
    median_spacing_mm: tuple[float, ...]
    left_right_axis: int | None = None
    lateral_labels: bool = False


@dataclass(frozen=True)
class TrainingPlan:
    """How a project's model is trained and run.

    ``working_spacing_mm``: the grid the network computes on; ``zoom`` = native /
    working spacing per axis (1 = native, 0.5 = half the voxels per axis). ``patch_size``
    is in *native* voxels (what training crops and sliding windows cut), ``batch_size``
    crops per step, ``features`` the network widths, ``seconds`` the default round budget,
    ``device`` the device kind it was sized for. ``mirror_axes``: item axes training
    flips at random: the left-right axis of bilaterally symmetric anatomy doubles what
    a few labelled items show (RESULTS.md, "Mirroring"); empty where a flip would swap
    left and right classes or the axis is unknown. ``guidance``: the network also reads the
    annotator's clicks (trained with simulated ones, DeepEdit's recipe), so segmenting with
    clicks asks it; it still segments without them. Applies from the next round.
    """

    spatial_dims: int
    device: str
    working_spacing_mm: tuple[float, ...]
    zoom: tuple[float, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    features: tuple[int, ...]
    seconds: float
    mirror_axes: tuple[int, ...] = ()
    guidance: bool = False
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        dims = self.spatial_dims
        if dims not in (2, 3):
            raise AlsegError(f"plan: spatial_dims must be 2 or 3, got {dims}")
        object.__setattr__(self, "mirror_axes", tuple(int(axis) for axis in self.mirror_axes))
        object.__setattr__(self, "guidance", bool(self.guidance))
        if any(axis not in range(dims) for axis in self.mirror_axes):
            raise AlsegError(f"plan: mirror_axes must be axes 0..{dims - 1}, got {self.mirror_axes}")
        for name in ("working_spacing_mm", "zoom", "patch_size"):
            value = tuple(getattr(self, name))
            if len(value) != dims:
                raise AlsegError(f"plan: {name} must hold {dims} values, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "features", tuple(int(width) for width in self.features))
        if not all(0 < zoom <= 1 for zoom in self.zoom):
            raise AlsegError(f"plan: zoom factors must be in (0, 1], got {self.zoom}")
        if min(self.patch_size) < 1 or self.batch_size < 1:
            raise AlsegError("plan: patch_size and batch_size must be positive")
        if len(self.features) != 6 or min(self.features) < 1:
            raise AlsegError(f"plan: features must be six positive widths, got {self.features}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise AlsegError(f"plan: seconds must be a positive number, got {self.seconds}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainingPlan:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as error:
            raise AlsegError(f"not a valid training plan: {error}") from error

    def with_overrides(self, **overrides: Any) -> TrainingPlan:
        """A copy with the given fields replaced (unknown names refused with one line)."""
        known = {f.name for f in fields(self)} - {"version", "spatial_dims"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise AlsegError(f"plan: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def describe(self) -> list[str]:
        """One line per decision, for ``alseg status``."""
        axes = " x ".join
        return [
            f"network: {self.spatial_dims}D U-Net, widths {', '.join(map(str, self.features))}; sized for {self.device}",
            f"working spacing: {axes(f'{s:g}' for s in self.working_spacing_mm)} mm "
            f"(zoom {axes(f'{z:.3g}' for z in self.zoom)})",
            f"patch: {axes(map(str, self.patch_size))} native voxels, batch {self.batch_size}",
            f"round budget: {self.seconds:g} s",
            (f"augmentation: mirrored along axis {', '.join(map(str, self.mirror_axes))} (left-right)"
             if self.mirror_axes else "augmentation: not mirrored (no left-right axis, or classes name sides)"),
            ("clicks: the network reads them (trained with simulated clicks)" if self.guidance
             else "clicks: the network does not read them (the click tool takes its plain prediction as a prior)"),
        ]


class HasSettings(Protocol):
    """What :func:`stored_plan` reads from: a project's ``meta`` settings."""

    def setting(self, key: str) -> str | None: ...


def stored_plan(project: HasSettings) -> TrainingPlan | None:
    """The plan kept in a project's ``meta`` table (anything with ``setting(key)``), or None."""
    stored = project.setting(PLAN_SETTING)
    return None if stored is None else TrainingPlan.from_json(stored)


def inference_patch(plan: TrainingPlan | None) -> tuple[int, ...] | None:
    """Sliding-window size for prediction and scoring (native voxels): the plan's patch for 3D
    cases; 2D slices (at most the plan's working size) and plan-less models go through whole."""
    return plan.patch_size if plan is not None and plan.spatial_dims == 3 else None


def fingerprint(shapes: Sequence[Sequence[int]], spacings_mm: Sequence[Sequence[float]], *,
                n_channels: int, n_classes: int, left_right_axis: int | None = None,
                class_names: Sequence[str] = ()) -> Fingerprint:
    """Fingerprint of training items: ``shapes`` / ``spacings_mm`` one row per item;
    ``left_right_axis`` an item axis (:func:`left_right_axis` gives it for a case)."""
    if len(shapes) == 0 or len(shapes) != len(spacings_mm):
        raise AlsegError("fingerprint: need the same, non-zero number of shapes and spacings")
    shape_rows = np.asarray(shapes, dtype=float)
    spacing_rows = np.asarray(spacings_mm, dtype=float)
    if shape_rows.ndim != 2 or shape_rows.shape != spacing_rows.shape or shape_rows.shape[1] not in (2, 3):
        raise AlsegError(f"fingerprint: shapes and spacings must be rows of 2 or 3 values, got {shape_rows.shape}")
    if (shape_rows < 1).any() or not (spacing_rows > 0).all():
        raise AlsegError("fingerprint: shapes and spacings must be positive")
    if left_right_axis is not None and left_right_axis not in range(shape_rows.shape[1]):
        raise AlsegError(f"fingerprint: left_right_axis must be an item axis, got {left_right_axis}")
    return Fingerprint(
        spatial_dims=shape_rows.shape[1],
        n_channels=int(n_channels),
        n_classes=int(n_classes),
        n_items=len(shape_rows),
        median_shape=tuple(int(round(v)) for v in np.median(shape_rows, axis=0)),
        median_spacing_mm=tuple(float(v) for v in np.median(spacing_rows, axis=0)),
        left_right_axis=left_right_axis,
        lateral_labels=lateralised(class_names),
    )


def left_right_axis(affine: np.ndarray) -> int | None:
    """The data axis (arrays are ``(k, j, i)``) along the patient's left-right, from a 4x4
    voxel-to-world (RAS) affine; None when no voxel axis is within ~35 degrees of it."""
    directions = np.asarray(affine, float)[:3, :3]
    cosines = np.abs(directions[0]) / np.maximum(np.linalg.norm(directions, axis=0), 1e-12)
    voxel_axis = int(np.argmax(cosines))
    return 2 - voxel_axis if cosines[voxel_axis] >= LEFT_RIGHT_COSINE else None


def item_left_right_axis(affine: np.ndarray, spatial_dims: int) -> int | None:
    """:func:`left_right_axis` as an axis of the items the network sees: a 3D case's own,
    or a 2D slice's (data axes 1, 2 -> 0, 1; None when the slice axis is the left-right one)."""
    axis = left_right_axis(affine)
    if axis is None or spatial_dims == 3:
        return axis
    return axis - 1 if axis > 0 else None


def lateralised(class_names: Sequence[str]) -> bool:
    """Whether a class name says a side ("Left-Hippocampus", "putamen_R", "lh_cortex"):
    mirroring such labels would teach the network to swap them."""
    for name in class_names:
        words = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name)).lower()
        if SIDE_WORDS & set(re.split(r"[^a-z0-9]+", words)):
            return True
    return False


def make_plan(dataset: Fingerprint, device: str = CPU) -> TrainingPlan:
    """The plan for ``dataset`` on a ``device`` kind (``"cpu"`` or ``"cuda"``)."""
    if device not in (CPU, CUDA):
        raise AlsegError(f"plan: device must be {CPU!r} or {CUDA!r}, got {device!r}")
    budget = BUDGETS[(device, dataset.spatial_dims)]
    spacing = working_spacing(dataset.median_shape, dataset.median_spacing_mm, budget.max_working_voxels)
    zoom = tuple(min(1.0, native / work) for native, work in zip(dataset.median_spacing_mm, spacing))
    working_shape = [max(1, round(size * z)) for size, z in zip(dataset.median_shape, zoom)]
    working_patch = [min(budget.max_patch, _round_up(max(size, MIN_PATCH), POOLING_FACTOR)) for size in working_shape]
    patch = tuple(int(math.ceil(p / z)) for p, z in zip(working_patch, zoom))
    patch = tuple(min(p, max(size, MIN_PATCH)) for p, size in zip(patch, dataset.median_shape))
    mirror = () if dataset.left_right_axis is None or dataset.lateral_labels else (dataset.left_right_axis,)
    return TrainingPlan(dataset.spatial_dims, device, tuple(round(s, 4) for s in spacing),
                        tuple(round(z, 4) for z in zoom), patch, budget.batch, budget.features, budget.seconds,
                        mirror, GUIDED_BY_DEFAULT)


def working_spacing(shape: Sequence[int], spacing_mm: Sequence[float], max_voxels: int) -> tuple[float, ...]:
    """Coarsen fine axes until no axis is over ``ANISOTROPY_LIMIT`` x finer than the coarsest,
    then every axis equally until the item holds at most ``max_voxels`` voxels (mm per axis).

    Never finer than native: the network is not asked to invent detail.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    extent = np.asarray(shape, dtype=float) * spacing
    spacing = np.maximum(spacing, spacing.max() / ANISOTROPY_LIMIT)
    voxels = float(np.prod(extent / spacing))
    if voxels > max_voxels:
        spacing = spacing * (voxels / max_voxels) ** (1.0 / len(spacing))
    return tuple(float(value) for value in spacing)


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
