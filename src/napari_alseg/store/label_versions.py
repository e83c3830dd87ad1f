"""Label versions read back: checked against the checksum recorded at submit, kept in a small
cache, each with the mask of what its events delineated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..domain import UNDO
from ..errors import AlsegError, DamagedLabelsError
from .cases import CasesMixin
from .labels import array_sha256, labelled_mask
from .records import CaseRecord, LabelledItem, LabelSnapshot

_SNAPSHOT_CACHE_SIZE = 4  # label versions kept in memory (a slice submit merges into the last)


class LabelVersionsMixin(CasesMixin):
    """A case's label versions as the annotator's writes left them (:mod:`.annotations` writes them)."""

    def current_labels(self, case: str) -> LabelSnapshot | None:
        """The latest submitted label version; what training reads. None if never labelled, or
        if every submit was taken back (an undo of the first submit makes the case unlabelled
        again, its history kept)."""
        snapshot = self._latest_labels(case)
        return None if snapshot is None or not snapshot.labelled.any() else snapshot

    def _latest_labels(self, case: str) -> LabelSnapshot | None:
        """The latest label version whatever stands in it: what a new version builds on."""
        row = self._db.row("SELECT MAX(version) AS v FROM label_versions WHERE case_id = ?",
                           (self.case(case).id,))
        return None if row is None or row["v"] is None else self.labels_at(case, row["v"])

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
        where = f"case {record.name} label version {version} ({row['path']})"
        try:
            data = self._files.read(path, self.label_dtype)
        except AlsegError as exc:
            raise DamagedLabelsError(f"{where}: {_without_path(str(exc), path)}", record.name, version) from None
        if array_sha256(data) != row["sha256"]:
            raise DamagedLabelsError(f"{where}: contents differ from the checksum recorded at submit; "
                                     "the file was changed or damaged outside napari-alseg; restore it "
                                     "from a backup", record.name, version)
        return self._remember(self._snapshot(record, version, data))

    def labelled_items(self, case: str, *, up_to_version: int | None = None) -> list[LabelledItem]:
        """What each labelling event delineated, oldest first (all versions when None).

        An event taken back by an undo no longer counts from the undo's version on; the undo
        itself delineates nothing (it writes an earlier version's labels again).
        """
        rows = self._db.rows(
            "SELECT id, slice_index, class_id, label_version FROM events WHERE case_id = ? "
            "AND label_version IS NOT NULL AND kind != ? AND (? IS NULL OR label_version <= ?) "
            "AND (undone_in_version IS NULL OR (? IS NOT NULL AND undone_in_version > ?)) "
            "ORDER BY label_version",
            (self.case(case).id, UNDO, up_to_version, up_to_version, up_to_version, up_to_version))
        return [LabelledItem(r["slice_index"], r["class_id"], r["label_version"], r["id"]) for r in rows]

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


def _without_path(message: str, path: Path) -> str:
    """A reader's message without the path it starts with (the caller names case and version)."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message
