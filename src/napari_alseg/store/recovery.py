"""``alseg recover``: what was kept aside in ``recovered/``, and recording it again.

A label version the database does not know (its commit lost with ``project.sqlite-wal``, or a
submit killed between its rename and its commit) is moved to ``recovered/`` on open, with the
record written beside it when it was saved (``v0002.json``: its event, tools, region and
checksum). :meth:`RecoveryMixin.restore_recovered` replays each such record, oldest version
first, through the ordinary verbs (:meth:`submit`, :meth:`undo_submit`): the same region,
class, kind, annotator, seconds, tools and model prediction, as a new label version on top of
what the case holds now. A restored file (and its record and prediction) then leaves
``recovered/``: its work is in the project again. Files without a record, drafts, and files
that fail their checksum are listed and left where they are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..domain import LABELLING_KINDS, UNDO, EventKind
from ..errors import AlsegError
from .annotations import AnnotationsMixin
from .labels import LABEL_SUFFIX, LABELS_DIR, RECOVERED_DIR, SIDECAR_SUFFIX, array_sha256
from .records import ToolUse

_VERSION_FILE = re.compile(r"^v(\d{4,})(~\d+)?\.nii\.gz$")
_ORIGINAL_FILE = re.compile(r"^e(\d{6,})(~\d+)?\.nii\.gz$")


@dataclass(frozen=True)
class RecoveredFile:
    """One file under ``recovered/``: what it is, and whether it can be recorded again."""

    path: Path
    case: str
    what: str  # "label version 2", "the model's prediction kept with event 14", "a draft", ...
    record: dict | None  # the saved record of a label version (None: none was found)
    problem: str | None  # why it cannot be restored automatically; None when it can (or is not a version)

    @property
    def restorable(self) -> bool:
        return self.record is not None and self.problem is None

    @property
    def version(self) -> int:
        return int(self.record["version"]) if self.record else 0


@dataclass(frozen=True)
class Restored:
    """A recovered label version recorded again: as ``version`` of ``case`` by event ``event_id``;
    ``same`` when the result equals the recovered volume voxel for voxel (nothing newer since)."""

    source: RecoveredFile
    version: int
    event_id: int
    same: bool


class RecoveryMixin(AnnotationsMixin):
    """Lists and restores what open kept aside in ``recovered/``."""

    def recovered(self) -> list[RecoveredFile]:
        """Every label file under ``recovered/``: label versions by case and version, then the rest.

        Versions are replayed independently (each its own region), except an undo, which takes
        back the submit before it: after a version of its case that cannot be restored, an undo
        is not restorable either."""
        files = sorted((self._describe_recovered(path) for path in self._files.recovered_files()),
                       key=lambda f: (_file_version(f.path) is None, f.case, _file_version(f.path) or 0,
                                      str(f.path)))
        blocked: set[str] = set()
        for index, item in enumerate(files):
            if _file_version(item.path) is None:
                continue
            if not item.restorable:
                blocked.add(item.case)
            elif item.case in blocked and item.record is not None and item.record["event"]["kind"] == UNDO:
                files[index] = RecoveredFile(item.path, item.case, item.what, item.record,
                                             "an undo after a version of this case that cannot be restored "
                                             "would take back the wrong submit")
        return files

    def restore_recovered(self) -> list[Restored]:
        """Record every restorable recovered version again, oldest first; returns what was done.

        Each is one ordinary, durable submit (or undo); one that fails stops the run with its
        one-line error, leaving it and the rest in ``recovered/`` (those before it are restored).
        """
        self._db.require_writable("restoring recovered labels")
        done = []
        for item in self.recovered():
            if item.restorable and item.record is not None:
                done.append(self._restore(item, item.record))
        return done

    # ------------------------------------------------------------------ internals

    def _describe_recovered(self, path: Path) -> RecoveredFile:
        relative = path.relative_to(self.folder / RECOVERED_DIR)
        parts = relative.parts
        case = parts[1] if len(parts) >= 3 and parts[0] == LABELS_DIR else ""
        version = _VERSION_FILE.match(path.name)
        if version is None:
            original = _ORIGINAL_FILE.match(path.name)
            what = (f"the model's prediction kept with event {int(original.group(1))} (restored with its version)"
                    if original else "unsubmitted strokes (a draft)" if path.name.startswith("draft")
                    else "a label file")
            return RecoveredFile(path, case, what, None, None)
        what = f"label version {int(version.group(1))}"
        sidecar = path.with_name(path.name[: -len(LABEL_SUFFIX)] + SIDECAR_SUFFIX)
        if not sidecar.is_file():
            return RecoveredFile(path, case, what, None, "no record of what made it was saved beside it (saved "
                                 "by an older napari-alseg); open it in a NIfTI viewer to redo it by hand")
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
            event = record["event"]
            kind = event["kind"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return RecoveredFile(path, case, what, None, f"its record {sidecar.name} cannot be read ({exc})")
        what = f"label version {record.get('version')}: {_event_text(event)}"
        problem = None
        if kind not in (*LABELLING_KINDS, UNDO):
            problem = f"its record names kind {kind!r}, which does not write labels"
        elif record.get("case") != case or case not in {c.name for c in self.cases}:
            problem = f"its record names case {record.get('case')!r}, which this project does not hold"
        return RecoveredFile(path, case, what, record, problem)

    def _restore(self, item: RecoveredFile, record: dict[str, Any]) -> Restored:
        event = record["event"]
        data = self._files.read(item.path, self.label_dtype)
        if array_sha256(data) != record.get("sha256"):
            raise AlsegError(f"{item.path}: contents differ from the checksum saved with it; not restored "
                             "(it and the files after it stay in recovered/)")
        slice_index, class_id = event.get("slice_index"), event.get("class_id")
        if event["kind"] == UNDO:
            event_id = self.undo_submit(item.case, annotator=event["annotator"])
        else:
            region = data if slice_index is None else data[slice_index]
            original = self._recovered_original(item, record, slice_index)
            started = event.get("started_at")
            event_id = self.submit(
                item.case, region, kind=EventKind(event["kind"]), slice_index=slice_index, class_id=class_id,
                annotator=event["annotator"], seconds_active=float(event.get("seconds_active") or 0.0),
                started_at=datetime.fromisoformat(started) if started else None, original=original,
                boundary_px=event.get("boundary_px"), boundary_mm=event.get("boundary_mm"),
                model_version=event.get("model_version"),
                tools=[ToolUse(t["kind"], t.get("slice_index"), t["class_id"], int(t.get("voxels") or 0),
                               int(t.get("clicks") or 0)) for t in record.get("tools", [])])
        snapshot = self._latest_labels(item.case)
        assert snapshot is not None, "the submit or undo above wrote a label version"
        self._discard_restored(item, record)
        return Restored(item, snapshot.version, event_id, bool(np.array_equal(snapshot.data, data)))

    def _recovered_original(self, item: RecoveredFile, record: dict, slice_index: int | None) -> np.ndarray | None:
        path = self._recovered_original_path(item, record)
        if path is None:
            return None
        data = self._files.read(path, self.label_dtype)
        return data if slice_index is None else data[0]

    def _recovered_original_path(self, item: RecoveredFile, record: dict) -> Path | None:
        event_id = record.get("event_id")
        if event_id is None:
            return None
        path = item.path.parent / "originals" / f"e{int(event_id):06d}{LABEL_SUFFIX}"
        return path if path.is_file() else None

    def _discard_restored(self, item: RecoveredFile, record: dict) -> None:
        """The restored file, its record and its prediction leave ``recovered/`` (the work is recorded)."""
        original = self._recovered_original_path(item, record)
        for path in (item.path, item.path.with_name(item.path.name[: -len(LABEL_SUFFIX)] + SIDECAR_SUFFIX),
                     original):
            if path is not None:
                path.unlink(missing_ok=True)


def _file_version(path: Path) -> int | None:
    match = _VERSION_FILE.match(path.name)
    return None if match is None else int(match.group(1))


def _event_text(event: dict) -> str:
    where = "whole case" if event.get("slice_index") is None else f"slice {event['slice_index']}"
    which = "" if event.get("class_id") is None else f", class {event['class_id']}"
    return (f"{event.get('kind')} by {event.get('annotator')}, {where}{which}, "
            f"saved {event.get('ended_at')}")
