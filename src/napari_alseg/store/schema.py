"""The project database's tables, and the ordered migrations that build them.

``PRAGMA user_version`` holds the number of migrations applied. A project written by a
newer napari-alseg (more migrations than this code knows) is refused rather than
guessed at; older projects are brought forward one migration at a time, each in its
own transaction, so an interrupted upgrade leaves a consistent older version.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import AlsegError
from .sqlite import transaction

# One step of a migration: an SQL statement, or (data no statement can rewrite) a function of the connection.
MigrationStep = str | Callable[[sqlite3.Connection], None]

# Times are ISO 8601 UTC text; JSON columns hold lists/dicts; paths are relative to the
# project folder (label files) or to the source folder (channels) where possible.
_VERSION_1 = (
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE classes (
        id INTEGER PRIMARY KEY CHECK (id >= 0),
        name TEXT NOT NULL,
        color TEXT)""",
    """CREATE TABLE cases (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        channel_names TEXT NOT NULL,
        channel_paths TEXT NOT NULL,
        ground_truth_path TEXT,
        shape TEXT NOT NULL,
        spacing TEXT NOT NULL,
        origin TEXT NOT NULL,
        affine TEXT NOT NULL,
        source_affine TEXT NOT NULL,
        affine_hash TEXT NOT NULL)""",
    """CREATE TABLE validation_items (
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER)""",
    """CREATE TABLE label_versions (
        case_id INTEGER NOT NULL REFERENCES cases(id),
        version INTEGER NOT NULL CHECK (version >= 1),
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (case_id, version))""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER REFERENCES classes(id),
        kind TEXT NOT NULL
            CHECK (kind IN ('manual', 'corrected', 'pseudo-accepted', 'pseudo-rejected')),
        annotator TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT NOT NULL,
        seconds_active REAL NOT NULL CHECK (seconds_active >= 0),
        boundary_px REAL,
        boundary_mm REAL,
        label_version INTEGER,
        original_path TEXT,
        dice_original_final REAL,
        model_version TEXT,
        FOREIGN KEY (case_id, label_version) REFERENCES label_versions(case_id, version))""",
    """CREATE INDEX events_by_case ON events(case_id, label_version)""",
    """CREATE TABLE weak_annotations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        class_id INTEGER NOT NULL REFERENCES classes(id),
        first_slice INTEGER NOT NULL,
        last_slice INTEGER NOT NULL,
        annotator TEXT NOT NULL,
        seconds_active REAL NOT NULL,
        created_at TEXT NOT NULL,
        CHECK (0 <= first_slice AND first_slice <= last_slice))""",
    """CREATE TABLE rounds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        strategy TEXT NOT NULL,
        model_version TEXT,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE round_suggestions (
        round_id INTEGER NOT NULL REFERENCES rounds(id),
        rank INTEGER NOT NULL,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER,
        score REAL NOT NULL,
        terms TEXT NOT NULL,
        PRIMARY KEY (round_id, rank))""",
    """CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model_version TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        round_id INTEGER REFERENCES rounds(id),
        created_at TEXT NOT NULL,
        metrics TEXT NOT NULL)""",
    """CREATE TABLE scores (
        model_version TEXT NOT NULL,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER,
        score REAL NOT NULL,
        terms TEXT NOT NULL,
        scored_at TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX scores_by_item
        ON scores(model_version, case_id, IFNULL(slice_index, -1), IFNULL(class_id, -1))""",
    """CREATE INDEX scores_by_rank ON scores(model_version, score DESC)""",
    """CREATE TABLE drafts (
        case_id INTEGER PRIMARY KEY REFERENCES cases(id),
        path TEXT NOT NULL,
        base_version INTEGER,
        saved_at TEXT NOT NULL)""",
)

# Version 2: predictions whose true Dice became known (a correction, a labelled validation
# item), kept so the quality predictor does not start from nothing in every session.
_VERSION_2: tuple[str, ...] = (
    """CREATE TABLE quality_examples (
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER,
        model_version TEXT,
        features TEXT NOT NULL,
        dice REAL NOT NULL,
        recorded_at TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX quality_examples_by_item
        ON quality_examples(case_id, IFNULL(slice_index, -1), IFNULL(class_id, -1))""",
)

# Version 3: channels read from a 4D multi-channel file (MSD / BraTS layout): per channel its
# index in the file (JSON list, NULL = every channel is its own 3D file), and whether the
# file holds channels on its first axis.
_VERSION_3: tuple[str, ...] = (
    """ALTER TABLE cases ADD COLUMN channel_indices TEXT""",
    """ALTER TABLE cases ADD COLUMN channels_first INTEGER NOT NULL DEFAULT 0""",
)

# Version 4: the tools that cut tracing and undo (issue 14). SQLite cannot widen a CHECK, so
# the events table is rebuilt with the new kinds, ``voxels`` (what a tool set and the annotator
# kept) and ``undone_in_version`` (the label version that took the event back; NULL = stands).
_EVENT_COLUMNS_V1 = ("id, case_id, slice_index, class_id, kind, annotator, started_at, ended_at, "
                     "seconds_active, boundary_px, boundary_mm, label_version, original_path, "
                     "dice_original_final, model_version")
_VERSION_4: tuple[str, ...] = (
    """CREATE TABLE events_v4 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER REFERENCES classes(id),
        kind TEXT NOT NULL
            CHECK (kind IN ('manual', 'corrected', 'pseudo-accepted', 'pseudo-rejected',
                            'interpolated', 'outline-accepted', 'undo')),
        annotator TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT NOT NULL,
        seconds_active REAL NOT NULL CHECK (seconds_active >= 0),
        boundary_px REAL,
        boundary_mm REAL,
        label_version INTEGER,
        original_path TEXT,
        dice_original_final REAL,
        model_version TEXT,
        voxels INTEGER CHECK (voxels IS NULL OR voxels >= 0),
        undone_in_version INTEGER,
        FOREIGN KEY (case_id, label_version) REFERENCES label_versions(case_id, version))""",
    f"INSERT INTO events_v4 ({_EVENT_COLUMNS_V1}) SELECT {_EVENT_COLUMNS_V1} FROM events",
    """DROP TABLE events""",
    """ALTER TABLE events_v4 RENAME TO events""",
    """CREATE INDEX events_by_case ON events(case_id, label_version)""",
)

# Version 5: segment with clicks, a tool of its own kind ('clicked'). The events table is rebuilt
# as in version 4 to widen the kind CHECK, with ``clicks`` (how many clicks a tool use took; NULL
# for events that are not a tool's), which the seconds model prices per click.
_EVENT_COLUMNS_V4 = f"{_EVENT_COLUMNS_V1}, voxels, undone_in_version"
_VERSION_5: tuple[str, ...] = (
    """CREATE TABLE events_v5 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER REFERENCES classes(id),
        kind TEXT NOT NULL
            CHECK (kind IN ('manual', 'corrected', 'pseudo-accepted', 'pseudo-rejected',
                            'interpolated', 'outline-accepted', 'clicked', 'undo')),
        annotator TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT NOT NULL,
        seconds_active REAL NOT NULL CHECK (seconds_active >= 0),
        boundary_px REAL,
        boundary_mm REAL,
        label_version INTEGER,
        original_path TEXT,
        dice_original_final REAL,
        model_version TEXT,
        voxels INTEGER CHECK (voxels IS NULL OR voxels >= 0),
        undone_in_version INTEGER,
        clicks INTEGER CHECK (clicks IS NULL OR clicks >= 0),
        FOREIGN KEY (case_id, label_version) REFERENCES label_versions(case_id, version))""",
    f"INSERT INTO events_v5 ({_EVENT_COLUMNS_V4}) SELECT {_EVENT_COLUMNS_V4} FROM events",
    """DROP TABLE events""",
    """ALTER TABLE events_v5 RENAME TO events""",
    """CREATE INDEX events_by_case ON events(case_id, label_version)""",
)

# Version 6: labels found at creation become label versions of their own kind ('imported', issue
# 22). The events table is rebuilt as in version 4 to widen the kind CHECK; its columns are unchanged.
_EVENT_COLUMNS_V5 = f"{_EVENT_COLUMNS_V4}, clicks"
_VERSION_6: tuple[str, ...] = (
    """CREATE TABLE events_v6 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        slice_index INTEGER,
        class_id INTEGER REFERENCES classes(id),
        kind TEXT NOT NULL
            CHECK (kind IN ('manual', 'corrected', 'pseudo-accepted', 'pseudo-rejected',
                            'interpolated', 'outline-accepted', 'clicked', 'undo', 'imported')),
        annotator TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT NOT NULL,
        seconds_active REAL NOT NULL CHECK (seconds_active >= 0),
        boundary_px REAL,
        boundary_mm REAL,
        label_version INTEGER,
        original_path TEXT,
        dice_original_final REAL,
        model_version TEXT,
        voxels INTEGER CHECK (voxels IS NULL OR voxels >= 0),
        undone_in_version INTEGER,
        clicks INTEGER CHECK (clicks IS NULL OR clicks >= 0),
        FOREIGN KEY (case_id, label_version) REFERENCES label_versions(case_id, version))""",
    f"INSERT INTO events_v6 ({_EVENT_COLUMNS_V5}) SELECT {_EVENT_COLUMNS_V5} FROM events",
    """DROP TABLE events""",
    """ALTER TABLE events_v6 RENAME TO events""",
    """CREATE INDEX events_by_case ON events(case_id, label_version)""",
)



def _per_class_dice_by_id(conn: sqlite3.Connection) -> None:
    """Version 7: a checkpoint's per-class Dice, kept until now as one key per class name
    (``val_dice_<name>``, ``label_dice_<name>``), becomes one list by class id under
    ``val_dice_per_class`` / ``label_dice_per_class`` (0, background: null; a class not measured:
    null). Keys are matched to today's class names; a key of a class renamed since matches none
    and stays as it is (no reader ever found it either). A record that is not a JSON object is
    left for the readers to report as damaged."""
    names = dict(conn.execute("SELECT id, name FROM classes").fetchall())
    size = max(names, default=0) + 1
    for row_id, text in conn.execute("SELECT id, metrics FROM checkpoints").fetchall():
        try:
            metrics = json.loads(text)
        except ValueError:
            continue
        if not isinstance(metrics, dict):
            continue
        by_prefix: dict[str, list[float | None]] = {}
        for prefix in ("val_dice", "label_dice"):
            values: list[float | None] = [None] * size
            for class_id, name in names.items():
                value = metrics.get(f"{prefix}_{name}") if class_id else None
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values[class_id] = float(value)
                    del metrics[f"{prefix}_{name}"]
            if any(value is not None for value in values):
                by_prefix[f"{prefix}_per_class"] = values
        if by_prefix:
            conn.execute("UPDATE checkpoints SET metrics = ? WHERE id = ?", (json.dumps({**metrics, **by_prefix}),
                                                                               row_id))


_VERSION_7: tuple[MigrationStep, ...] = (_per_class_dice_by_id,)

# Append new migrations at the end; never edit one that has shipped.
MIGRATIONS: tuple[tuple[MigrationStep, ...], ...] = (_VERSION_1, _VERSION_2, _VERSION_3, _VERSION_4, _VERSION_5,
                                                     _VERSION_6, _VERSION_7)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, db_path: Path,
            migrations: Sequence[Sequence[MigrationStep]] = MIGRATIONS, *, action: str = "opening the project") -> None:
    """Bring the database at ``db_path`` up to ``len(migrations)``, or refuse a newer one.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Each migration runs in
    its own :func:`~napari_alseg.store.sqlite.transaction`; a sqlite3 error comes out as one
    AlsegError line naming ``db_path`` and what was being done (``action``).
    """
    current = schema_version(conn)
    newest = len(migrations)
    if current > newest:
        raise AlsegError(
            f"{db_path}: project schema version {current} is newer than this napari-alseg "
            f"supports (version {newest}); upgrade napari-alseg to open it"
        )
    for version in range(current + 1, newest + 1):
        with transaction(conn, db_path, action):
            for step in migrations[version - 1]:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            conn.execute(f"PRAGMA user_version = {version:d}")
