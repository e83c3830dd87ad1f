"""Finding cases, channels and ground truth in a source folder, by file names only.

Two layouts are understood:

* one subfolder per case: every NIfTI inside is a channel, except one whose name carries a
  label token (``seg``, ``label``, ``mask``, ``gt``, ...) which is the ground truth;
* flat files named ``<case>_<channel>.nii.gz`` and ``<case>_seg.nii.gz``.

Nothing is read here but names and the two optional JSON side files; geometry is checked
by :mod:`.ingest`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AlsegError
from ..nifti import LABEL_NAME_TOKENS, NIFTI_SUFFIXES, is_nifti_path, looks_like_label_name
from .records import ClassInfo

CLASSES_FILE = "classes.json"
DATASET_FILE = "dataset.json"
SINGLE_CHANNEL_NAME = "image"


@dataclass(frozen=True)
class CaseSource:
    """A case's files: channels as ``(name, path)`` sorted by name, and optional ground truth."""

    name: str
    channels: tuple[tuple[str, Path], ...]
    ground_truth: Path | None


def discover_cases(source_dir: Path, channel_order: list[str] | None = None) -> list[CaseSource]:
    """All cases under ``source_dir``, sorted by name; AlsegError when none or ambiguous.

    Channels come in ``channel_order`` (``dataset.json``'s ``channels``: the model's input
    order) when given, else sorted by name.
    """
    if not source_dir.is_dir():
        raise AlsegError(f"{source_dir}: source folder not found")
    folders = [p for p in _visible(source_dir) if p.is_dir()]
    cases = [case for case in (_folder_case(folder) for folder in folders) if case is not None]
    cases += _flat_cases([p for p in _visible(source_dir) if p.is_file() and is_nifti_path(p)])
    if not cases:
        raise AlsegError(
            f"{source_dir}: no NIfTI cases found (expected one subfolder per case, or files "
            "named <case>_<channel>.nii.gz)"
        )
    _check_unique_names(cases, source_dir)
    _check_same_channels(cases)
    if channel_order is not None:
        cases = [_reorder_channels(case, channel_order, source_dir) for case in cases]
    return sorted(cases, key=lambda case: case.name)


def read_classes(source_dir: Path) -> list[ClassInfo] | None:
    """``classes.json`` (``{"0": {"name": ..., "color": [r, g, b]}, ...}``), or None if absent."""
    path = source_dir / CLASSES_FILE
    raw = _read_json(path)
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise AlsegError(f"{path}: expected an object mapping class ids to names")
    try:
        ids = sorted(int(key) for key in raw)
    except ValueError:
        raise AlsegError(f"{path}: class ids must be integers, got {sorted(raw)}") from None
    if ids != list(range(len(ids))):
        raise AlsegError(f"{path}: class ids must run 0..{len(ids) - 1} without gaps, got {ids}")
    return [_class_info(path, class_id, raw[str(class_id)]) for class_id in ids]


def read_dataset_info(source_dir: Path) -> dict[str, Any]:
    """``dataset.json`` (name, granularity, ...) or ``{}`` when the folder has none."""
    path = source_dir / DATASET_FILE
    raw = _read_json(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AlsegError(f"{path}: expected a JSON object")
    return raw


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _channel_name(stem: str, case: str) -> str:
    if stem == case:
        return SINGLE_CHANNEL_NAME
    return stem[len(case) + 1:] if stem.startswith(case + "_") else stem


def _folder_case(folder: Path) -> CaseSource | None:
    files = [p for p in _visible(folder) if p.is_file() and is_nifti_path(p)]
    if not files:
        return None
    labels = [p for p in files if looks_like_label_name(p)]
    channels = [(_channel_name(_stem(p), folder.name), p) for p in files if p not in labels]
    return _make_case(folder.name, channels, labels, where=folder)


def _flat_cases(files: list[Path]) -> list[CaseSource]:
    labels = [p for p in files if looks_like_label_name(p)]
    label_cases: dict[str, list[Path]] = defaultdict(list)
    for path in labels:
        label_cases[_label_case_id(path)].append(path)
    channels: dict[str, list[tuple[str, Path]]] = defaultdict(list)
    for path in files:
        if path not in labels:
            case = _image_case_id(_stem(path), label_cases)
            channels[case].append((_channel_name(_stem(path), case), path))
    for case, paths in label_cases.items():
        if case not in channels:
            raise AlsegError(f"{paths[0]}: label file without image channels for case '{case}'")
    return [_make_case(case, channels[case], label_cases.get(case, []), where=files[0].parent)
            for case in channels]


def _label_case_id(path: Path) -> str:
    tokens = [t for t in _stem(path).split("_") if t.lower() not in LABEL_NAME_TOKENS]
    if not tokens:
        raise AlsegError(f"{path}: cannot tell which case this label file belongs to; "
                         "name it <case>_seg.nii.gz")
    return "_".join(tokens)


def _image_case_id(stem: str, known_cases: dict[str, list[Path]]) -> str:
    """The case an image belongs to: a known case id it starts with, else ``stem`` minus ``_channel``."""
    matches = [case for case in known_cases if stem == case or stem.startswith(case + "_")]
    if matches:
        return max(matches, key=len)
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def _make_case(name: str, channels: list[tuple[str, Path]], labels: list[Path],
               where: Path) -> CaseSource:
    if len(labels) > 1:
        raise AlsegError(f"{where}: case '{name}' has several label files "
                         f"({', '.join(p.name for p in labels)}); keep one")
    if not channels:
        raise AlsegError(f"{where}: case '{name}' has a label file but no image channels")
    names = [channel for channel, _ in channels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AlsegError(f"{where}: case '{name}' has several files for channel {duplicates}")
    return CaseSource(name=name, channels=tuple(sorted(channels)),
                      ground_truth=labels[0] if labels else None)


def _reorder_channels(case: CaseSource, order: list[str], source_dir: Path) -> CaseSource:
    found = dict(case.channels)
    if sorted(order) != sorted(found):
        raise AlsegError(f"{source_dir / DATASET_FILE}: lists channels {order} but case "
                         f"'{case.name}' has {sorted(found)}")
    return CaseSource(case.name, tuple((name, found[name]) for name in order), case.ground_truth)


def _check_unique_names(cases: list[CaseSource], source_dir: Path) -> None:
    names = [case.name for case in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AlsegError(f"{source_dir}: case names {duplicates} appear both as a subfolder "
                         "and as flat files")


def _check_same_channels(cases: list[CaseSource]) -> None:
    """The model takes a fixed channel list, so every case must offer the same one."""
    first = cases[0]
    expected = [channel for channel, _ in first.channels]
    for case in cases[1:]:
        found = [channel for channel, _ in case.channels]
        if found != expected:
            raise AlsegError(
                f"{case.channels[0][1].parent}: case '{case.name}' has channels {found} but "
                f"case '{first.name}' has {expected}; every case needs the same channels"
            )


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlsegError(f"{path}: not readable JSON ({exc})") from None


def _class_info(path: Path, class_id: int, entry: Any) -> ClassInfo:
    if isinstance(entry, str):
        return ClassInfo(class_id, entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise AlsegError(f"{path}: class {class_id} needs a name (\"name\": \"...\")")
    color = entry.get("color")
    if color is not None:
        if not (isinstance(color, list) and len(color) == 3
                and all(isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise AlsegError(f"{path}: class {class_id} color must be [r, g, b] in 0..255")
        color = tuple(color)
    return ClassInfo(class_id, entry["name"], color)
