"""The typed rows the store hands out: plain frozen dataclasses, no database handles.

Arrays follow :mod:`napari_alseg.nifti`: ``(k, j, i)``, slice axis first; spacing and
origin in mm in the same order; affines in nibabel's ``(i, j, k)`` order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# event kinds live in the domain leaf; re-exported here for the store's readers
from ..domain import (CORRECTED, EVENT_KINDS, LABELLING_KINDS, MANUAL, PSEUDO_ACCEPTED, PSEUDO_REJECTED,  # noqa: F401
                      EventKind)


@dataclass(frozen=True)
class ClassInfo:
    """One segmentation class; id 0 is background. ``color`` is RGB 0-255 when known."""

    id: int
    name: str
    color: tuple[int, int, int] | None = None


@dataclass(frozen=True, eq=False)
class CaseGeometry:
    """A case's voxel grid, as ingest checks it and the project stores it.

    ``shape`` ``(k, j, i)``; ``spacing`` and ``origin`` in mm in the same order; ``affine`` is
    the :class:`~napari_alseg.nifti.Volume` affine (axes flipped to positive spacing);
    ``source_affine`` is the first channel file's own affine, which label files are written
    with so that they overlay the source in any NIfTI viewer.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    affine: np.ndarray
    source_affine: np.ndarray


class HasGeometry:
    """``shape``, ``spacing``, ``origin``, ``affine``, ``source_affine``, ``n_slices`` of ``self.geometry``."""

    geometry: CaseGeometry

    shape = property(lambda self: self.geometry.shape)
    spacing = property(lambda self: self.geometry.spacing)
    origin = property(lambda self: self.geometry.origin)
    affine = property(lambda self: self.geometry.affine)
    source_affine = property(lambda self: self.geometry.source_affine)

    @property
    def n_slices(self) -> int:
        return self.geometry.shape[0]


@dataclass(frozen=True, eq=False)
class CaseRecord(HasGeometry):
    """One subject: co-registered channels (model input order) and optional ground truth, on
    one :class:`CaseGeometry`. A channel of a 4D file (MSD / BraTS) is its path plus
    :meth:`channel_index`."""

    id: int
    name: str
    channel_names: tuple[str, ...]
    channel_paths: tuple[Path, ...]
    ground_truth_path: Path | None
    geometry: CaseGeometry
    affine_hash: str
    channel_indices: tuple[int | None, ...] = ()  # per channel: its index in a 4D file (MSD)
    channels_first: bool = False

    def channel_index(self, position: int) -> int | None:
        """Index of channel ``position`` in its 4D file, or None when the file is 3D."""
        return self.channel_indices[position] if self.channel_indices else None


@dataclass(frozen=True, eq=False)
class LabelSnapshot:
    """One immutable label version of a case, as training reads it.

    ``data``: ``(k, j, i)`` class ids, read-only. ``labelled``: bool, same shape, True where
    an annotator (or an accepted pseudo-label) gave the voxel's class; False voxels are
    unlabelled for partial-label training even where ``data`` is 0.
    """

    case: str
    version: int
    data: np.ndarray
    labelled: np.ndarray


@dataclass(frozen=True)
class LabelledItem:
    """What one labelling event delineated: a slice (or the volume) and a class (or all)."""

    slice_index: int | None
    class_id: int | None
    label_version: int
    event_id: int


@dataclass(frozen=True)
class EventRecord:
    """One annotation event. Times are ISO 8601 UTC; ``seconds_active`` in s; boundary in px/mm.

    ``dice_original_final`` compares the model's prediction for the submitted region with
    what was submitted: how much the annotator changed (None without a prediction).
    A tool's event (:data:`~napari_alseg.domain.TOOL_KINDS`) carries ``voxels``, what the tool
    set that the annotator kept, ``clicks``, how many clicks it took (segment with clicks; 0
    for the other tools), and the label version of the submit it went into;
    ``undone_in_version`` is the version that took the event back (None: it stands).
    """

    id: int
    case: str
    slice_index: int | None
    class_id: int | None
    kind: EventKind
    annotator: str
    started_at: str | None
    ended_at: str
    seconds_active: float
    boundary_px: float | None
    boundary_mm: float | None
    label_version: int | None
    original_path: Path | None
    dice_original_final: float | None
    model_version: str | None
    voxels: int | None = None
    undone_in_version: int | None = None
    clicks: int | None = None


@dataclass(frozen=True)
class ToolUse:
    """A tool that set labels for a submit (``kind`` one of :data:`~napari_alseg.domain.TOOL_KINDS`):
    where (``slice_index`` None = across slices), which class, how many voxels it set that
    the annotator kept and how many clicks it took (segment with clicks)."""

    kind: EventKind
    slice_index: int | None
    class_id: int
    voxels: int
    clicks: int = 0


@dataclass(frozen=True)
class WeakAnnotation:
    """Weak supervision (docs/METHODS.md §7.1): class ``class_id`` appears only on slices first..last."""

    id: int
    case: str
    class_id: int
    first_slice: int
    last_slice: int
    annotator: str
    created_at: str


@dataclass(frozen=True)
class ScoredItem:
    """A query item with its score and the named terms behind it (uncertainty, effort, ...)."""

    case: str
    slice_index: int | None
    class_id: int | None
    score: float
    terms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundRecord:
    id: int
    strategy: str
    model_version: str | None
    created_at: str


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    model_version: str
    path: Path
    round_id: int | None
    created_at: str
    metrics: Mapping[str, Any]  # numbers; per-class Dice as lists by class id (metrics.VAL_DICE_PER_CLASS)
