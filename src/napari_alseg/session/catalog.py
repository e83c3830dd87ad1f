"""What a front end may read of the open project: classes, cases, labels, history, models.

The dock, the CLI and the simulation read the project through :attr:`Session.catalog
<napari_alseg.session.facade.Session.catalog>` and change it only through the session's verbs,
so no front end holds the store's writes. Every method here reads; the arrays it hands out are
read-only (label snapshots) or the caller's own copy. Arrays are ``(k, j, i)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Granularity

if TYPE_CHECKING:
    from ..store import (CaseRecord, CheckpointRecord, ClassInfo, EventRecord, LabelledItem, LabelSnapshot,
                         Project, WeakAnnotation)


class Catalog:
    """Read-only facts of one open :class:`~napari_alseg.store.Project`."""

    def __init__(self, project: Project) -> None:
        self._project = project

    # ------------------------------------------------------------------ classes

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        """Every class by id, background (0) first, with its name and display colour."""
        return self._project.classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._project.class_names

    @property
    def n_classes(self) -> int:
        """Classes including background."""
        return self._project.n_classes

    @property
    def label_dtype(self) -> np.dtype:
        """The unsigned type label arrays use (uint8 up to 256 classes)."""
        return self._project.label_dtype

    # ------------------------------------------------------------------ the project

    @property
    def folder(self) -> Path:
        return self._project.folder

    @property
    def dataset_name(self) -> str:
        return self._project.dataset_name

    @property
    def granularity(self) -> Granularity:
        """What one submit labels: a whole case or one slice."""
        return self._project.granularity

    @property
    def read_only(self) -> str | None:
        """Why the project was opened read-only, or None when it can be written."""
        return self._project.read_only

    def require_writable(self, action: str) -> None:
        """One StorageError line naming ``action`` when the project is read-only: call before
        long work that would end in a write (a training round)."""
        self._project.require_writable(action)

    # ------------------------------------------------------------------ cases

    @property
    def cases(self) -> tuple[CaseRecord, ...]:
        return self._project.cases

    def case(self, name: str) -> CaseRecord:
        """The case's record (shape, spacing, channels, placement); one-line AlsegError if unknown."""
        return self._project.case(name)

    def ground_truth(self, case: str) -> np.ndarray | None:
        """The source's ground-truth labels (held back for the simulated oracle), or None."""
        return self._project.ground_truth(case)

    def validation_items(self) -> list[tuple[str, int | None]]:
        """The held-out ``(case, slice)`` items; slice None = the whole case."""
        return self._project.validation_items()

    def weak_annotations(self, case: str) -> dict[int, WeakAnnotation]:
        """The latest slice range marked per class of ``case``."""
        return self._project.weak_annotations(case)

    # ------------------------------------------------------------------ labels

    def current_labels(self, case: str) -> LabelSnapshot | None:
        """The latest label version (read-only arrays), or None while the case is unlabelled."""
        return self._project.current_labels(case)

    def labels_at(self, case: str, version: int) -> LabelSnapshot:
        return self._project.labels_at(case, version)

    def editable_labels(self, case: str) -> np.ndarray:
        """A writable copy of the case's current labels; zeros while it is unlabelled."""
        snapshot = self._project.current_labels(case)
        if snapshot is None:
            return np.zeros(self._project.case(case).shape, self._project.label_dtype)
        return snapshot.data.copy()

    def labelled_items(self, case: str) -> list[LabelledItem]:
        """What each standing labelling event of ``case`` delineated, oldest first."""
        return self._project.labelled_items(case)

    def load_draft(self, case: str) -> np.ndarray | None:
        """The case's unsubmitted draft, or None."""
        return self._project.load_draft(case)

    # ------------------------------------------------------------------ history and models

    def events(self, case: str | None = None) -> list[EventRecord]:
        """Every annotation event (of one case, or all), oldest first."""
        return self._project.events(case)

    def checkpoints(self) -> list[CheckpointRecord]:
        """Recorded models, oldest first; the last is the active one."""
        return self._project.checkpoints()

    def metrics(self) -> dict[str, Any]:
        """The active model's metrics (``val_dice``; ``val_dice_per_class`` and ``label_dice_per_class``
        by class id, :mod:`napari_alseg.metrics`...); {} without."""
        checkpoints = self._project.checkpoints()
        return dict(checkpoints[-1].metrics) if checkpoints else {}
