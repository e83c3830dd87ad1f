"""The on-disk layout shared by every sample set: ``classes.json`` and ``dataset.json``.

``dataset.json`` is written last; its presence is what marks a set folder as complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import AlsegError

DATASET_FILE = "dataset.json"
CLASSES_FILE = "classes.json"


def write_json(path: Path, content: dict) -> Path:
    """Write JSON atomically (temp file + rename), so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(temporary, path)
    return path


def write_classes(folder: Path, classes: dict[int, tuple[str, tuple[int, int, int]]]) -> Path:
    """Write ``classes.json``: ``{"<id>": {"name": ..., "color": [r, g, b]}}`` (0-255)."""
    content = {str(class_id): {"name": name, "color": list(color)}
               for class_id, (name, color) in sorted(classes.items())}
    return write_json(folder / CLASSES_FILE, content)


def load_class_names(set_dir: Path) -> dict[int, str]:
    """Class id -> name from a set folder's ``classes.json``, or raise :class:`AlsegError`."""
    path = Path(set_dir) / CLASSES_FILE
    if not path.is_file():
        raise AlsegError(f"{path}: file not found (not a sample-set folder?)")
    try:
        content = json.loads(path.read_text())
        return {int(class_id): (entry["name"] if isinstance(entry, dict) else str(entry))
                for class_id, entry in content.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AlsegError(f"{path}: not a valid classes file ({exc!r})") from None


def is_complete(set_dir: Path) -> bool:
    """True once a set folder's ``dataset.json`` exists (it is written last)."""
    return (Path(set_dir) / DATASET_FILE).is_file()
