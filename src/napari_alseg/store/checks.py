"""Whole-project checks (``alseg status --check``) and export."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import AlsegError, DamagedLabelsError, DamagedProjectError
from . import export as export_module
from .annotations import AnnotationsMixin
from .rounds import RoundsMixin
from .rows import stored_json
from .state import DB_NAME

_JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "meta": (), "classes": ("color",),
    "cases": ("channel_names", "channel_paths", "shape", "spacing", "origin", "affine", "source_affine",
              "channel_indices"),
    "validation_items": (), "label_versions": (), "events": (), "weak_annotations": (), "rounds": (),
    "round_suggestions": ("terms",), "checkpoints": ("metrics",), "scores": ("terms",), "drafts": (),
    "quality_examples": ("features",),
}



class ChecksMixin(AnnotationsMixin, RoundsMixin):
    """Reads only: a full check of every record and file, the files referenced, the export."""

    def check(self) -> list[str]:
        """Every problem a full check finds (``alseg status --check``); [] when all is sound.

        SQLite's full ``integrity_check``; every stored text decodes and every JSON column
        parses; every label version's file exists and matches the checksum recorded at
        submit; every recorded checkpoint file exists; unrecorded label files kept aside in
        ``recovered/`` are listed. Reads only; changes nothing; always runs to the end.
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
                except DamagedLabelsError as exc:  # names the case, version and file itself
                    problems.append(str(exc))
                except AlsegError as exc:
                    problems.append(f"case {case.name} label version {row['version']}: {exc}")
        problems += self._checkpoint_file_problems()
        problems += [f"{self._files.relative(path)}: a label file {DB_NAME} does not record, kept aside "
                     "on open (lost commits?); `alseg recover` lists and restores it"
                     for path in self._files.recovered_files()]
        return problems

    def _checkpoint_file_problems(self) -> list[str]:
        """Missing checkpoint files; a damaged checkpoint row is listed by the record check."""
        return [f"model {c.model_version}: checkpoint {c.path} is missing" for c in self.missing_checkpoints()]

    def _unreadable_rows(self, table: str, json_columns: tuple[str, ...]) -> list[str]:
        problems = []
        try:
            rowids = [row[0] for row in self._db.rows(f"SELECT rowid FROM {table}")]
        except AlsegError as exc:
            return [f"{DB_NAME}: table {table} cannot be read ({exc})"]
        for rowid in rowids:
            try:
                row = self._db.row(f"SELECT rowid, * FROM {table} WHERE rowid = ?", (rowid,))
            except AlsegError:
                problems.append(f"{DB_NAME}: table {table} row {rowid} holds text that is not UTF-8")
                continue
            if row is None:  # removed since the rowids were read
                continue
            for column in json_columns:
                try:
                    if row[column] is not None:
                        stored_json(row, column, table)
                except DamagedProjectError as exc:
                    problems.append(str(exc))
        return problems

    def _referenced_files(self) -> set[str]:
        rows = self._db.rows("SELECT path FROM label_versions UNION ALL "
                             "SELECT original_path FROM events WHERE original_path IS NOT NULL "
                             "UNION ALL SELECT path FROM drafts")
        return {row["path"] for row in rows}

    def export(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write every case's current labels (source affine) and provenance CSV + JSON."""
        return export_module.export_project(self, Path(out_dir))


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
