"""Effort accounting: what a submit cost, what was spent, what remains (METHODS E).

The formulas live in :mod:`napari_alseg.effort`; this part applies them to the project's
labels and events. Read-only: safe from any thread.
"""

from __future__ import annotations

import numpy as np

from ..domain import TRACED_KINDS
from ..effort import (BoundaryLength, EffortModel, SecondsModel, boundary_length, changed_boundary_length,
                      roi_trace_length, shared_boundary_length, traced_boundary)
from ..store import Project
from .labels import LabelsView

ALL_CLASSES = "all classes"  # the effort-summary row of whole-slice or whole-case annotations


class EffortAccounting:
    """Boundary length (px, mm) and seconds of one project's annotation."""

    def __init__(self, project: Project, view: LabelsView) -> None:
        self.project = project
        self.view = view

    def boundary_effort(self, case: str, labels: np.ndarray, *, original: np.ndarray | None = None,
                        class_id: int | None = None, slice_index: int | None = None,
                        given: np.ndarray | None = None) -> BoundaryLength:
        """Boundary length (px, mm) of a slice ``(j, i)`` or volume ``(k, j, i)``, summed over slices.

        A correction (``original`` = the prefilled prediction) is charged the boundary it
        changed. A traced ROI (``class_id`` on slice ``slice_index``) is not charged the
        boundary it shares with classes already delineated on that slice: that line exists.
        ``given`` (the region's shape): the class a tool set per voxel (0 elsewhere); its
        outline was not traced, so only what the annotator changed of it counts (a correction:
        the tool's result is part of the prefill).
        """
        labels = np.asarray(labels)
        if given is None or not np.asarray(given).any():
            return self._traced(case, labels, original, class_id, slice_index)
        given = np.asarray(given)
        if original is not None:
            prefill = np.array(original)
            prefill[given > 0] = given[given > 0]
            return self._traced(case, labels, prefill, class_id, slice_index)
        charged = self._traced(case, labels, None, class_id, slice_index)
        spacing = self.view.in_plane_spacing(case)
        planes = (labels[np.newaxis], given[np.newaxis]) if labels.ndim == 2 else (labels, given)
        free_px = free_mm = 0.0
        for plane, given_plane in zip(*planes):
            for c in np.unique(given_plane[given_plane > 0]):
                kept = plane == c
                whole = boundary_length(kept, spacing)
                traced = changed_boundary_length(given_plane == c, kept, spacing)
                # a line shared with what the annotator drew of another class was charged once, there
                drawn = [(plane == d) & (given_plane != d) for d in np.unique(plane) if d not in (0, c)]
                shared = [shared_boundary_length(kept, mask, spacing) for mask in drawn if mask.any()]
                free_px += max(whole.px - traced.px - sum(length.px for length in shared), 0.0)
                free_mm += max(whole.mm - traced.mm - sum(length.mm for length in shared), 0.0)
        return BoundaryLength(max(charged.px - free_px, 0.0), max(charged.mm - free_mm, 0.0))

    def _traced(self, case: str, labels: np.ndarray, original: np.ndarray | None, class_id: int | None,
                slice_index: int | None) -> BoundaryLength:
        spacing = self.view.in_plane_spacing(case)
        if original is None and class_id is not None and slice_index is not None and labels.ndim == 2:
            neighbours = self.view.delineated_classes(case).get(slice_index, set()) - {class_id}
            snapshot = self.project.current_labels(case)
            masks = [snapshot.data[slice_index] == neighbour for neighbour in sorted(neighbours)]
            return roi_trace_length(labels == class_id, masks, spacing)
        classes = [class_id] if class_id is not None else range(1, self.project.n_classes)
        return traced_boundary(labels, classes, spacing, original=original)

    def effort_model(self) -> EffortModel:
        """METHODS E matrix B from every labelled slice (fully labelled slices: all classes)."""
        model = EffortModel(self.project.n_classes)
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            if snapshot is None:
                continue
            spacing = self.view.in_plane_spacing(record.name)
            for n, classes in sorted(self.view.delineated_classes(record.name).items()):
                model.observe(snapshot.data[n], classes, spacing)
        return model

    def seconds_model(self) -> SecondsModel | None:
        """seconds ≈ a + b·boundary px, fitted on the events that have both (None when too few)."""
        timed = [e for e in self.project.events()
                 if e.boundary_px and e.seconds_active > 0 and e.kind in TRACED_KINDS]
        if len(timed) < 2:
            return None
        return SecondsModel.fit([e.class_id if e.class_id is not None else -1 for e in timed],
                                [e.boundary_px for e in timed], [e.seconds_active for e in timed])

    def effort_summary(self) -> dict[str, dict[str, float]]:
        """Per class: effort spent so far (mm, px, s) and estimated remaining boundary (mm).

        Remaining = Σ over unlabelled (slice, class) of METHODS E ``R_nc`` (shared
        boundaries with labelled neighbours are free), from the running matrix B with its
        prior for classes not yet delineated (:data:`~napari_alseg.effort.ESTIMATOR_PRIOR`);
        NaN (unknown, shown blank) while no outline has been delineated at all.
        """
        names = self.project.class_names
        summary = {name: {"spent_mm": 0.0, "spent_px": 0.0, "spent_s": 0.0, "remaining_mm": 0.0}
                   for name in [*names[1:], ALL_CLASSES]}
        for event in self.project.events():
            if event.label_version is None:
                continue
            key = names[event.class_id] if event.class_id is not None else ALL_CLASSES
            summary[key]["spent_mm"] += event.boundary_mm or 0.0
            summary[key]["spent_px"] += event.boundary_px or 0.0
            summary[key]["spent_s"] += event.seconds_active
        model = self.effort_model()
        held_out = self.view.held_out()
        for record in self.project.cases:
            allowed = self.view.allowed_classes(record.name)
            snapshot = self.project.current_labels(record.name)
            for n in range(record.n_slices):
                if (record.name, n) in held_out or (record.name, None) in held_out:
                    continue
                if snapshot is not None and snapshot.labelled[n].all():
                    continue
                delineated = {c for c in range(1, len(names)) if not allowed[n, c]}
                possible = {c for c in range(1, len(names)) if allowed[n, c]}
                remaining = model.remaining_effort(delineated, possible)
                for c in possible:
                    summary[names[c]]["remaining_mm"] += float(remaining[c])
        return summary

    def learning_curve(self) -> list[tuple[str, float, float]]:
        """``(model version, boundary traced so far in mm, validation Dice)`` per checkpoint."""
        events = self.project.events()
        curve = []
        for checkpoint in self.project.checkpoints():
            traced = sum(e.boundary_mm or 0.0 for e in events if e.ended_at <= checkpoint.created_at)
            curve.append((checkpoint.model_version, traced, float(checkpoint.metrics.get("val_dice", np.nan))))
        return curve
