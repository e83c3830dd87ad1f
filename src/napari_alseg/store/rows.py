"""Small conversions every part of the project store uses: ids, durations, timestamps, and
the one checked path by which stored JSON is read back (:func:`stored_json`)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import AlsegError, DamagedProjectError
from .state import DB_NAME


def optional_int(value: int | np.integer | None) -> int | None:
    """sqlite3 cannot bind numpy integers; slice and class ids often arrive as them."""
    return None if value is None else int(value)


def checked_seconds(seconds: float) -> float:
    if not (np.isfinite(seconds) and seconds >= 0):
        raise AlsegError(f"seconds_active must be a finite duration >= 0 s, got {seconds}")
    return float(seconds)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC; a naive datetime is taken as local time."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def stored_json(row: sqlite3.Row, column: str, table: str, expect: type | None = None) -> Any:
    """``row[column]`` parsed as JSON (of type ``expect`` when given), or one
    DamagedProjectError line naming the table and row (select ``rowid`` or ``id`` with it)."""
    try:
        value = json.loads(row[column])
    except (TypeError, ValueError) as exc:
        raise DamagedProjectError(damaged_record(table, row_id(row), column, f"unreadable JSON: {exc}")) from None
    if expect is not None and not isinstance(value, expect):
        raise DamagedProjectError(damaged_record(table, row_id(row), column,
                                                 f"JSON {type(value).__name__}, not {expect.__name__}"))
    return value


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT just made (``lastrowid`` is None only after other statements)."""
    rowid = cursor.lastrowid
    assert rowid is not None, "not called after an INSERT"
    return rowid


def row_id(row: sqlite3.Row) -> object:
    """The row's ``rowid`` (or its ``id`` alias), as selected with it; ``?`` when not selected."""
    keys = row.keys()
    return row["rowid"] if "rowid" in keys else row["id"] if "id" in keys else "?"


def damaged_record(table: str, rowid: object, column: str, problem: str) -> str:
    """The one line for a stored record that cannot be read (``--check`` lists each one)."""
    return (f"{DB_NAME}: damaged record in table {table} row {rowid}, column {column} ({problem}); "
            f"nothing was changed. `alseg status --check` lists every damaged record; restore "
            f"{DB_NAME} from a backup or correct that row")
