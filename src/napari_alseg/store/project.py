"""The annotation project: one folder, one SQLite database, append-only label versions.

Clinicians' annotation time is the scarcest resource, so every verb here is durable
before it returns: a submit writes a new label file (temp, fsync, rename) and only then
commits the row that records it (``synchronous=FULL``). A kill at any point leaves either
the old state or the new one; on the next :meth:`Project.open` temp files are swept and
label files the database does not record are kept aside in ``recovered/`` (never deleted).

Arrays are ``(k, j, i)`` (slice axis first) as in :mod:`napari_alseg.nifti`.

:class:`Project` is the lifecycle (create, open, close) over one mixin per concern:
:mod:`.cases` (classes, cases, settings, split), :mod:`.annotations` (submits, weak labels)
over :mod:`.label_versions` (label versions read back), :mod:`.drafts`, :mod:`.rounds`
(rounds, checkpoints, scores, quality examples) and :mod:`.checks` (full check, export).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from ..atomic import claim_folder
from ..domain import (IMPORTED, IMPORTED_ANNOTATOR, LABELS_AS, LABELS_AS_ANNOTATIONS, LABELS_AS_GROUND_TRUTH,
                      Granularity, LabelsAs)
from ..errors import AlsegError, DamagedProjectError, StorageError
from .annotations import AnnotationsMixin
from .cases import CasesMixin
from .checks import ChecksMixin, check_database_file  # noqa: F401 (re-exported)
from .creation import SKIPPED_KEY, default_annotator, write_new_database
from .database import Database, damaged_message
from .drafts import DraftsMixin
from .ingest import ProjectPlan, plan_project
from .labels import LabelFiles, label_dtype, remove_temp_files
from .lock import ProjectLock
from .records import ClassInfo, LabelSnapshot
from .recovery import RecoveryMixin
from .rows import stored_json
from .rounds import RoundsMixin
from .state import DB_NAME, MODELS_DIR  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def _undo_create(folder: Path, lock: ProjectLock | None, claimed: bool, owned: bool) -> None:
    """Undo a failed create without touching another process's work.

    The folder is removed whole only when ``owned``: this call made it
    (:func:`~napari_alseg.atomic.claim_folder`), holds its lock and found no database of
    another creator there. Otherwise a folder it ``claimed`` is removed only if empty
    (``rmdir``), so a racing creator's project always survives.
    """
    if owned:
        shutil.rmtree(folder, ignore_errors=True)  # while locked: other creators are refused
    if lock is not None:
        lock.release()
    if claimed and not owned:
        try:
            folder.rmdir()
        except OSError:
            pass


def _unwritable(folder: Path) -> str | None:
    """Why the project's folder or database cannot be written (``os.access``), or None."""
    if not os.access(folder / DB_NAME, os.W_OK):
        return f"no write permission on {DB_NAME}"
    if not os.access(folder, os.W_OK):
        return "no write permission on the project folder"
    return None


_SQLITE_MAGIC = b"SQLite format 3\x00"
_USER_VERSION_AT = slice(60, 64)  # the header's big-endian user_version: our schema version


def _refuse_empty_database(path: Path) -> None:
    """Refuse a 0-byte ``project.sqlite`` (a truncated copy) or one with no schema, before
    SQLite opens it: even switching to WAL would write into it. Creation writes the schema
    into the main file (no WAL), so a project's header never says version 0."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise AlsegError(f"{path}: cannot read the project database ({exc.strerror or exc})") from None
    if not header:
        raise DamagedProjectError(damaged_message(path, "the file is empty, 0 bytes"))
    if header.startswith(_SQLITE_MAGIC) and len(header) == 100 and not any(header[_USER_VERSION_AT]):
        raise DamagedProjectError(damaged_message(path, "it holds no project: schema version 0"))


class Project(RecoveryMixin, ChecksMixin, DraftsMixin, AnnotationsMixin, RoundsMixin, CasesMixin):
    """An open project; holds the folder's lock until :meth:`close`. Use as a context manager.

    Thread use: the annotator's thread writes; any other thread (training) may read
    (:meth:`current_labels`, :meth:`labels_at`, records) concurrently. Writes are serialised.
    """

    def __init__(self, folder: Path, lock: ProjectLock, read_only: str | None = None) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.folder = folder
        self.creation_notes: tuple[str, ...] = ()  # what creating it had to say (oblique cases): create only
        self._lock = lock
        self.read_only = read_only
        self._unsaved_settings: dict[str, str] = {}
        self._db = Database(folder / DB_NAME, read_only=read_only)
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
        self.granularity = Granularity(meta["granularity"])
        self.dataset_name = meta["dataset_name"]
        self.skipped_cases: tuple[tuple[str, str], ...] = tuple(
            (str(name), str(reason)) for name, reason in json.loads(meta.get(SKIPPED_KEY, "[]")))
        self.classes = tuple(
            ClassInfo(row["id"], row["name"], tuple(stored_json(row, "color", "classes", list)) if row["color"] else None)
            for row in self._db.rows("SELECT * FROM classes ORDER BY id"))
        self.label_dtype = label_dtype(len(self.classes))
        self._cases = {record.name: record for record in
                       (self._case_record(row) for row in self._db.rows("SELECT * FROM cases ORDER BY name"))}
        self._cases_by_id = {record.id: record for record in self._cases.values()}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, folder: str | os.PathLike, source_dir: str | os.PathLike, *,
               class_names: Sequence[str] | None = None, annotator: str | None = None,
               granularity: Granularity | None = None, validation_fraction: float = 0.2,
               seed: int = 0, skip_bad_cases: bool = False, labels_as: LabelsAs = LABELS_AS_GROUND_TRUTH,
               before_writing: Callable[[ProjectPlan], None] | None = None) -> Project:
        """Make a project in ``folder`` from the NIfTI cases in ``source_dir`` and open it.

        Every source file is read and checked before anything is written. ``class_names``
        (index = class id) overrides ``classes.json``; ``granularity`` (``"case"`` or
        ``"slice"``) overrides ``dataset.json`` and decides what the validation split holds
        out: whole cases, or slices. The split is drawn once with ``seed`` and never again.
        A case that cannot be used stops creation with every such case named, unless
        ``skip_bad_cases``: then they are left out and listed in :attr:`skipped_cases`.
        What creation had to say besides (oblique cases, one line) is logged and kept in
        :attr:`creation_notes` for a front end to show.
        ``before_writing(plan)`` sees the checked cases and classes first; raising refuses them
        with nothing written (an initial model that does not fit, say).
        ``labels_as``: labels found beside the cases become each case's first label version, of
        kind ``imported`` (``"annotations"``), or are held back as the simulation's ground truth
        (``"ground-truth"``, the default).
        """
        if labels_as not in LABELS_AS:
            raise AlsegError(f"labels_as must be one of {LABELS_AS}, got {labels_as!r}")
        folder = Path(folder).absolute()
        if (folder / DB_NAME).exists():
            raise AlsegError(f"{folder}: already holds a project ({DB_NAME}); open it instead "
                             "or choose another folder")
        plan = plan_project(Path(source_dir).absolute(), class_names=class_names,
                            granularity=granularity, validation_fraction=validation_fraction,
                            seed=seed, skip_bad_cases=skip_bad_cases)
        if before_writing is not None:
            before_writing(plan)
        claimed = claim_folder(folder, "the project folder")
        lock, owned = None, False
        try:
            lock = ProjectLock.acquire(folder)
            if (folder / DB_NAME).exists():  # another creator got the lock first and finished
                raise AlsegError(f"{folder}: already holds a project ({DB_NAME}); another "
                                 "`alseg create` made it first")
            owned = claimed  # from here on, whatever is in the folder is this call's
            notes = write_new_database(folder, plan, annotator or default_annotator(), seed,
                                       keep_ground_truth=labels_as == LABELS_AS_GROUND_TRUTH)
            lock.guard(folder / DB_NAME)
            project = cls(folder, lock)
            project.creation_notes = notes
            if labels_as == LABELS_AS_ANNOTATIONS:
                project._import_labels(plan)
            return project
        except BaseException:
            _undo_create(folder, lock, claimed, owned)
            raise

    def _import_labels(self, plan: ProjectPlan) -> None:
        """Each planned case's label file as its first label version, of kind ``imported``
        through :meth:`submit`. On failure the database is closed and removed, so no half-imported
        project remains even in a folder that existed before (creation removes a folder it made)."""
        try:
            for case in plan.cases:
                if case.source.ground_truth is not None:
                    labels = self._load_on_grid(case.source.ground_truth, self.case(case.source.name),
                                                as_label=True).data
                    self.submit(case.source.name, labels, kind=IMPORTED, annotator=IMPORTED_ANNOTATOR,
                                seconds_active=0.0)
        except BaseException:
            self._db.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._db.path}{suffix}").unlink(missing_ok=True)
            raise

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Project:
        """Reopen a project exactly as it was left, sweeping files of interrupted submits.

        A project that cannot be written (a read-only file system or archive, no write
        permission on its folder or database) opens read-only (:attr:`read_only` says why, and
        one warning line): viewing, status and export work, every write is refused in one line,
        and nothing is swept.
        """
        folder = Path(folder).absolute()
        if not (folder / DB_NAME).is_file():
            raise AlsegError(f"{folder}: not a project folder (no {DB_NAME})")
        _refuse_empty_database(folder / DB_NAME)
        lock = ProjectLock.acquire(folder, database=folder / DB_NAME, allow_read_only=True)
        try:
            read_only = lock.read_only or _unwritable(folder)
            try:
                project = cls(folder, lock, read_only)
            except StorageError as exc:  # a full disk, say: it can still be read (status, export)
                if read_only is not None:
                    raise
                read_only = f"it could not be written on open: {exc.cause or exc}"
                project = cls(folder, lock, read_only)
        except BaseException:
            lock.release()
            raise
        if read_only is not None:
            log.warning("%s: opened read-only (%s): viewing, status and export work; annotating, "
                        "retraining and other writes are refused", folder, read_only)
            project._report_missing_checkpoints()
            return project
        try:
            project._files.remove_debris(project._referenced_files())
            remove_temp_files(project.models_dir)
            project._remove_unrecorded_checkpoints()
            project._report_missing_checkpoints()
        except BaseException:
            project.close()
            raise
        return project

    def require_writable(self, action: str) -> None:
        """One StorageError line when the project is open read-only (before long work that would
        end in a write, such as training)."""
        self._db.require_writable(action)

    def close(self) -> None:
        """Close the database and free the folder for another process. Idempotent."""
        with self._write_lock:
            self._db.close()
            self._lock.release()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
