"""The project's fixed records: classes, cases, settings, the validation split."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AlsegError
from ..nifti import Volume, load_volume
from .ingest import affine_hash
from .records import CaseGeometry, CaseRecord, ClassInfo
from .rows import stored_json
from .state import MODELS_DIR, ProjectState

log = logging.getLogger(__name__)


class CasesMixin(ProjectState):
    """Classes, cases and their volumes, project settings, the held-out items."""

    def update_class(self, class_id: int, *, name: str | None = None,
                     color: tuple[int, int, int] | None = None) -> ClassInfo:
        """Rename or recolour a class (display only: class ids and labels are unchanged)."""
        self._check_class(class_id, "class")
        current = self.classes[class_id]
        name = current.name if name is None else name.strip()
        if not name:
            raise AlsegError("a class name cannot be empty")
        if name != current.name and name in self.class_names:
            raise AlsegError(f"class name {name!r} is already used by another class")
        if color is not None and (len(color) != 3 or not all(0 <= int(c) <= 255 for c in color)):
            raise AlsegError(f"a class colour is three values 0-255, got {color}")
        color = current.color if color is None else (int(color[0]), int(color[1]), int(color[2]))
        with self._write_lock, self._db.transaction() as conn:
            conn.execute("UPDATE classes SET name = ?, color = ? WHERE id = ?",
                         (name, json.dumps(list(color)) if color else None, class_id))
        updated = ClassInfo(class_id, name, color)
        self.classes = tuple(updated if info.id == class_id else info for info in self.classes)
        return updated

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def models_dir(self) -> Path:
        """Where training should put checkpoints (recorded with :meth:`record_checkpoint`)."""
        return self.folder / MODELS_DIR

    def setting(self, key: str) -> str | None:
        """A project-wide value kept in the ``meta`` table (e.g. the training plan), or None."""
        if key in self._unsaved_settings:
            return self._unsaved_settings[key]
        rows = self._db.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def store_setting(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` (replacing an older one), durably.

        In a read-only project a setting (the engine, the training plan) is a preference, not
        work: it holds for this opening only, and a warning line says it is not kept."""
        if self.read_only is not None:
            if self.setting(key) != value:
                log.warning("%s: setting %r holds until the project is closed, not kept: the project is "
                            "read-only (%s)", self.folder, key, self.read_only)
            self._unsaved_settings[key] = value
            return
        with self._write_lock, self._db.transaction("saving a project setting") as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    @property
    def cases(self) -> tuple[CaseRecord, ...]:
        return tuple(self._cases.values())

    def case(self, name: str) -> CaseRecord:
        try:
            return self._cases[name]
        except KeyError:
            raise AlsegError(f"{self.folder}: no case named {name!r}") from None

    def load_channels(self, case: str) -> list[Volume]:
        """The case's channel volumes in model input order, checked against the stored grid."""
        record = self.case(case)
        return [self._load_on_grid(path, record, as_label=False, channel=record.channel_index(position))
                for position, path in enumerate(record.channel_paths)]

    def ground_truth(self, case: str) -> np.ndarray | None:
        """The source's ground-truth labels (for the simulated oracle), or None."""
        record = self.case(case)
        if record.ground_truth_path is None:
            return None
        data = self._load_on_grid(record.ground_truth_path, record, as_label=True).data
        return data.astype(self.label_dtype, copy=False)

    def validation_items(self) -> list[tuple[str, int | None]]:
        """The held-out ``(case, slice)`` items fixed at creation; slice None = whole case."""
        rows = self._db.rows("SELECT case_id, slice_index FROM validation_items "
                             "ORDER BY case_id, slice_index")
        return [(self._cases_by_id[r["case_id"]].name, r["slice_index"]) for r in rows]

    def _check_class(self, class_id: int, what: str) -> None:
        if not isinstance(class_id, (int, np.integer)) or not 0 <= class_id < self.n_classes:
            raise AlsegError(f"{what}: class id {class_id} is out of range; this project has "
                             f"{self.n_classes} classes (0..{self.n_classes - 1})")

    def _load_on_grid(self, path: Path, record: CaseRecord, *, as_label: bool,
                      channel: int | None = None) -> Volume:
        volume = load_volume(path, as_label=as_label, channel=channel,
                             channels_first=record.channels_first and channel is not None)
        if volume.shape != record.shape or affine_hash(volume.affine) != record.affine_hash:
            raise AlsegError(f"{path}: shape or affine changed since the project was created "
                             f"(now {volume.shape}, recorded {record.shape})")
        return volume

    def _case_record(self, row: sqlite3.Row) -> CaseRecord:
        def source_path(stored: str) -> Path:
            return self.source_dir / stored  # an absolute stored path stays absolute

        def stored(column: str, expect: type = list) -> Any:
            return stored_json(row, column, "cases", expect)

        return CaseRecord(
            id=row["id"], name=row["name"], channel_names=tuple(stored("channel_names")),
            channel_paths=tuple(source_path(p) for p in stored("channel_paths")),
            ground_truth_path=source_path(row["ground_truth_path"]) if row["ground_truth_path"] else None,
            geometry=CaseGeometry(shape=tuple(stored("shape")), spacing=tuple(stored("spacing")),
                                  origin=tuple(stored("origin")), affine=np.array(stored("affine")),
                                  source_affine=np.array(stored("source_affine"))),
            affine_hash=row["affine_hash"],
            channel_indices=tuple(stored("channel_indices")) if row["channel_indices"] else (),
            channels_first=bool(row["channels_first"]))
