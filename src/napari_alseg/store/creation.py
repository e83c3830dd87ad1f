"""Creating a project's database: built whole under a temp name, then renamed into place."""

from __future__ import annotations

import getpass
import json
import logging
import sqlite3
from pathlib import Path

from .. import __version__
from ..atomic import atomic_path
from ..errors import AlsegError, storage_error
from ..geometry import display_placement, oblique_line, obliquity
from .sqlite import connect, database_error
from .ingest import ProjectPlan, affine_hash
from .rows import now
from .schema import migrate
from .state import DB_NAME

SKIPPED_KEY = "skipped_cases"  # meta: [[case, reason], ...] left out at creation
SHOWN_NAMES = 5  # cases named in the oblique line; the rest counted

log = logging.getLogger(__name__)


def write_new_database(folder: Path, plan: ProjectPlan, annotator: str, seed: int, *,
                       keep_ground_truth: bool) -> tuple[str, ...]:
    """Build ``project.sqlite`` under a temp name and rename it (:func:`~napari_alseg.atomic.atomic_path`):
    a project exists whole or not at all. Without ``keep_ground_truth`` no case records the
    labels found beside it as ground truth (they are imported as annotations instead).
    Returns the lines the creator should see (the oblique cases' line), also logged."""
    final = folder / DB_NAME
    try:
        with atomic_path(final) as temp:
            conn = connect(temp, wal=False)
            try:
                migrate(conn, final, action="creating the project")
                conn.execute("BEGIN IMMEDIATE")
                _insert_plan(conn, plan, annotator, seed, keep_ground_truth)
                conn.execute("COMMIT")
            finally:
                conn.close()
    except sqlite3.Error as exc:
        raise database_error(final, exc, "creating the project") from None
    except AlsegError:
        raise
    except OSError as exc:
        raise storage_error(final, exc, "write the project database", "nothing was created") from None
    line = oblique_cases_line(plan)
    if line:
        log.warning("%s", line)
    return (line,) if line else ()


def oblique_cases_line(plan: ProjectPlan) -> str | None:
    """One line naming the cases whose voxel grid is oblique (:func:`~napari_alseg.geometry.oblique_line`):
    kept in the project; the dock shows them turned at their world position, or, tilted out of
    their slice plane, on their acquired slices (:func:`~napari_alseg.geometry.display_placement`).
    None when there are none."""
    oblique = [(case.source.name, obliquity(case.affine, case.shape[::-1])[0],
                display_placement(case.affine, case.shape), 0.5 * min(case.spacing)) for case in plan.cases
               if oblique_line(case.source.name, case.affine, case.shape[::-1])]
    if not oblique:
        return None
    names = ", ".join(name for name, *_rest in oblique[:SHOWN_NAMES])
    if len(oblique) > SHOWN_NAMES:
        names += f" and {len(oblique) - SHOWN_NAMES} more"
    tilted = [placement for _name, _degrees, placement, half_voxel in oblique if placement.offset_mm > half_voxel]
    shown = "the dock shows them turned, at their world position"
    if tilted:
        shown += (f", save {len(tilted)} tilted out of the slice plane (up to "
                  f"{max(p.tilt_degrees for p in tilted):.1f}°), shown on their acquired slices, up to "
                  f"{max(p.offset_mm for p in tilted):.1f} mm from it")
    return (f"{len(oblique)} case(s) have an oblique voxel grid (turned up to "
            f"{max(d for _n, d, *_rest in oblique):.1f}° from the scanner axes: {names}): {shown}; the "
            "project keeps each file's affine, rotation included, and exported labels are written with it")


def _insert_plan(conn: sqlite3.Connection, plan: ProjectPlan, annotator: str, seed: int,
                 keep_ground_truth: bool) -> None:
    meta = {"source_dir": str(plan.source_dir), "dataset_name": plan.dataset_name,
            "granularity": plan.granularity, "created_at": now(), "created_by": annotator,
            "validation_seed": str(seed), "created_with": f"napari-alseg {__version__}",
            SKIPPED_KEY: json.dumps([[case.name, case.reason] for case in plan.skipped])}
    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
    conn.executemany("INSERT INTO classes (id, name, color) VALUES (?, ?, ?)",
                     [(c.id, c.name, json.dumps(list(c.color)) if c.color else None) for c in plan.classes])
    case_ids = {}
    for case in plan.cases:
        source = case.source
        truth = source.ground_truth if keep_ground_truth else None
        case_ids[source.name] = conn.execute(
            "INSERT INTO cases (name, channel_names, channel_paths, ground_truth_path, shape, spacing, "
            "origin, affine, source_affine, affine_hash, channel_indices, channels_first) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source.name, json.dumps([name for name, _ in source.channels]),
             json.dumps([_source_relative(p, plan.source_dir) for _, p in source.channels]),
             _source_relative(truth, plan.source_dir) if truth else None,
             json.dumps(list(case.shape)), json.dumps(list(case.spacing)), json.dumps(list(case.origin)),
             json.dumps(case.affine.tolist()), json.dumps(case.source_affine.tolist()),
             affine_hash(case.affine),
             json.dumps(list(source.channel_indices)) if source.channel_indices else None,
             int(source.channels_first))).lastrowid
    conn.executemany("INSERT INTO validation_items (case_id, slice_index) VALUES (?, ?)",
                     [(case_ids[name], slice_index) for name, slice_index in plan.validation])


def _source_relative(path: Path, source_dir: Path) -> str:
    """Relative to the source folder where possible, so moving the two together keeps working."""
    return path.relative_to(source_dir).as_posix() if path.is_relative_to(source_dir) else str(path)


def default_annotator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
