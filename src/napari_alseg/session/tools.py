"""The tools that cut tracing: fill between slices, accept the model's outline (issue 14),
segment with clicks (:mod:`napari_alseg.clicks`).

A tool changes the labels being edited and returns what it set as a :class:`ToolEdit`; the
labels go back on screen for the annotator to check and fix, and the edits go with the
submit. There each becomes an event of its own kind (:data:`~napari_alseg.domain.TOOL_KINDS`)
with the voxels it set that the annotator kept, and its outline is not charged as traced
boundary (:meth:`EffortAccounting.boundary_effort` ``given``). Pure numpy: no project state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..clicks import ClickSegmentation
from ..domain import CLICKED, INTERPOLATED, OUTLINE_ACCEPTED, EventKind
from ..errors import AlsegError
from ..interpolation import fill_between_slices
from ..store import ToolUse


@dataclass(frozen=True, eq=False)
class ToolEdit:
    """What one use of a tool set: ``mask`` (bool, the case's shape ``(k, j, i)``) of voxels
    it changed to ``class_id``; ``slice_index`` None when it spans slices (fill between);
    ``clicks`` the clicks it took (segment with clicks; 0 for the other tools)."""

    kind: EventKind
    class_id: int
    slice_index: int | None
    mask: np.ndarray
    clicks: int = 0

    @property
    def voxels(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True, eq=False)
class ToolResult:
    """The labels after the tool (a new array, the case's shape) and what the tool set."""

    labels: np.ndarray
    edit: ToolEdit


def fill_between(labels: np.ndarray, class_id: int, first: int, last: int) -> ToolResult:
    """Class ``class_id`` interpolated between its outlines on slices ``first`` and ``last``
    (shape-based, :func:`~napari_alseg.interpolation.fill_between_slices`), only where the
    slices between are background; ``labels`` ``(k, j, i)`` itself is not changed."""
    labels = np.asarray(labels)
    filled = fill_between_slices(labels, class_id, first, last)
    mask = filled != labels
    if not mask.any():
        raise AlsegError(f"fill between slices {first} and {last}: nothing to fill (the slices between "
                         f"already hold class {class_id} or other classes where it would go)")
    return ToolResult(filled, ToolEdit(INTERPOLATED, int(class_id), None, mask))


def accept_outline(labels: np.ndarray, prediction: np.ndarray, slice_index: int, class_id: int) -> ToolResult:
    """The prediction's mask of ``class_id`` on slice ``slice_index`` (``prediction`` ``(j, i)``)
    copied into ``labels`` ``(k, j, i)`` where that slice is background; one click."""
    labels = np.asarray(labels)
    prediction = np.asarray(prediction)
    if labels.ndim != 3 or not 0 <= slice_index < labels.shape[0]:
        raise AlsegError(f"slice {slice_index} is not a slice of labels of shape {labels.shape}")
    if prediction.shape != labels.shape[1:]:
        raise AlsegError(f"the prediction of slice {slice_index} has shape {prediction.shape}, "
                         f"the slice {labels.shape[1:]}")
    plane = labels[slice_index]
    added = (prediction == class_id) & (plane == 0)
    if not added.any():
        raise AlsegError(f"the model predicts no class {class_id} on slice {slice_index} where it is "
                         "still background: nothing to accept")
    result = labels.copy()
    result[slice_index][added] = class_id
    mask = np.zeros(labels.shape, bool)
    mask[slice_index] = added
    return ToolResult(result, ToolEdit(OUTLINE_ACCEPTED, int(class_id), int(slice_index), mask))


def click_edit(segmentation: ClickSegmentation, class_id: int, slice_index: int | None,
               n_clicks: int) -> ToolResult:
    """Segment with clicks as a tool use: what the clicks added to ``class_id`` (its voxels
    taken out are not a tool's labels) and how many clicks it took."""
    edit = ToolEdit(CLICKED, int(class_id), None if slice_index is None else int(slice_index),
                    segmentation.added, clicks=int(n_clicks))
    return ToolResult(segmentation.labels, edit)


def given_labels(edits: list[ToolEdit] | tuple[ToolEdit, ...], final: np.ndarray,
                 slice_index: int | None) -> np.ndarray:
    """Per voxel of the submitted region ``final`` (``(k, j, i)``, or ``(j, i)`` of slice
    ``slice_index``), the class a tool set there (0 elsewhere): what the annotator started
    from, so a cut into it or a part erased is traced and the rest is not."""
    final = np.asarray(final)
    given = np.zeros(final.shape, final.dtype)
    for edit in edits:
        given[edit.mask if slice_index is None else edit.mask[slice_index]] = edit.class_id
    return given


def tool_uses(edits: list[ToolEdit] | tuple[ToolEdit, ...], final: np.ndarray,
              slice_index: int | None) -> list[ToolUse]:
    """The store's record of each edit: the voxels of the region it set that ``final`` keeps,
    and its clicks. Edits outside a submitted slice are left out, and so are edits wholly undone
    by the annotator, unless they took clicks: those were effort, recorded with 0 voxels."""
    final = np.asarray(final)
    uses = []
    for edit in edits:
        if slice_index is not None and edit.slice_index not in (None, slice_index):
            continue
        mask = edit.mask if slice_index is None else edit.mask[slice_index]
        kept = int((mask & (final == edit.class_id)).sum())
        if kept or edit.clicks:
            uses.append(ToolUse(edit.kind, edit.slice_index if slice_index is None else slice_index,
                                edit.class_id, kept, edit.clicks))
    return uses
