"""Exporting a project: current labels as NIfTI beside the sources, plus full provenance.

Label files keep the source file's affine and voxel orientation, so they overlay the
source image anywhere. ``provenance.csv`` (one row per annotation event) is for people and
spreadsheets; ``provenance.json`` adds classes, cases, weak annotations and checkpoints.
``rounds.csv`` (one row per item served: which engine offered it, under which model, at which
rank and score) and ``scores.csv`` (every item's score per model version) say how the
items were chosen; each has a column per term (the named numbers behind the scores).

Text in the CSV files that a spreadsheet would run as a formula (a cell starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return: a case, class or annotator name from a
file) gets a leading apostrophe, which spreadsheets show as text; numbers are written as they
are. ``provenance.json`` keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from ..atomic import atomic_path, make_folder
from ..errors import DamagedLabelsError, storage_error
from .labels import LABEL_SUFFIX, write_label_volume
from .records import (CaseRecord, CheckpointRecord, ClassInfo, EventRecord, LabelSnapshot, RoundRecord, ScoredItem,
                      WeakAnnotation)


class ExportSource(Protocol):
    """What an export reads of a project (:class:`~napari_alseg.store.project.Project` is one);
    a protocol, so this module does not import the project that calls it."""

    folder: Path
    dataset_name: str
    source_dir: Path
    classes: tuple[ClassInfo, ...]

    @property
    def cases(self) -> tuple[CaseRecord, ...]: ...
    @property
    def class_names(self) -> tuple[str, ...]: ...
    def current_labels(self, case: str) -> LabelSnapshot | None: ...
    def events(self, case: str | None = None) -> list[EventRecord]: ...
    def weak_annotations(self, case: str) -> dict[int, WeakAnnotation]: ...
    def checkpoints(self) -> list[CheckpointRecord]: ...
    def validation_items(self) -> list[tuple[str, int | None]]: ...
    def rounds(self) -> list[RoundRecord]: ...
    def round_suggestions(self, round_id: int) -> list[ScoredItem]: ...
    def all_scores(self) -> list[tuple[str, ScoredItem]]: ...

CSV_NAME = "provenance.csv"
JSON_NAME = "provenance.json"
ROUNDS_NAME = "rounds.csv"
SCORES_NAME = "scores.csv"
ROUND_COLUMNS = ("round_id", "strategy", "model_version", "created_at", "rank")
ITEM_COLUMNS = ("case", "slice_index", "class_id", "class_name", "score")
EVENT_COLUMNS = ("id", "case", "slice_index", "class_id", "class_name", "kind", "annotator",
                 "started_at", "ended_at", "seconds_active", "boundary_px", "boundary_mm",
                 "label_version", "dice_original_final", "model_version", "original_path", "voxels",
                 "undone_in_version", "clicks")


def export_project(project: ExportSource, out_dir: Path) -> list[Path]:
    """Write ``<case>_seg.nii.gz`` per labelled case and the provenance files; return paths.

    A case whose current label version is damaged is left out (``label_error`` in
    ``provenance.json`` says why) and everything else is written; then one
    :class:`~napari_alseg.errors.DamagedLabelsError` line names the cases left out.
    """
    make_folder(out_dir, "the export folder")
    written = []
    case_entries = []
    damaged: list[DamagedLabelsError] = []
    for case in project.cases:
        label_error = None
        try:
            snapshot = project.current_labels(case.name)
        except DamagedLabelsError as exc:
            snapshot, label_error = None, str(exc)
            damaged.append(exc)
        label_file = None
        if snapshot is not None:
            path = out_dir / f"{case.name}_seg{LABEL_SUFFIX}"
            write_label_volume(path, snapshot.data, case, overwrite=True)
            written.append(path)
            label_file = path.name
        case_entries.append({
            "name": case.name, "label_file": label_file, **({"label_error": label_error} if label_error else {}),
            "label_version": snapshot.version if snapshot else None,
            "channels": dict(zip(case.channel_names, map(str, case.channel_paths))),
            # MSD / BraTS: every channel is one volume of the same 4D file
            "channel_indices": (dict(zip(case.channel_names, case.channel_indices))
                                if case.channel_indices else None),
            "ground_truth": str(case.ground_truth_path) if case.ground_truth_path else None,
            "shape_kji": list(case.shape), "spacing_kji_mm": list(case.spacing),
        })
    events = [_event_row(project, event) for event in project.events()]
    written.append(_write_text(out_dir / CSV_NAME, _csv_text(events, EVENT_COLUMNS)))
    provenance = {
        "project": str(project.folder), "dataset": project.dataset_name,
        "source_dir": str(project.source_dir),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "classes": [asdict(c) for c in project.classes], "cases": case_entries, "events": events,
        "weak_annotations": [asdict(w) for case in project.cases
                             for w in project.weak_annotations(case.name).values()],
        "checkpoints": [{**asdict(c), "path": str(c.path)} for c in project.checkpoints()],
        "validation_items": [list(item) for item in project.validation_items()],
    }
    written.append(_write_text(out_dir / JSON_NAME, json.dumps(provenance, indent=2)))
    written.append(_write_text(out_dir / ROUNDS_NAME, _scored_csv(project, ROUND_COLUMNS, [
        ({"round_id": r.id, "strategy": r.strategy, "model_version": r.model_version, "created_at": r.created_at,
          "rank": rank}, item) for r in project.rounds() for rank, item in enumerate(project.round_suggestions(r.id))])))
    written.append(_write_text(out_dir / SCORES_NAME, _scored_csv(project, ("model_version",), [
        ({"model_version": version}, item) for version, item in project.all_scores()])))
    if damaged:
        raise DamagedLabelsError(
            f"{out_dir}: exported {len(written)} files, but not the labels of {len(damaged)} case(s) whose "
            f"current label version is damaged: {damaged[0]}" + (f"; and {len(damaged) - 1} more (`alseg status "
                                                                  "--check` lists them)" if len(damaged) > 1 else ""),
            damaged[0].case, damaged[0].version)
    return written


def _event_row(project: ExportSource, event: EventRecord) -> dict:
    row = asdict(event)
    row["class_name"] = None if event.class_id is None else project.class_names[event.class_id]
    row["original_path"] = str(event.original_path) if event.original_path else None
    return {column: row[column] for column in EVENT_COLUMNS}


def _scored_csv(project: ExportSource, columns: tuple[str, ...], rows: list[tuple[dict, ScoredItem]]) -> str:
    """One row per scored item: ``columns`` from each row's dict, the item, then a column per
    term any item has (empty where an item has none)."""
    terms = sorted({name for _, item in rows for name in item.terms})
    table = [{**fields, "case": item.case, "slice_index": item.slice_index, "class_id": item.class_id,
              "class_name": None if item.class_id is None else project.class_names[item.class_id],
              "score": item.score, **item.terms} for fields, item in rows]
    return _csv_text(table, (*columns, *ITEM_COLUMNS, *terms))


def _csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _write_text(path: Path, text: str) -> Path:
    """Atomic replace, like the label files: a reader sees the old export or the new one."""
    try:
        with atomic_path(path) as temp:
            with open(temp, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
    except OSError as exc:
        raise storage_error(path, exc, "write the export", "the previous file, if any, is unchanged") from None
    return path
