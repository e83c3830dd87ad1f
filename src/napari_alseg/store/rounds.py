"""The learning loop's records: rounds served, checkpoints, scores, quality examples."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..domain import QueryItem
from ..errors import AlsegError, DamagedProjectError, StorageError
from .cases import CasesMixin
from .labels import remove_file
from .records import CheckpointRecord, RoundRecord, ScoredItem
from .rows import damaged_record, inserted_id, now, optional_int, row_id, stored_json
from .state import DB_NAME

log = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^v\d{4,}\.pt$")  # what a training round writes


class RoundsMixin(CasesMixin):
    """Rounds, model checkpoints, per-version scores and (features, Dice) quality examples."""

    def record_round(self, strategy: str, suggestions: Sequence[ScoredItem], *,
                     model_version: str | None = None) -> int:
        """Record an active-learning round: the strategy and the ranked items it served
        (provenance: nothing in the product reads it back; the export writes it).

        A read-only project (opened for viewing) keeps no record and returns 0: nothing served
        there can be annotated."""
        rows = [self._item_row(item) for item in suggestions]
        if self.read_only is not None:
            return 0
        with self._write_lock, self._db.transaction() as conn:
            round_id = inserted_id(conn.execute("INSERT INTO rounds (strategy, model_version, created_at) "
                                                "VALUES (?, ?, ?)", (strategy, model_version, now())))
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
        rows = self._db.rows("SELECT rowid, * FROM round_suggestions WHERE round_id = ? ORDER BY rank",
                             (round_id,))
        return [self._scored_item(row, "round_suggestions") for row in rows]

    def record_checkpoint(self, model_version: str, path: str | os.PathLike, *,
                          round_id: int | None = None,
                          metrics: Mapping[str, Any] | None = None) -> int:
        """Record a saved model checkpoint (the file must already exist)."""
        path = Path(path).absolute()
        if not path.is_file():
            raise AlsegError(f"{path}: checkpoint file not found; save it before recording it")
        stored = self._files.relative(path) if path.is_relative_to(self.folder) else str(path)
        try:
            with self._write_lock, self._db.transaction("recording a checkpoint") as conn:
                if conn.execute("SELECT 1 FROM checkpoints WHERE model_version = ?", (model_version,)).fetchone():
                    raise AlsegError(f"{self.folder}: model version {model_version!r} is already "
                                     "recorded; give each checkpoint a new version")
                return inserted_id(conn.execute(
                    "INSERT INTO checkpoints (model_version, path, round_id, created_at, metrics) "
                    "VALUES (?, ?, ?, ?, ?)", (model_version, stored, round_id, now(),
                                               json.dumps(dict(metrics or {}), default=float))))
        except StorageError:
            self._discard_unrecorded_checkpoint(path, stored)
            raise

    def _discard_unrecorded_checkpoint(self, path: Path, stored: str) -> None:
        """A checkpoint whose record could not be written (disk full) is unrecorded: remove it
        now, as the next open would, so a full disk is not made fuller by a model nobody can use."""
        if (path.parent == self.models_dir and _CHECKPOINT_NAME.match(path.name)
                and self._db.row("SELECT 1 FROM checkpoints WHERE path = ?", (stored,)) is None):
            remove_file(path)

    def checkpoints(self) -> list[CheckpointRecord]:
        """Recorded checkpoints, oldest first (the last one is the current model). Their metrics:
        numbers, and per-class Dice as lists by class id (:data:`~napari_alseg.metrics.VAL_DICE_PER_CLASS`)."""
        return [CheckpointRecord(r["id"], r["model_version"], self.folder / r["path"], r["round_id"],
                                 r["created_at"], stored_json(r, "metrics", "checkpoints", dict))
                for r in self._db.rows("SELECT * FROM checkpoints ORDER BY id")]

    def store_scores(self, model_version: str, items: Iterable[ScoredItem]) -> int:
        """Store per-item scores of one model version (re-storing an item replaces it).

        A read-only project keeps them in no table (the caller's ranking holds them for this
        opening; the next opening scores again)."""
        rows = [(model_version, *self._item_row(item), now()) for item in items]
        if self.read_only is not None:
            log.info("%s: scores of %s not kept (the project is read-only)", self.folder, model_version)
            return len(rows)
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
        rows = self._db.rows("SELECT rowid, * FROM scores WHERE model_version = ? "
                             "ORDER BY score DESC, case_id, slice_index, class_id", (model_version,))
        return [self._scored_item(row, "scores") for row in rows]

    def all_scores(self) -> list[tuple[str, ScoredItem]]:
        """Every stored score with its model version, by version in the order scored (for the
        export's ``scores.csv``)."""
        rows = self._db.rows("SELECT rowid, * FROM scores ORDER BY model_version, rowid")
        return [(row["model_version"], self._scored_item(row, "scores")) for row in rows]

    def store_quality_examples(self, examples: Iterable[tuple[QueryItem, np.ndarray, float]], *,
                               model_version: str | None) -> None:
        """Keep ``(item, quality features, true Dice)``; a newer example of an item replaces the older."""
        rows = [(self.case(item.case).id, optional_int(item.slice_index), optional_int(item.class_id),
                 model_version, json.dumps([float(v) for v in np.asarray(features).ravel()]), float(dice), now())
                for item, features, dice in examples]
        with self._write_lock, self._db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO quality_examples (case_id, slice_index, class_id, model_version, "
                "features, dice, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def quality_examples(self) -> list[tuple[str, int | None, int | None, np.ndarray, float]]:
        """``(case, slice, class, features, Dice)`` of every stored example, oldest first."""
        rows = self._db.rows("SELECT rowid, * FROM quality_examples ORDER BY rowid")
        return [(self._cases_by_id[r["case_id"]].name, r["slice_index"], r["class_id"],
                 _features(r), float(r["dice"])) for r in rows]

    def _item_row(self, item: ScoredItem) -> tuple:
        record = self.case(item.case)
        return (record.id, optional_int(item.slice_index), optional_int(item.class_id), float(item.score),
                json.dumps(dict(item.terms), default=float))

    def _scored_item(self, row: sqlite3.Row, table: str) -> ScoredItem:
        return ScoredItem(self._cases_by_id[row["case_id"]].name, row["slice_index"], row["class_id"],
                          row["score"], stored_json(row, "terms", table, dict))

    def _remove_unrecorded_checkpoints(self) -> list[Path]:
        """Delete ``models/vNNNN.pt`` files no checkpoint row records: a retrain killed between
        saving its checkpoint and recording it (it never reported a new model). Said in one
        warning line, as for temp files."""
        if not self.models_dir.is_dir():
            return []
        recorded = {row["path"] for row in self._db.rows("SELECT path FROM checkpoints")}
        orphans = [path for path in sorted(self.models_dir.iterdir())
                   if path.is_file() and _CHECKPOINT_NAME.match(path.name)
                   and self._files.relative(path) not in recorded and str(path) not in recorded]
        removed = [path for path in orphans if remove_file(path)]
        if removed:
            log.warning("removed %d checkpoint file(s) that %s does not record (a retrain stopped between "
                        "saving and recording its model, which it never reported): %s", len(removed),
                        DB_NAME, ", ".join(self._files.relative(p) for p in removed))
        return removed

    def missing_checkpoints(self) -> list[CheckpointRecord]:
        """Recorded checkpoints whose file is gone (removed outside napari-alseg); [] when a
        checkpoint record is damaged (``alseg status --check`` lists that)."""
        try:
            return [c for c in self.checkpoints() if not c.path.is_file()]
        except AlsegError:
            return []

    def _report_missing_checkpoints(self) -> None:
        """One warning line on open when recorded checkpoint files have gone missing."""
        missing = self.missing_checkpoints()
        if missing:
            log.warning("%s: %d recorded checkpoint file(s) are missing (removed outside napari-alseg?): %s; "
                        "models that need them cannot load; restore them from a backup or retrain",
                        self.folder, len(missing), ", ".join(f"{c.model_version} ({c.path})" for c in missing))


def _features(row: sqlite3.Row) -> np.ndarray:
    """A quality example's feature vector; one damaged-record line when it is not numbers."""
    values = stored_json(row, "features", "quality_examples", list)
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        raise DamagedProjectError(damaged_record("quality_examples", row_id(row), "features",
                                                 "not a list of numbers")) from None
