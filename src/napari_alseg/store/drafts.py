"""Autosaved, unsubmitted strokes: one draft volume per case, replaced atomically."""

from __future__ import annotations

import numpy as np

from .annotations import AnnotationsMixin
from .labels import check_label_array, write_label_volume
from .rows import now


class DraftsMixin(AnnotationsMixin):
    """Drafts survive a crash; a whole-volume submit clears them."""

    def save_draft(self, case: str, labels: np.ndarray) -> None:
        """Autosave unsubmitted strokes (whole ``(k, j, i)`` volume); replaced atomically.

        A submit of the whole volume clears the draft; a slice or single-class submit keeps
        it, since it may hold strokes on other slices that are not submitted yet.
        """
        self._db.require_writable("saving a draft")
        record = self.case(case)
        data = check_label_array(labels, shape=record.shape, n_classes=self.n_classes,
                                 what=f"case {case} draft")
        with self._write_lock:
            base = self._latest_labels(case)
            path = self._files.draft_path(record.name)
            write_label_volume(path, data, record, overwrite=True)
            with self._db.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO drafts (case_id, path, base_version, saved_at) "
                             "VALUES (?, ?, ?, ?)", (record.id, self._files.relative(path),
                                                     base.version if base else None, now()))

    def load_draft(self, case: str) -> np.ndarray | None:
        """The last autosaved draft not yet cleared by a whole-volume submit, or None."""
        row = self._db.row("SELECT path FROM drafts WHERE case_id = ?", (self.case(case).id,))
        if row is None:
            return None
        return self._files.read(self._files.absolute(row["path"]), self.label_dtype)
