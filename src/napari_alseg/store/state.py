"""What every part of an open project shares (the mixins of :class:`~napari_alseg.store.project.Project`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..domain import Granularity
from .database import Database
from .labels import LabelFiles
from .records import CaseRecord, ClassInfo, LabelSnapshot

DB_NAME = "project.sqlite"
MODELS_DIR = "models"


class ProjectState:
    """The attributes an open :class:`~napari_alseg.store.project.Project` holds, shared by its parts."""

    folder: Path
    read_only: str | None  # why the project cannot be written (opened for viewing), or None
    _unsaved_settings: dict[str, str]  # settings of a read-only opening, held in memory only
    source_dir: Path
    granularity: Granularity
    dataset_name: str
    classes: tuple[ClassInfo, ...]
    label_dtype: np.dtype
    _db: Database
    _files: LabelFiles
    _write_lock: threading.RLock
    _cache_lock: threading.Lock
    _snapshots: OrderedDict[tuple[str, int], LabelSnapshot]
    _cases: dict[str, CaseRecord]
    _cases_by_id: dict[int, CaseRecord]
