"""Effort accounting: what a submit cost, what was spent, what remains (docs/METHODS.md §7.3, §7.4).

The formulas live in :mod:`napari_alseg.effort`; this part applies them to the project's
labels and events. Read-only (its caches aside: plain dict writes): safe from any thread.
"""

from __future__ import annotations

import numpy as np

from ..domain import CASE, CLICKED, TRACED_KINDS
from ..effort.boundary import (BoundaryLength, boundary_length, changed_boundary_length, roi_trace_length,
                               shared_boundary_length, traced_boundary)
from ..effort.matrix import EffortModel
from ..effort.seconds import SecondsModel
from ..store import EventRecord, Project
from .labels import LabelsView

ALL_CLASSES = "all classes"  # the effort-summary row that sums the class rows
SUMMARY_KEYS = ("spent_mm", "spent_px", "spent_s", "remaining_mm", "remaining_s")


class EffortAccounting:
    """Boundary length (px, mm) and seconds of one project's annotation."""

    def __init__(self, project: Project, view: LabelsView) -> None:
        self.project = project
        self.view = view
        self._shares: dict[int, dict[int, float]] = {}  # event id -> its split between classes
        self._remaining: tuple[tuple, dict] | None = None  # (signature, remaining_by_region)
        self._observed: dict[str, tuple[tuple, EffortModel]] = {}  # case -> (its labels' signature, B part)

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
            masks = [] if snapshot is None else [snapshot.data[slice_index] == neighbour for neighbour in sorted(neighbours)]
            return roi_trace_length(labels == class_id, masks, spacing)
        classes = [class_id] if class_id is not None else range(1, self.project.n_classes)
        return traced_boundary(labels, classes, spacing, original=original)

    def effort_model(self) -> EffortModel:
        """The effort matrix B (docs/METHODS.md §7.4) from every labelled slice (fully labelled
        slices: all classes).

        Each case's part is kept until its label version or delineated classes change, so a
        submit re-measures one case, not the project."""
        model = EffortModel(self.project.n_classes)
        for record in self.project.cases:
            snapshot = self.project.current_labels(record.name)
            if snapshot is None:
                continue
            delineated = self.view.delineated_classes(record.name)
            signature = (snapshot.version, tuple(sorted((n, tuple(sorted(c))) for n, c in delineated.items())))
            cached = self._observed.get(record.name)
            if cached is None or cached[0] != signature:
                part = EffortModel(self.project.n_classes)
                spacing = self.view.in_plane_spacing(record.name)
                for n, classes in sorted(delineated.items()):
                    part.observe(snapshot.data[n], classes, spacing)
                cached = self._observed[record.name] = (signature, part)
            model.merge(cached[1])
        return model

    def seconds_model(self) -> SecondsModel | None:
        """seconds ≈ a + b·boundary px + c·clicks, fitted on the traced submits timed with a
        boundary or clicks (None when fewer than 2). A submit's clicks are those of the
        ``clicked`` tool events on its label version."""
        events = self.project.events()
        clicks = _clicks_by_version(events)
        timed = [e for e in events if e.kind in TRACED_KINDS and e.seconds_active > 0
                 and (e.boundary_px or clicks.get((e.case, e.label_version)))]
        if len(timed) < 2:
            return None
        return SecondsModel.fit([e.class_id if e.class_id is not None else -1 for e in timed],
                                [e.boundary_px or 0.0 for e in timed], [e.seconds_active for e in timed],
                                [clicks.get((e.case, e.label_version), 0) for e in timed])

    def effort_summary(self) -> dict[str, dict[str, float]]:
        """Per class, and their sum: effort spent (mm, px, s) and estimated remaining (mm, s).

        Spent: an ROI event counts for its class; a whole slice or case is split between the
        classes in proportion to each one's traced boundary in what was submitted (equally
        when nothing was traced), so the :data:`ALL_CLASSES` row is the sum of the class rows.
        Remaining = Σ over unlabelled (slice, class) of ``R_nc`` (docs/METHODS.md §7.4) (shared
        boundaries with labelled neighbours are free), from the running matrix B with its
        prior for classes not yet delineated (:data:`~napari_alseg.effort.matrix.ESTIMATOR_PRIOR`);
        NaN (unknown, shown blank) while no outline has been delineated at all. Its seconds
        come from the annotator's own timing (:meth:`seconds_model`; NaN until it is fitted).
        An undone submit still counts as spent: the time went into it.
        """
        names = self.project.class_names
        rows = {names[c]: dict.fromkeys(SUMMARY_KEYS, 0.0) for c in range(1, len(names))}
        for event in self.project.events():
            if event.label_version is None:
                continue
            for c, share in self._class_shares(event).items():
                row = rows[names[c]]
                row["spent_mm"] += share * (event.boundary_mm or 0.0)
                row["spent_px"] += share * (event.boundary_px or 0.0)
                row["spent_s"] += share * event.seconds_active
        for mm, seconds in self.remaining_by_region().values():
            for c in range(1, len(names)):
                rows[names[c]]["remaining_mm"] += float(mm[c])
                rows[names[c]]["remaining_s"] += float(seconds[c])
        rows[ALL_CLASSES] = {key: float(sum(row[key] for row in rows.values())) for key in SUMMARY_KEYS}
        return rows

    def remaining_by_region(self) -> dict[tuple[str, int | None], tuple[np.ndarray, np.ndarray]]:
        """Per region of the project's granularity (``(case, None)`` for case projects, ``(case,
        slice)`` for slice projects) not fully labelled and not held out: the estimated
        remaining boundary per class (C,) in mm and its seconds (C,), NaN while unknown.

        The seconds model is fitted on whole submits, so a region's seconds are predicted from
        its whole remaining boundary (px ≈ mm / mean in-plane spacing) and shared between the
        classes in proportion to their mm. Cached until the next event or weak annotation.
        """
        signature = self._signature()
        if self._remaining is not None and self._remaining[0] == signature:
            return self._remaining[1]
        n_classes = self.project.n_classes
        model = self.effort_model()
        seconds_model = self.seconds_model()
        held_out = self.view.held_out()
        by_slice = self.project.granularity != CASE
        regions: dict[tuple[str, int | None], np.ndarray] = {}
        for record in self.project.cases:
            if (record.name, None) in held_out:
                continue
            allowed = self.view.allowed_classes(record.name)
            snapshot = self.project.current_labels(record.name)
            for n in range(record.n_slices):
                if (record.name, n) in held_out or (snapshot is not None and snapshot.labelled[n].all()):
                    continue
                delineated = {c for c in range(1, n_classes) if not allowed[n, c]}
                possible = {c for c in range(1, n_classes) if allowed[n, c]}
                key = (record.name, n if by_slice else None)
                regions[key] = regions.get(key, np.zeros(n_classes)) + model.remaining_effort(delineated, possible)
        result: dict[tuple[str, int | None], tuple[np.ndarray, np.ndarray]] = {}
        for (case, index), mm in regions.items():
            seconds = np.full(n_classes, np.nan)
            total_mm = float(mm[1:].sum())
            if seconds_model is not None and np.isfinite(total_mm):
                px = total_mm / float(np.mean(self.view.in_plane_spacing(case)))
                total_s = seconds_model.predict(-1, px)
                shares = mm / total_mm if total_mm > 0 else np.zeros(n_classes)
                seconds = shares * total_s if total_s is not None else seconds
            seconds[0] = 0.0
            mm[0] = 0.0
            result[(case, index)] = (mm, seconds)
        self._remaining = (signature, result)
        return result

    def region_remaining(self, case: str, slice_index: int | None) -> tuple[float, float]:
        """A case or slice suggestion's remaining boundary (mm) and seconds (NaN: unknown);
        ``(0, 0)`` for a region already labelled or held out."""
        regions = self.remaining_by_region()
        if self.project.granularity == CASE or slice_index is None:
            parts = [value for (name, _n), value in regions.items() if name == case]
        else:
            parts = [regions[(case, slice_index)]] if (case, slice_index) in regions else []
        if not parts:
            return 0.0, 0.0
        return (float(sum(mm[1:].sum() for mm, _ in parts)), float(sum(s[1:].sum() for _, s in parts)))

    def _class_shares(self, event: EventRecord) -> dict[int, float]:
        """How an event's effort splits between classes (fractions summing to 1)."""
        if event.class_id is not None:
            return {event.class_id: 1.0}
        classes = range(1, self.project.n_classes)
        equal = {c: 1.0 / len(classes) for c in classes}
        if not event.boundary_mm or event.label_version is None:  # nothing traced into a label version
            return equal
        if event.id not in self._shares:
            snapshot = self.project.labels_at(event.case, event.label_version)
            region = snapshot.data if event.slice_index is None else snapshot.data[event.slice_index]
            original = self.project.original_labels(event.id)
            spacing = self.view.in_plane_spacing(event.case)
            lengths = {c: traced_boundary(region, [c], spacing, original=original).mm for c in classes}
            total = sum(lengths.values())
            self._shares[event.id] = {c: length / total for c, length in lengths.items()} if total > 0 else equal
        return self._shares[event.id]

    def _signature(self) -> tuple:
        """What the remaining effort depends on: the events (and undos) and the weak annotations."""
        events = self.project.events()
        weak = sum(len(self.project.weak_annotations(record.name)) for record in self.project.cases)
        last = events[-1].id if events else None
        return len(events), last, sum(1 for e in events if e.undone_in_version is not None), weak

    def learning_curve(self) -> list[tuple[str, float, float]]:
        """``(model version, boundary traced so far in mm, validation Dice)`` per checkpoint."""
        events = self.project.events()
        curve = []
        for checkpoint in self.project.checkpoints():
            traced = sum(e.boundary_mm or 0.0 for e in events if e.ended_at <= checkpoint.created_at)
            curve.append((checkpoint.model_version, traced, float(checkpoint.metrics.get("val_dice", np.nan))))
        return curve


def _clicks_by_version(events: list[EventRecord]) -> dict[tuple[str, int | None], int]:
    """The clicks of segment with clicks per submit ``(case, label version)``."""
    clicks: dict[tuple[str, int | None], int] = {}
    for event in events:
        if event.kind == CLICKED and event.label_version is not None:
            key = (event.case, event.label_version)
            clicks[key] = clicks.get(key, 0) + (event.clicks or 0)
    return clicks
