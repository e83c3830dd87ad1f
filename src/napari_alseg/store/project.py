"""The annotation project: one folder, one SQLite database, append-only label versions.

Clinicians' annotation time is the scarcest resource, so every verb here is durable
before it returns: a submit writes a new label file (temp, fsync, rename) and only then
commits the row that records it (``synchronous=FULL``). A kill at any point leaves either
the old state or the new one; unfinished files are swept on the next :meth:`Project.open`.

Arrays are ``(k, j, i)`` (slice axis first) as in :mod:`napari_alseg.nifti`.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..errors import AlsegError, DamagedProjectError, StorageError
from ..nifti import Volume, load_volume
from . import export as export_module
from .database import Database, connect, damaged_message, database_error
from .ingest import ProjectPlan, affine_hash, plan_project
from .labels import (LabelFiles, array_sha256, check_label_array, label_dtype, labelled_mask,
                     merge_region, region_dice, remove_file, remove_temp_files, write_label_region,
                     write_label_volume)
from .lock import ProjectLock
from .records import (LABELLING_KINDS, PSEUDO_ACCEPTED, PSEUDO_REJECTED,
                      CaseRecord, CheckpointRecord, ClassInfo, EventRecord, LabelledItem,
                      LabelSnapshot, RoundRecord, ScoredItem, WeakAnnotation)
from .schema import migrate

if TYPE_CHECKING:
    from ..strategies import QueryItem

DB_NAME = "project.sqlite"
MODELS_DIR = "models"
_CHECKPOINT_NAME = re.compile(r"^v\d{4,}\.pt$")  # what Session.retrain writes
SKIPPED_KEY = "skipped_cases"  # meta: [[case, reason], ...] left out at creation
_SNAPSHOT_CACHE_SIZE = 4  # label versions kept in memory (a slice submit merges into the last)


class Project:
    """An open project; holds the folder's lock until :meth:`close`. Use as a context manager.

    Thread use: the annotator's thread writes; any other thread (training) may read
    (:meth:`current_labels`, :meth:`labels_at`, records) concurrently. Writes are serialised.
    """

    def __init__(self, folder: Path, lock: ProjectLock) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.folder = folder
        self._lock = lock
        self._db = Database(folder / DB_NAME)
        self._files = LabelFiles(folder)
        self._write_lock = threading.RLock()
        self._cache_lock = threading.Lock()
        self._snapshots: OrderedDict[tuple[str, int], LabelSnapshot] = OrderedDict()
        try:
            self._load_fixed_records()
        except (KeyError, TypeError, ValueError) as exc:  # valid SQLite, unreadable records
            self._db.close()
            raise DamagedProjectError(damaged_message(
                self._db.path, f"a stored record cannot be read: {type(exc).__name__}: {exc}")) from None
        except BaseException:
            self._db.close()
            raise

    def _load_fixed_records(self) -> None:
        """Classes, cases and settings: written once at creation, so read once here."""
        meta = {row["key"]: row["value"] for row in self._db.rows("SELECT key, value FROM meta")}
        self.source_dir = Path(meta["source_dir"])
        self.granularity = meta["granularity"]
        self.dataset_name = meta["dataset_name"]
        self.skipped_cases: tuple[tuple[str, str], ...] = tuple(
            (str(name), str(reason)) for name, reason in json.loads(meta.get(SKIPPED_KEY, "[]")))
        self.classes = tuple(
            ClassInfo(row["id"], row["name"], tuple(json.loads(row["color"])) if row["color"] else None)
            for row in self._db.rows("SELECT * FROM classes ORDER BY id"))
        self.label_dtype = label_dtype(len(self.classes))
        self._cases = {record.name: record for record in
                       (self._case_record(row) for row in self._db.rows("SELECT * FROM cases ORDER BY name"))}
        self._cases_by_id = {record.id: record for record in self._cases.values()}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, folder: str | os.PathLike, source_dir: str | os.PathLike, *,
               class_names: Sequence[str] | None = None, annotator: str | None = None,
               granularity: str | None = None, validation_fraction: float = 0.2,
               seed: int = 0, skip_bad_cases: bool = False,
               before_writing: Callable[[ProjectPlan], None] | None = None) -> Project:
        """Make a project in ``folder`` from the NIfTI cases in ``source_dir`` and open it.

        Every source file is read and checked before anything is written. ``class_names``
        (index = class id) overrides ``classes.json``; ``granularity`` (``"case"`` or
        ``"slice"``) overrides ``dataset.json`` and decides what the validation split holds
        out: whole cases, or slices. The split is drawn once with ``seed`` and never again.
        A case that cannot be used stops creation with every such case named, unless
        ``skip_bad_cases``: then they are left out and listed in :attr:`skipped_cases`.
        ``before_writing(plan)`` sees the checked cases and classes first; raising refuses them
        with nothing written (an initial model that does not fit, say).
        """
        folder = Path(folder).absolute()
        if (folder / DB_NAME).exists():
            raise AlsegError(f"{folder}: already holds a project ({DB_NAME}); open it instead "
                             "or choose another folder")
        plan = plan_project(Path(source_dir).absolute(), class_names=class_names,
                            granularity=granularity, validation_fraction=validation_fraction,
                            seed=seed, skip_bad_cases=skip_bad_cases)
        if before_writing is not None:
            before_writing(plan)
        made_folder = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AlsegError(f"{folder}: cannot create the project folder ({exc.strerror})") from None
        lock = None
        try:
            lock = ProjectLock.acquire(folder)
            if (folder / DB_NAME).exists():  # made by another process meanwhile
                raise AlsegError(f"{folder}: already holds a project ({DB_NAME})")
            _write_new_database(folder, plan, annotator or _default_annotator(), seed)
            lock.guard(folder / DB_NAME)
            return cls(folder, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            if made_folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Project:
        """Reopen a project exactly as it was left, sweeping files of interrupted submits."""
        folder = Path(folder).absolute()
        if not (folder / DB_NAME).is_file():
            raise AlsegError(f"{folder}: not a project folder (no {DB_NAME})")
        lock = ProjectLock.acquire(folder, database=folder / DB_NAME)
        try:
            project = cls(folder, lock)
        except BaseException:
            lock.release()
            raise
        try:
            project._files.remove_debris(project._referenced_files())
            remove_temp_files(project.models_dir)
            project._remove_unrecorded_checkpoints()
        except BaseException:
            project.close()
            raise
        return project

    def close(self) -> None:
        """Close the database and free the folder for another process. Idempotent."""
        with self._write_lock:
            self._db.close()
            self._lock.release()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ cases

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
        color = current.color if color is None else tuple(int(c) for c in color)
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
        rows = self._db.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def store_setting(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` (replacing an older one), durably."""
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

    def validation_cases(self) -> list[str]:
        """Names of the cases held out whole for validation (empty for slice granularity)."""
        return sorted({case for case, slice_index in self.validation_items() if slice_index is None})

    # ------------------------------------------------------------------ labels

    def current_labels(self, case: str) -> LabelSnapshot | None:
        """The latest submitted label version (None if never labelled); what training reads."""
        row = self._db.row("SELECT MAX(version) AS v FROM label_versions WHERE case_id = ?",
                           (self.case(case).id,))
        return None if row["v"] is None else self.labels_at(case, row["v"])

    def labels_at(self, case: str, version: int) -> LabelSnapshot:
        """Label version ``version`` of ``case``, checked against its recorded checksum."""
        record = self.case(case)
        key = (record.name, version)
        with self._cache_lock:
            if key in self._snapshots:
                self._snapshots.move_to_end(key)
                return self._snapshots[key]
        row = self._db.row("SELECT path, sha256 FROM label_versions WHERE case_id = ? AND version = ?",
                           (record.id, version))
        if row is None:
            raise AlsegError(f"{self.folder}: case {case!r} has no label version {version}")
        path = self._files.absolute(row["path"])
        data = self._files.read(path, self.label_dtype)
        if array_sha256(data) != row["sha256"]:
            raise AlsegError(f"{path}: contents differ from the checksum recorded at submit; "
                             "the file was changed or damaged outside napari-alseg")
        return self._remember(self._snapshot(record, version, data))

    def labelled_items(self, case: str, *, up_to_version: int | None = None) -> list[LabelledItem]:
        """What each labelling event delineated, oldest first (all versions when None)."""
        rows = self._db.rows(
            "SELECT id, slice_index, class_id, label_version FROM events WHERE case_id = ? "
            "AND label_version IS NOT NULL AND (? IS NULL OR label_version <= ?) ORDER BY label_version",
            (self.case(case).id, up_to_version, up_to_version))
        return [LabelledItem(r["slice_index"], r["class_id"], r["label_version"], r["id"]) for r in rows]

    def submit(self, case: str, labels: np.ndarray, *, kind: str, slice_index: int | None = None,
               class_id: int | None = None, annotator: str, seconds_active: float,
               started_at: datetime | None = None, original: np.ndarray | None = None,
               boundary_px: float | None = None, boundary_mm: float | None = None,
               model_version: str | None = None) -> int:
        """Record submitted labels as a new version; return the event id once durable.

        ``labels`` is the region: ``(k, j, i)`` for the whole case or ``(j, i)`` for slice
        ``slice_index``. With ``class_id`` only that class is taken from it (a single ROI);
        otherwise the region is replaced. ``original`` is the model's prediction for the same
        region, kept beside the result so Dice(original, final) shows how much was changed.
        ``seconds_active`` in s; ``boundary_px``/``boundary_mm`` = traced boundary length.
        """
        if kind not in LABELLING_KINDS:
            raise AlsegError(f"submit kind must be one of {LABELLING_KINDS}, got {kind!r}")
        record = self.case(case)
        shape, what = self._region(record, slice_index, class_id)
        final = check_label_array(labels, shape=shape, n_classes=self.n_classes, what=f"{what} labels")
        prediction = None if original is None else check_label_array(
            original, shape=shape, n_classes=self.n_classes, what=f"{what} original")
        event = self._event_fields(record, kind, slice_index, class_id, annotator, seconds_active,
                                   started_at, boundary_px, boundary_mm, model_version)
        if prediction is not None:
            event["dice_original_final"] = region_dice(prediction, final, class_id, self.n_classes)
        with self._write_lock:
            base = self.current_labels(case)
            base_data = base.data if base is not None else np.zeros(record.shape, self.label_dtype)
            version = base.version + 1 if base is not None else 1
            merged = merge_region(base_data, final, slice_index, class_id)
            return self._commit_event(record, event, prediction, version=version, merged=merged)

    def accept_pseudo(self, case: str, prediction: np.ndarray, *, slice_index: int | None = None,
                      class_id: int | None = None, annotator: str, seconds_active: float = 0.0,
                      started_at: datetime | None = None, model_version: str | None = None) -> int:
        """The annotator accepts a model prediction as labels (METHODS A pseudo-labels)."""
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
            return self._commit_event(record, event, kept, version=None, merged=None)

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

    # ------------------------------------------------------------------ drafts

    def save_draft(self, case: str, labels: np.ndarray) -> None:
        """Autosave unsubmitted strokes (whole ``(k, j, i)`` volume); replaced atomically.

        A submit of the whole volume clears the draft; a slice or single-class submit keeps
        it, since it may hold strokes on other slices that are not submitted yet.
        """
        record = self.case(case)
        data = check_label_array(labels, shape=record.shape, n_classes=self.n_classes,
                                 what=f"case {case} draft")
        with self._write_lock:
            base = self.current_labels(case)
            path = self._files.draft_path(record.name)
            write_label_volume(path, data, record, overwrite=True)
            with self._db.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO drafts (case_id, path, base_version, saved_at) "
                             "VALUES (?, ?, ?, ?)", (record.id, self._files.relative(path),
                                                     base.version if base else None, _now()))

    def load_draft(self, case: str) -> np.ndarray | None:
        """The last autosaved draft not yet cleared by a whole-volume submit, or None."""
        row = self._db.row("SELECT path FROM drafts WHERE case_id = ?", (self.case(case).id,))
        if row is None:
            return None
        return self._files.read(self._files.absolute(row["path"]), self.label_dtype)

    # ------------------------------------------------------------------ weak labels, rounds, models

    def add_weak_annotation(self, case: str, class_id: int, first_slice: int, last_slice: int, *,
                            annotator: str, seconds_active: float = 0.0) -> int:
        """METHODS E: class ``class_id`` appears only on slices first..last (two clicks)."""
        record = self.case(case)
        self._check_class(class_id, f"case {case} weak annotation")
        if not 0 <= first_slice <= last_slice < record.n_slices:
            raise AlsegError(f"case {case} weak annotation: slices {first_slice}..{last_slice} "
                             f"must satisfy 0 <= first <= last < {record.n_slices}")
        with self._write_lock, self._db.transaction() as conn:
            return conn.execute(
                "INSERT INTO weak_annotations (case_id, class_id, first_slice, last_slice, annotator, "
                "seconds_active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, int(class_id), int(first_slice), int(last_slice), annotator,
                 _check_seconds(seconds_active), _now())).lastrowid

    def weak_annotations(self, case: str) -> dict[int, WeakAnnotation]:
        """The latest slice range per class of ``case``."""
        rows = self._db.rows("SELECT * FROM weak_annotations WHERE case_id = ? ORDER BY id",
                             (self.case(case).id,))
        return {row["class_id"]: WeakAnnotation(row["id"], case, row["class_id"], row["first_slice"],
                                                row["last_slice"], row["annotator"], row["created_at"])
                for row in rows}

    def record_round(self, strategy: str, suggestions: Sequence[ScoredItem], *,
                     model_version: str | None = None) -> int:
        """Record an active-learning round: the strategy and the ranked items it served."""
        rows = [self._item_row(item) for item in suggestions]
        with self._write_lock, self._db.transaction() as conn:
            round_id = conn.execute("INSERT INTO rounds (strategy, model_version, created_at) "
                                    "VALUES (?, ?, ?)", (strategy, model_version, _now())).lastrowid
            conn.executemany(
                "INSERT INTO round_suggestions (round_id, rank, case_id, slice_index, class_id, "
                "score, terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(round_id, rank, *row) for rank, row in enumerate(rows)])
        return round_id

    def rounds(self) -> list[RoundRecord]:
        return [RoundRecord(r["id"], r["strategy"], r["model_version"], r["created_at"])
                for r in self._db.rows("SELECT * FROM rounds ORDER BY id")]

    def round_suggestions(self, round_id: int) -> list[ScoredItem]:
        """The items a round served, in the order served."""
        rows = self._db.rows("SELECT * FROM round_suggestions WHERE round_id = ? ORDER BY rank",
                             (round_id,))
        return [self._scored_item(row) for row in rows]

    def record_checkpoint(self, model_version: str, path: str | os.PathLike, *,
                          round_id: int | None = None,
                          metrics: Mapping[str, float] | None = None) -> int:
        """Record a saved model checkpoint (the file must already exist)."""
        path = Path(path).absolute()
        if not path.is_file():
            raise AlsegError(f"{path}: checkpoint file not found; save it before recording it")
        stored = self._files.relative(path) if path.is_relative_to(self.folder) else str(path)
        with self._write_lock, self._db.transaction("recording a checkpoint") as conn:
            if conn.execute("SELECT 1 FROM checkpoints WHERE model_version = ?", (model_version,)).fetchone():
                raise AlsegError(f"{self.folder}: model version {model_version!r} is already "
                                 "recorded; give each checkpoint a new version")
            return conn.execute(
                "INSERT INTO checkpoints (model_version, path, round_id, created_at, metrics) "
                "VALUES (?, ?, ?, ?, ?)", (model_version, stored, round_id, _now(),
                                           json.dumps(dict(metrics or {}), default=float))).lastrowid

    def checkpoints(self) -> list[CheckpointRecord]:
        """Recorded checkpoints, oldest first (the last one is the current model)."""
        return [CheckpointRecord(r["id"], r["model_version"], self.folder / r["path"], r["round_id"],
                                 r["created_at"], json.loads(r["metrics"]))
                for r in self._db.rows("SELECT * FROM checkpoints ORDER BY id")]

    def store_scores(self, model_version: str, items: Iterable[ScoredItem]) -> int:
        """Store per-item scores of one model version (re-storing an item replaces it)."""
        rows = [(model_version, *self._item_row(item), _now()) for item in items]
        with self._write_lock, self._db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO scores (model_version, case_id, slice_index, class_id, "
                "score, terms, scored_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def has_scores(self, model_version: str) -> bool:
        """Whether ``model_version`` was scored already (score once per model version)."""
        return self._db.row("SELECT 1 FROM scores WHERE model_version = ? LIMIT 1",
                            (model_version,)) is not None

    def latest_scores(self, model_version: str | None = None) -> list[ScoredItem]:
        """Stored scores, best first, of ``model_version`` or of the last version scored."""
        if model_version is None:
            row = self._db.row("SELECT model_version FROM scores ORDER BY rowid DESC LIMIT 1")
            if row is None:
                return []
            model_version = row["model_version"]
        rows = self._db.rows("SELECT * FROM scores WHERE model_version = ? "
                             "ORDER BY score DESC, case_id, slice_index, class_id", (model_version,))
        return [self._scored_item(row) for row in rows]

    # ------------------------------------------------------------------ quality examples

    def store_quality_examples(self, examples: Iterable[tuple[QueryItem, np.ndarray, float]], *,
                               model_version: str | None) -> None:
        """Keep ``(item, quality features, true Dice)``; a newer example of an item replaces the older."""
        rows = [(self.case(item.case).id, _optional_int(item.slice_index), _optional_int(item.class_id),
                 model_version, json.dumps([float(v) for v in np.asarray(features).ravel()]), float(dice), _now())
                for item, features, dice in examples]
        with self._write_lock, self._db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO quality_examples (case_id, slice_index, class_id, model_version, "
                "features, dice, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def quality_examples(self) -> list[tuple[str, int | None, int | None, np.ndarray, float]]:
        """``(case, slice, class, features, Dice)`` of every stored example, oldest first."""
        rows = self._db.rows("SELECT * FROM quality_examples ORDER BY rowid")
        return [(self._cases_by_id[r["case_id"]].name, r["slice_index"], r["class_id"],
                 np.array(json.loads(r["features"]), dtype=float), float(r["dice"])) for r in rows]

    # ------------------------------------------------------------------ checks

    def check(self) -> list[str]:
        """Every problem a full check finds (``alseg status --check``); [] when all is sound.

        SQLite's full ``integrity_check``; every stored text decodes and every JSON column
        parses; every label version's file exists and matches the checksum recorded at
        submit; every recorded checkpoint file exists. Reads only; changes nothing.
        """
        problems = [f"{DB_NAME}: {line}" for line in self._db.problems(full=True)]
        for table, columns in _JSON_COLUMNS.items():
            problems += self._unreadable_rows(table, columns)
        for case in self.cases:
            rows = self._db.rows("SELECT version FROM label_versions WHERE case_id = ? ORDER BY version",
                                 (case.id,))
            for row in rows:
                try:
                    self.labels_at(case.name, row["version"])
                except AlsegError as exc:
                    problems.append(f"case {case.name} label version {row['version']}: {exc}")
        for checkpoint in self.checkpoints():
            if not checkpoint.path.is_file():
                problems.append(f"model {checkpoint.model_version}: checkpoint {checkpoint.path} is missing")
        return problems

    def _unreadable_rows(self, table: str, json_columns: tuple[str, ...]) -> list[str]:
        problems = []
        try:
            rowids = [row[0] for row in self._db.rows(f"SELECT rowid FROM {table}")]
        except AlsegError as exc:
            return [f"{DB_NAME}: table {table} cannot be read ({exc})"]
        for rowid in rowids:
            try:
                row = self._db.row(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,))
                for column in json_columns:
                    if row[column] is not None:
                        json.loads(row[column])
            except AlsegError:
                problems.append(f"{DB_NAME}: table {table} row {rowid} holds text that is not UTF-8")
            except ValueError as exc:
                problems.append(f"{DB_NAME}: table {table} row {rowid} holds unreadable JSON ({exc})")
        return problems

    # ------------------------------------------------------------------ export

    def export(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write every case's current labels (source affine) and provenance CSV + JSON."""
        return export_module.export_project(self, Path(out_dir))

    # ------------------------------------------------------------------ internals

    def _commit_event(self, record: CaseRecord, event: dict, prediction: np.ndarray | None, *,
                      version: int | None, merged: np.ndarray | None) -> int:
        """Write files, then commit the rows that point at them; on failure remove the files."""
        written: list[Path] = []
        try:
            with self._db.transaction() as conn:
                if merged is not None:
                    path = self._files.version_path(record.name, version)
                    conn.execute("INSERT INTO label_versions (case_id, version, path, sha256, created_at) "
                                 "VALUES (?, ?, ?, ?, ?)", (record.id, version, self._files.relative(path),
                                                           array_sha256(merged), event["ended_at"]))
                    event["label_version"] = version
                    write_label_volume(path, merged, record)
                    written.append(path)
                columns = ", ".join(event)
                event_id = conn.execute(f"INSERT INTO events ({columns}) VALUES "
                                        f"({', '.join('?' * len(event))})", tuple(event.values())).lastrowid
                if prediction is not None:
                    path = self._files.original_path(record.name, event_id)
                    write_label_region(path, prediction, record, event["slice_index"])
                    written.append(path)
                    conn.execute("UPDATE events SET original_path = ? WHERE id = ?",
                                 (self._files.relative(path), event_id))
                clears_draft = merged is not None and event["slice_index"] is None and event["class_id"] is None
                if clears_draft:
                    conn.execute("DELETE FROM drafts WHERE case_id = ?", (record.id,))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        if clears_draft:
            self._files.draft_path(record.name).unlink(missing_ok=True)
        if merged is not None:
            self._remember(self._snapshot(record, version, merged))
        return event_id

    def _event_fields(self, record: CaseRecord, kind: str, slice_index: int | None,
                      class_id: int | None, annotator: str, seconds_active: float,
                      started_at: datetime | None, boundary_px: float | None,
                      boundary_mm: float | None, model_version: str | None) -> dict:
        if not isinstance(annotator, str) or not annotator.strip():
            raise AlsegError(f"case {record.name}: annotator must be a non-empty name")
        for name, value in (("boundary_px", boundary_px), ("boundary_mm", boundary_mm)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise AlsegError(f"case {record.name}: {name} must be a finite length >= 0, got {value}")
        return {
            "case_id": record.id, "slice_index": _optional_int(slice_index),
            "class_id": _optional_int(class_id), "kind": kind,
            "annotator": annotator, "started_at": _iso(started_at) if started_at else None,
            "ended_at": _now(), "seconds_active": _check_seconds(seconds_active),
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

    def _check_class(self, class_id: int, what: str) -> None:
        if not isinstance(class_id, (int, np.integer)) or not 0 <= class_id < self.n_classes:
            raise AlsegError(f"{what}: class id {class_id} is out of range; this project has "
                             f"{self.n_classes} classes (0..{self.n_classes - 1})")

    def _snapshot(self, record: CaseRecord, version: int, data: np.ndarray) -> LabelSnapshot:
        data = np.asarray(data, dtype=self.label_dtype)  # our own array: merged or just read
        mask = labelled_mask(data, self.labelled_items(record.name, up_to_version=version))
        data.flags.writeable = False
        mask.flags.writeable = False
        return LabelSnapshot(record.name, version, data, mask)

    def _remember(self, snapshot: LabelSnapshot) -> LabelSnapshot:
        with self._cache_lock:
            self._snapshots[(snapshot.case, snapshot.version)] = snapshot
            self._snapshots.move_to_end((snapshot.case, snapshot.version))
            while len(self._snapshots) > _SNAPSHOT_CACHE_SIZE:
                self._snapshots.popitem(last=False)
        return snapshot

    def _load_on_grid(self, path: Path, record: CaseRecord, *, as_label: bool,
                      channel: int | None = None) -> Volume:
        volume = load_volume(path, as_label=as_label, channel=channel,
                             channels_first=record.channels_first and channel is not None)
        if volume.shape != record.shape or affine_hash(volume.affine) != record.affine_hash:
            raise AlsegError(f"{path}: shape or affine changed since the project was created "
                             f"(now {volume.shape}, recorded {record.shape})")
        return volume

    def _remove_unrecorded_checkpoints(self) -> list[Path]:
        """Delete ``models/vNNNN.pt`` files no checkpoint row records: a retrain killed between
        saving its checkpoint and recording it (it never reported a new model)."""
        if not self.models_dir.is_dir():
            return []
        recorded = {row["path"] for row in self._db.rows("SELECT path FROM checkpoints")}
        orphans = [path for path in sorted(self.models_dir.iterdir())
                   if path.is_file() and _CHECKPOINT_NAME.match(path.name)
                   and self._files.relative(path) not in recorded and str(path) not in recorded]
        return [path for path in orphans if remove_file(path)]

    def _referenced_files(self) -> set[str]:
        rows = self._db.rows("SELECT path FROM label_versions UNION ALL "
                             "SELECT original_path FROM events WHERE original_path IS NOT NULL "
                             "UNION ALL SELECT path FROM drafts")
        return {row["path"] for row in rows}

    def _item_row(self, item: ScoredItem) -> tuple:
        record = self.case(item.case)
        return (record.id, _optional_int(item.slice_index), _optional_int(item.class_id), float(item.score),
                json.dumps(dict(item.terms), default=float))

    def _scored_item(self, row: sqlite3.Row) -> ScoredItem:
        return ScoredItem(self._cases_by_id[row["case_id"]].name, row["slice_index"], row["class_id"],
                          row["score"], json.loads(row["terms"]))

    def _event_record(self, row: sqlite3.Row) -> EventRecord:
        return EventRecord(
            id=row["id"], case=self._cases_by_id[row["case_id"]].name, slice_index=row["slice_index"],
            class_id=row["class_id"], kind=row["kind"], annotator=row["annotator"],
            started_at=row["started_at"], ended_at=row["ended_at"],
            seconds_active=row["seconds_active"], boundary_px=row["boundary_px"],
            boundary_mm=row["boundary_mm"], label_version=row["label_version"],
            original_path=self._files.absolute(row["original_path"]) if row["original_path"] else None,
            dice_original_final=row["dice_original_final"], model_version=row["model_version"])

    def _case_record(self, row: sqlite3.Row) -> CaseRecord:
        def source_path(stored: str) -> Path:
            return self.source_dir / stored  # an absolute stored path stays absolute

        return CaseRecord(
            id=row["id"], name=row["name"], channel_names=tuple(json.loads(row["channel_names"])),
            channel_paths=tuple(source_path(p) for p in json.loads(row["channel_paths"])),
            ground_truth_path=source_path(row["ground_truth_path"]) if row["ground_truth_path"] else None,
            shape=tuple(json.loads(row["shape"])), spacing=tuple(json.loads(row["spacing"])),
            origin=tuple(json.loads(row["origin"])), affine=np.array(json.loads(row["affine"])),
            source_affine=np.array(json.loads(row["source_affine"])), affine_hash=row["affine_hash"],
            channel_indices=tuple(json.loads(row["channel_indices"])) if row["channel_indices"] else (),
            channels_first=bool(row["channels_first"]))


_JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "meta": (), "classes": ("color",),
    "cases": ("channel_names", "channel_paths", "shape", "spacing", "origin", "affine", "source_affine",
              "channel_indices"),
    "validation_items": (), "label_versions": (), "events": (), "weak_annotations": (), "rounds": (),
    "round_suggestions": ("terms",), "checkpoints": ("metrics",), "scores": ("terms",), "drafts": (),
    "quality_examples": ("features",),
}


def check_database_file(path: Path) -> list[str]:
    """SQLite's full ``integrity_check`` of a database that cannot be opened as a project."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        from .database import quick_check

        return quick_check(conn, path, full=True)
    finally:
        conn.close()


def _write_new_database(folder: Path, plan: ProjectPlan, annotator: str, seed: int) -> None:
    """Build ``project.sqlite`` under a temp name and rename it: a project exists whole or not."""
    final = folder / DB_NAME
    temp = folder / f".{DB_NAME}.tmp"
    try:
        temp.unlink(missing_ok=True)
        conn = connect(temp, wal=False)
    except (AlsegError, OSError) as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, AlsegError):
            raise
        raise StorageError(f"{final}: cannot write the project database ({exc.strerror or exc})") from None
    try:
        migrate(conn, temp)
        conn.execute("BEGIN IMMEDIATE")
        _insert_plan(conn, plan, annotator, seed)
        conn.execute("COMMIT")
        conn.close()
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException as exc:
        conn.close()
        temp.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise database_error(final, exc, "creating the project") from None
        if isinstance(exc, OSError):
            raise StorageError(f"{final}: cannot write the project database "
                               f"({exc.strerror or exc}); nothing was created") from None
        raise


def _insert_plan(conn: sqlite3.Connection, plan: ProjectPlan, annotator: str, seed: int) -> None:
    meta = {"source_dir": str(plan.source_dir), "dataset_name": plan.dataset_name,
            "granularity": plan.granularity, "created_at": _now(), "created_by": annotator,
            "validation_seed": str(seed), "created_with": f"napari-alseg {__version__}",
            SKIPPED_KEY: json.dumps([[case.name, case.reason] for case in plan.skipped])}
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
    conn.executemany("INSERT INTO classes (id, name, color) VALUES (?, ?, ?)",
                     [(c.id, c.name, json.dumps(list(c.color)) if c.color else None) for c in plan.classes])
    case_ids = {}
    for case in plan.cases:
        source = case.source
        case_ids[source.name] = conn.execute(
            "INSERT INTO cases (name, channel_names, channel_paths, ground_truth_path, shape, spacing, "
            "origin, affine, source_affine, affine_hash, channel_indices, channels_first) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source.name, json.dumps([name for name, _ in source.channels]),
             json.dumps([_source_relative(p, plan.source_dir) for _, p in source.channels]),
             _source_relative(source.ground_truth, plan.source_dir) if source.ground_truth else None,
             json.dumps(list(case.shape)), json.dumps(list(case.spacing)), json.dumps(list(case.origin)),
             json.dumps(case.affine.tolist()), json.dumps(case.source_affine.tolist()),
             affine_hash(case.affine),
             json.dumps(list(source.channel_indices)) if source.channel_indices else None,
             int(source.channels_first))).lastrowid
    conn.executemany("INSERT INTO validation_items (case_id, slice_index) VALUES (?, ?)",
                     [(case_ids[name], slice_index) for name, slice_index in plan.validation])


def _source_relative(path: Path, source_dir: Path) -> str:
    """Relative to the source folder where possible, so moving the two together keeps working."""
    return path.relative_to(source_dir).as_posix() if path.is_relative_to(source_dir) else str(path)


def _optional_int(value: int | np.integer | None) -> int | None:
    """sqlite3 cannot bind numpy integers; slice and class ids often arrive as them."""
    return None if value is None else int(value)


def _check_seconds(seconds: float) -> float:
    if not (np.isfinite(seconds) and seconds >= 0):
        raise AlsegError(f"seconds_active must be a finite duration >= 0 s, got {seconds}")
    return float(seconds)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC; a naive datetime is taken as local time."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _default_annotator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
