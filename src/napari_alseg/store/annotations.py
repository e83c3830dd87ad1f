"""Annotation events and the label versions they write: submit, undo, pseudo-labels, weak labels
(reading versions back: :mod:`.label_versions`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..domain import LABELLING_KINDS, PSEUDO_ACCEPTED, PSEUDO_REJECTED, TOOL_KINDS, UNDO, EventKind
from ..errors import AlsegError
from .label_versions import LabelVersionsMixin
from .labels import (array_sha256, check_label_array, merge_region, region_dice, write_label_region,
                     write_label_volume, write_sidecar)
from .records import CaseRecord, EventRecord, ToolUse, WeakAnnotation
from .rows import checked_seconds, inserted_id, iso, now, optional_int


class AnnotationsMixin(LabelVersionsMixin):
    """The annotator's writes (durable before they return) and the label versions they make."""

    def submit(self, case: str, labels: np.ndarray, *, kind: EventKind, slice_index: int | None = None,
               class_id: int | None = None, annotator: str, seconds_active: float,
               started_at: datetime | None = None, original: np.ndarray | None = None,
               boundary_px: float | None = None, boundary_mm: float | None = None,
               model_version: str | None = None, tools: list[ToolUse] | tuple[ToolUse, ...] = ()) -> int:
        """Record submitted labels as a new version; return the event id once durable.

        ``labels`` is the region: ``(k, j, i)`` for the whole case or ``(j, i)`` for slice
        ``slice_index``. With ``class_id`` only that class is taken from it (a single ROI);
        otherwise the region is replaced. ``original`` is the model's prediction for the same
        region, kept beside the result so Dice(original, final) shows how much was changed.
        ``seconds_active`` in s; ``boundary_px``/``boundary_mm`` = traced boundary length.
        ``tools``: what tools set in the region (fill between slices, the model's outline,
        segment with clicks); each becomes an event of its own kind on the same label version,
        in the same transaction, with the voxels it set and its clicks, and no seconds or
        boundary of its own.
        """
        if kind not in LABELLING_KINDS:
            raise AlsegError(f"submit kind must be one of {LABELLING_KINDS}, got {kind!r}")
        for tool in tools:
            if tool.kind not in TOOL_KINDS:
                raise AlsegError(f"a tool's kind must be one of {TOOL_KINDS}, got {tool.kind!r}")
            if int(tool.clicks) < 0:
                raise AlsegError(f"a tool's clicks must be a count >= 0, got {tool.clicks}")
        record = self.case(case)
        shape, what = self._region(record, slice_index, class_id)
        final = check_label_array(labels, shape=shape, n_classes=self.n_classes, what=f"{what} labels")
        prediction = None if original is None else check_label_array(
            original, shape=shape, n_classes=self.n_classes, what=f"{what} original")
        event = self._event_fields(record, kind, slice_index, class_id, annotator, seconds_active,
                                   started_at, boundary_px, boundary_mm, model_version)
        if prediction is not None:
            event["dice_original_final"] = region_dice(prediction, final, class_id, self.n_classes)
        tool_events = []
        for tool in tools:
            self._region(record, tool.slice_index, tool.class_id)
            tool_event = self._event_fields(record, tool.kind, tool.slice_index, tool.class_id, annotator,
                                            0.0, None, None, None, model_version)
            tool_events.append({**tool_event, "voxels": int(tool.voxels), "clicks": int(tool.clicks)})
        with self._write_lock:
            base = self._latest_labels(case)
            base_data = base.data if base is not None else np.zeros(record.shape, self.label_dtype)
            version = base.version + 1 if base is not None else 1
            merged = merge_region(base_data, final, slice_index, class_id)
            return self._commit_event(record, event, prediction, labels=(version, merged), tool_events=tool_events)

    def undo_submit(self, case: str, *, annotator: str) -> int:
        """Take back the case's latest labelling submit that still stands: the label version it
        was based on is written again as a new version (history stays append-only; for the
        case's first submit, empty labels: the case is unlabelled again), the submit and its
        tools' events are marked undone, and an event of kind ``undo`` records it. Returns that
        event's id. One-line AlsegError when nothing submitted stands.
        """
        record = self.case(case)
        with self._write_lock:
            row = self._db.row(
                "SELECT id, slice_index, class_id, label_version FROM events WHERE case_id = ? "
                f"AND label_version IS NOT NULL AND kind IN ({', '.join('?' * len(LABELLING_KINDS))}) "
                "AND undone_in_version IS NULL ORDER BY label_version DESC, id DESC LIMIT 1",
                (record.id, *LABELLING_KINDS))
            if row is None:
                raise AlsegError(f"case {case}: nothing submitted to undo")
            restored = (np.zeros(record.shape, self.label_dtype) if row["label_version"] <= 1
                        else self.labels_at(case, row["label_version"] - 1).data)
            latest = self._latest_labels(case)
            assert latest is not None, "the submit found above wrote a label version"
            event = self._event_fields(record, UNDO, row["slice_index"], row["class_id"], annotator,
                                       0.0, None, None, None, None)
            return self._commit_event(record, event, None, labels=(latest.version + 1, np.array(restored)),
                                      undoes_version=row["label_version"])

    def accept_pseudo(self, case: str, prediction: np.ndarray, *, slice_index: int | None = None,
                      class_id: int | None = None, annotator: str, seconds_active: float = 0.0,
                      started_at: datetime | None = None, model_version: str | None = None) -> int:
        """The annotator accepts a model prediction as labels (pseudo-labels, docs/METHODS.md §6.4)."""
        return self.submit(case, prediction, kind=PSEUDO_ACCEPTED, slice_index=slice_index,
                           class_id=class_id, annotator=annotator, seconds_active=seconds_active,
                           started_at=started_at, model_version=model_version)

    def reject_pseudo(self, case: str, *, slice_index: int | None = None, class_id: int | None = None,
                      annotator: str, seconds_active: float = 0.0, started_at: datetime | None = None,
                      prediction: np.ndarray | None = None, model_version: str | None = None) -> int:
        """Record that a proposed pseudo-label was rejected; labels stay as they were."""
        record = self.case(case)
        shape, what = self._region(record, slice_index, class_id)
        kept = None if prediction is None else check_label_array(
            prediction, shape=shape, n_classes=self.n_classes, what=f"{what} prediction")
        event = self._event_fields(record, PSEUDO_REJECTED, slice_index, class_id, annotator,
                                   seconds_active, started_at, None, None, model_version)
        with self._write_lock:
            return self._commit_event(record, event, kept, labels=None)

    def events(self, case: str | None = None) -> list[EventRecord]:
        """Every annotation event (of one case, or all), oldest first."""
        where, params = ("WHERE case_id = ?", (self.case(case).id,)) if case else ("", ())
        rows = self._db.rows(f"SELECT * FROM events {where} ORDER BY id", params)
        return [self._event_record(row) for row in rows]

    def original_labels(self, event_id: int) -> np.ndarray | None:
        """The model prediction kept with an event (region shape), or None."""
        row = self._db.row("SELECT original_path, slice_index FROM events WHERE id = ?", (event_id,))
        if row is None:
            raise AlsegError(f"{self.folder}: no annotation event {event_id}")
        if row["original_path"] is None:
            return None
        data = self._files.read(self._files.absolute(row["original_path"]), self.label_dtype)
        return data if row["slice_index"] is None else data[0]

    def add_weak_annotation(self, case: str, class_id: int, first_slice: int, last_slice: int, *,
                            annotator: str, seconds_active: float = 0.0) -> int:
        """Weak supervision (docs/METHODS.md §7.1): class ``class_id`` appears only on slices
        first..last (two clicks)."""
        record = self.case(case)
        self._check_class(class_id, f"case {case} weak annotation")
        if not 0 <= first_slice <= last_slice < record.n_slices:
            raise AlsegError(f"case {case} weak annotation: slices {first_slice}..{last_slice} "
                             f"must satisfy 0 <= first <= last < {record.n_slices}")
        with self._write_lock, self._db.transaction() as conn:
            return inserted_id(conn.execute(
                "INSERT INTO weak_annotations (case_id, class_id, first_slice, last_slice, annotator, "
                "seconds_active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, int(class_id), int(first_slice), int(last_slice), annotator,
                 checked_seconds(seconds_active), now())))

    def weak_annotations(self, case: str) -> dict[int, WeakAnnotation]:
        """The latest slice range per class of ``case``."""
        rows = self._db.rows("SELECT * FROM weak_annotations WHERE case_id = ? ORDER BY id",
                             (self.case(case).id,))
        return {row["class_id"]: WeakAnnotation(row["id"], case, row["class_id"], row["first_slice"],
                                                row["last_slice"], row["annotator"], row["created_at"])
                for row in rows}

    def _commit_event(self, record: CaseRecord, event: dict[str, Any], prediction: np.ndarray | None, *,
                      labels: tuple[int, np.ndarray] | None, tool_events: Sequence[dict[str, Any]] = (),
                      undoes_version: int | None = None) -> int:
        """Write files, then commit the rows that point at them; on failure remove the files.

        ``labels``: the new label version's number and volume, or None (the event writes none).
        ``tool_events`` go in on the same label version; ``undoes_version``: the events of that
        version are marked undone by this one.
        """
        written: list[Path] = []
        version = None if labels is None else labels[0]
        digest = None if labels is None else array_sha256(labels[1])
        try:
            with self._db.transaction() as conn:
                if labels is not None:
                    path = self._files.version_path(record.name, labels[0])
                    conn.execute("INSERT INTO label_versions (case_id, version, path, sha256, created_at) "
                                 "VALUES (?, ?, ?, ?, ?)", (record.id, version, self._files.relative(path),
                                                           digest, event["ended_at"]))
                    event["label_version"] = version
                    write_label_volume(path, labels[1], record)
                    written.append(path)
                columns = ", ".join(event)
                event_id = inserted_id(conn.execute(f"INSERT INTO events ({columns}) VALUES "
                                                    f"({', '.join('?' * len(event))})", tuple(event.values())))
                for tool_event in tool_events:
                    tool_event["label_version"] = version
                    conn.execute(f"INSERT INTO events ({', '.join(tool_event)}) VALUES "
                                 f"({', '.join('?' * len(tool_event))})", tuple(tool_event.values()))
                if undoes_version is not None:
                    conn.execute("UPDATE events SET undone_in_version = ? WHERE case_id = ? AND "
                                 "label_version = ? AND undone_in_version IS NULL",
                                 (version, record.id, undoes_version))
                if labels is not None:  # what made this version, for `alseg recover` if the commit is lost
                    sidecar = self._files.sidecar_path(record.name, labels[0])
                    written.append(sidecar)
                    write_sidecar(sidecar, {"case": record.name, "version": version, "sha256": digest,
                                            "event_id": event_id, "event": event, "tools": list(tool_events),
                                            "undoes_version": undoes_version})
                if prediction is not None:
                    path = self._files.original_path(record.name, event_id)
                    write_label_region(path, prediction, record, event["slice_index"])
                    written.append(path)
                    conn.execute("UPDATE events SET original_path = ? WHERE id = ?",
                                 (self._files.relative(path), event_id))
                clears_draft = labels is not None and event["slice_index"] is None and event["class_id"] is None
                if clears_draft:
                    conn.execute("DELETE FROM drafts WHERE case_id = ?", (record.id,))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        if clears_draft:
            self._files.draft_path(record.name).unlink(missing_ok=True)
        if labels is not None:
            self._remember(self._snapshot(record, *labels))
        return event_id

    def _event_fields(self, record: CaseRecord, kind: EventKind, slice_index: int | None,
                      class_id: int | None, annotator: str, seconds_active: float,
                      started_at: datetime | None, boundary_px: float | None,
                      boundary_mm: float | None, model_version: str | None) -> dict:
        if not isinstance(annotator, str) or not annotator.strip():
            raise AlsegError(f"case {record.name}: annotator must be a non-empty name")
        for name, value in (("boundary_px", boundary_px), ("boundary_mm", boundary_mm)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise AlsegError(f"case {record.name}: {name} must be a finite length >= 0, got {value}")
        return {
            "case_id": record.id, "slice_index": optional_int(slice_index),
            "class_id": optional_int(class_id), "kind": kind,
            "annotator": annotator, "started_at": iso(started_at) if started_at else None,
            "ended_at": now(), "seconds_active": checked_seconds(seconds_active),
            "boundary_px": None if boundary_px is None else float(boundary_px),
            "boundary_mm": None if boundary_mm is None else float(boundary_mm),
            "label_version": None, "dice_original_final": None, "model_version": model_version,
        }

    def _region(self, record: CaseRecord, slice_index: int | None,
                class_id: int | None) -> tuple[tuple[int, ...], str]:
        """Expected array shape of a region, and how to name it in messages."""
        what = f"case {record.name}"
        if class_id is not None:
            self._check_class(class_id, what)
            if class_id == 0:
                raise AlsegError(f"{what}: class 0 is background; submit the whole region "
                                 "(class_id=None) to label background")
        if slice_index is None:
            return record.shape, what
        if not isinstance(slice_index, (int, np.integer)) or not 0 <= slice_index < record.n_slices:
            raise AlsegError(f"{what}: slice {slice_index} is out of range (0..{record.n_slices - 1})")
        return record.shape[1:], f"{what} slice {slice_index}"

    def _event_record(self, row: sqlite3.Row) -> EventRecord:
        return EventRecord(
            id=row["id"], case=self._cases_by_id[row["case_id"]].name, slice_index=row["slice_index"],
            class_id=row["class_id"], kind=EventKind(row["kind"]), annotator=row["annotator"],
            started_at=row["started_at"], ended_at=row["ended_at"],
            seconds_active=row["seconds_active"], boundary_px=row["boundary_px"],
            boundary_mm=row["boundary_mm"], label_version=row["label_version"],
            original_path=self._files.absolute(row["original_path"]) if row["original_path"] else None,
            dice_original_final=row["dice_original_final"], model_version=row["model_version"],
            voxels=row["voxels"], undone_in_version=row["undone_in_version"], clicks=row["clicks"])
