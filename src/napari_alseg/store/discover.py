"""Finding cases, channels and ground truth in a source folder, by file names (and headers).

Three layouts are understood:

* one subfolder per case: every NIfTI inside is a channel, except one whose name carries a
  label token (``seg``, ``label``, ``mask``, ``gt``, ...) or whose header's intent is
  ``label`` (:func:`~napari_alseg.nifti.is_label_file`), which is the ground truth;
* flat files named ``<case>_<channel>.nii.gz`` and ``<case>_seg.nii.gz`` (or any
  ``<case>_<name>.nii.gz`` / ``<case>.nii.gz`` with the label intent);
* the Medical Segmentation Decathlon / BraTS / nnU-Net layout: ``imagesTr/`` (and
  ``imagesTs/``, unlabelled) with ``labelsTr/<case>.nii.gz``, and a ``dataset.json`` naming the
  channels (``"modality"``: ``{"0": "FLAIR", ...}`` or ``"channel_names"``). A case is either one
  4D file (channels on the 4th axis, or on the 1st) or one 3D file per channel
  (``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``, ...).

A case that cannot be used is never dropped silently: it is returned in
:attr:`Discovery.skipped` with its reason, and callers refuse or name it. Only headers are read
here (a 4D file's channel axis, a file's intent); geometry is checked by :mod:`.ingest`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AlsegError
from ..nifti import (LABEL_NAME_TOKENS, NIFTI_SUFFIXES, is_label_file, is_nifti_path, looks_like_label_name,
                     read_shape)
from .records import ClassInfo

CLASSES_FILE = "classes.json"
DATASET_FILE = "dataset.json"
SINGLE_CHANNEL_NAME = "image"
MSD_IMAGES, MSD_LABELS, MSD_TEST_IMAGES = "imagesTr", "labelsTr", "imagesTs"
_SPLIT_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")  # nnU-Net: <case>_0000


@dataclass(frozen=True)
class CaseSource:
    """A case's files: channels as ``(name, path)`` sorted by name, and optional ground truth.

    ``channel_indices``: per channel, its index in a 4D file (None for a 3D file; empty = all
    3D); ``channels_first``: the 4D file holds channels on its 1st axis instead of its 4th.
    """

    name: str
    channels: tuple[tuple[str, Path], ...]
    ground_truth: Path | None
    channel_indices: tuple[int | None, ...] = ()
    channels_first: bool = False

    def channel_index(self, position: int) -> int | None:
        return self.channel_indices[position] if self.channel_indices else None


@dataclass(frozen=True)
class SkippedCase:
    """A case that cannot be used, and why (one line)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    cases: tuple[CaseSource, ...]
    skipped: tuple[SkippedCase, ...]
    layout: str  # "folders/flat" or "msd"


def discover_cases(source_dir: Path, channel_order: list[str] | None = None, *,
                   skip_bad_cases: bool = False) -> list[CaseSource]:
    """All usable cases under ``source_dir``, sorted by name; AlsegError when none, when
    ambiguous, or (unless ``skip_bad_cases``) when any case cannot be used (all are named)."""
    found = discover(source_dir, channel_order)
    if found.skipped and not skip_bad_cases:
        raise AlsegError(skipped_message(source_dir, found.skipped))
    return list(found.cases)


def skipped_message(source_dir: Path, skipped: tuple[SkippedCase, ...] | list[SkippedCase]) -> str:
    """One line naming every unusable case with its reason, and the way out."""
    listed = "; ".join(f"{case.name}: {case.reason}" for case in skipped)
    what = "1 case cannot" if len(skipped) == 1 else f"{len(skipped)} cases cannot"
    return (f"{source_dir}: {what} be used ({listed}); fix the files, or skip these cases "
            "(alseg create --skip-bad-cases)")


def discover(source_dir: Path, channel_order: list[str] | None = None) -> Discovery:
    """Usable cases (sorted by name) and the cases skipped with their reasons.

    Channels come in ``channel_order`` (``dataset.json``'s ``channels``: the model's input
    order) when given, else sorted by name (MSD layout: ``dataset.json``'s channel order).
    """
    if not source_dir.is_dir():
        raise AlsegError(f"{source_dir}: source folder not found")
    if (source_dir / MSD_IMAGES).is_dir():
        cases, skipped = _msd_cases(source_dir)
        layout = "msd"
    else:
        folders = [p for p in _visible(source_dir) if p.is_dir() and not is_nifti_path(p)]
        skipped = [SkippedCase(_stem(p), _not_a_file(p.name, p))
                   for p in _visible(source_dir) if p.is_dir() and is_nifti_path(p)]
        cases = []
        for folder in folders:
            case, problem = _folder_case(folder)
            if case is not None:
                cases.append(case)
            if problem is not None:
                skipped.append(problem)
        cases += _flat_cases([p for p in _visible(source_dir) if p.is_file() and is_nifti_path(p)])
        layout = "folders/flat"
    if not cases and not skipped:
        raise AlsegError(
            f"{source_dir}: no NIfTI cases found (expected one subfolder per case, files "
            "named <case>_<channel>.nii.gz, or imagesTr/ + labelsTr/ with a dataset.json)"
        )
    _check_unique_names(cases, source_dir)
    cases, odd = _same_channels(cases)
    skipped += odd
    if channel_order is not None and layout != "msd":
        cases = [_reorder_channels(case, channel_order, source_dir) for case in cases]
    return Discovery(tuple(sorted(cases, key=lambda case: case.name)),
                     tuple(sorted(skipped, key=lambda case: case.name)), layout)


def msd_channel_names(info: dict[str, Any], where: Path) -> list[str] | None:
    """``dataset.json``'s channel names in index order (``modality`` or ``channel_names``)."""
    raw = info.get("channel_names", info.get("modality"))
    if raw is None:
        return None
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        return list(raw)
    if not isinstance(raw, dict):
        raise AlsegError(f"{where}: \"modality\" / \"channel_names\" must map indices to names")
    try:
        indices = sorted(int(key) for key in raw)
    except ValueError:
        raise AlsegError(f"{where}: channel indices must be integers, got {sorted(raw)}") from None
    if indices != list(range(len(indices))):
        raise AlsegError(f"{where}: channel indices must run 0..{len(indices) - 1}, got {indices}")
    return [str(raw[key]) for key in sorted(raw, key=int)]


def msd_classes(info: dict[str, Any], where: Path) -> list[ClassInfo] | None:
    """``dataset.json``'s ``labels``: MSD ``{"0": "background", ...}`` or nnU-Net ``{"background": 0}``."""
    raw = info.get("labels")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise AlsegError(f"{where}: \"labels\" must map class ids to names")
    if all(isinstance(value, int) for value in raw.values()):
        names = {int(value): str(key) for key, value in raw.items()}
    else:
        try:
            names = {int(key): str(value) for key, value in raw.items()}
        except (TypeError, ValueError):
            raise AlsegError(f"{where}: \"labels\" must map class ids to names (region lists are "
                             "not supported)") from None
    if sorted(names) != list(range(len(names))):
        raise AlsegError(f"{where}: label ids must run 0..{len(names) - 1}, got {sorted(names)}")
    return [ClassInfo(class_id, names[class_id]) for class_id in sorted(names)]


def _msd_cases(source_dir: Path) -> tuple[list[CaseSource], list[SkippedCase]]:
    where = source_dir / DATASET_FILE
    info = read_dataset_info(source_dir)
    names = msd_channel_names(info, where)
    if names is None:
        raise AlsegError(f"{where}: an {MSD_IMAGES}/ layout needs a dataset.json naming its channels "
                         "(\"modality\": {\"0\": \"FLAIR\", ...} or \"channel_names\")")
    labels_dir = source_dir / MSD_LABELS
    labels = {}
    skipped: list[SkippedCase] = []
    if labels_dir.is_dir():
        for path in _visible(labels_dir):
            if is_nifti_path(path):
                labels[_stem(path)] = path
    cases: list[CaseSource] = []
    seen: set[str] = set()
    for folder, labelled in ((source_dir / MSD_IMAGES, True), (source_dir / MSD_TEST_IMAGES, False)):
        if not folder.is_dir():
            continue
        for name, channel_files, problem in _msd_groups(folder, len(names)):
            if problem is None and name in seen:
                problem = f"appears in both {MSD_IMAGES}/ and {MSD_TEST_IMAGES}/"
            seen.add(name)
            truth = labels.pop(name, None) if labelled else None
            if problem is None and truth is not None and not truth.is_file():
                problem = _not_a_file(f"{MSD_LABELS}/{truth.name}", truth)
            case = _msd_case(name, channel_files, names, truth) if problem is None else problem
            if isinstance(case, str):
                skipped.append(SkippedCase(name, case))
            else:
                cases.append(case)
    skipped += [SkippedCase(name, f"{MSD_LABELS}/{path.name} has no image in {MSD_IMAGES}/")
                for name, path in labels.items()]
    return cases, skipped


def _msd_groups(folder: Path, n_channels: int) -> Iterator[tuple[str, list[Path], str | None]]:
    """``(case, [files in channel order], problem)`` for each case in ``imagesTr/`` or ``imagesTs/``."""
    entries = [p for p in _visible(folder) if is_nifti_path(p)]
    split: dict[str, dict[int, Path]] = {}  # left empty unless every file names its channel
    for path in entries:
        match = _SPLIT_CHANNEL.match(_stem(path))
        if match is None:
            split = {}
            break
        split.setdefault(match["case"], {})[int(match["channel"])] = path
    if split and all(sorted(files) == list(range(n_channels)) for files in split.values()):
        for case, files in sorted(split.items()):
            paths = [files[c] for c in range(n_channels)]
            bad = [p for p in paths if not p.is_file()]
            yield case, paths, (_not_a_file(f"{folder.name}/{bad[0].name}", bad[0]) if bad else None)
        return
    for path in entries:
        problem = None if path.is_file() else _not_a_file(f"{folder.name}/{path.name}", path)
        yield _stem(path), [path], problem


def _msd_case(name: str, files: list[Path], channel_names: list[str],
              truth: Path | None) -> CaseSource | str:
    """The case, or why it cannot be used."""
    n = len(channel_names)
    if len(files) == n:  # one 3D file per channel (or one channel)
        if n == 1:
            shape = _header_shape(files[0])
            if isinstance(shape, str):
                return shape
            if len([d for d in shape[3:] if d != 1]):
                return f"{files[0].name}: shape {shape} has more channels than dataset.json's 1"
        return CaseSource(name, tuple(zip(channel_names, files)), truth)
    path = files[0]
    shape = _header_shape(path)
    if isinstance(shape, str):
        return shape
    extra = [d for d in shape[3:] if d != 1]
    if extra == [n]:
        channels_first = False
    elif len(shape) == 4 and shape[0] == n:
        channels_first = True
    else:
        return (f"{path.name}: shape {shape} has no axis of {n} channels "
                f"(dataset.json names {n}: {', '.join(channel_names)})")
    return CaseSource(name, tuple((channel, path) for channel in channel_names), truth,
                      channel_indices=tuple(range(n)), channels_first=channels_first)


def _not_a_file(shown: str, path: Path) -> str:
    """Why an entry named like a NIfTI file cannot be read as one."""
    if path.is_dir():
        return f"{shown} is a folder, not a NIfTI file"
    if path.is_symlink():
        return f"{shown} is a broken link"
    return f"{shown} is not a regular file"


def _header_shape(path: Path) -> tuple[int, ...] | str:
    try:
        return read_shape(path)
    except AlsegError as exc:
        return str(exc)


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


def _folder_case(folder: Path) -> tuple[CaseSource | None, SkippedCase | None]:
    """The case in one subfolder; a case with an unusable entry comes back as skipped."""
    entries = [p for p in _visible(folder) if is_nifti_path(p)]
    not_files = [p for p in entries if not p.is_file()]
    if not_files:
        return None, SkippedCase(folder.name, _not_a_file(not_files[0].name, not_files[0]))
    if not entries:
        return None, None  # not a case folder (docs, derivatives, ...)
    labels = [p for p in entries if is_label_file(p)]
    channels = [(_channel_name(_stem(p), folder.name), p) for p in entries if p not in labels]
    try:
        return _make_case(folder.name, channels, labels, where=folder), None
    except AlsegError as exc:
        return None, SkippedCase(folder.name, str(exc))


def _flat_cases(files: list[Path]) -> list[CaseSource]:
    labels = [p for p in files if is_label_file(p)]
    image_stems = [_stem(p) for p in files if p not in labels]
    label_cases: dict[str, list[Path]] = defaultdict(list)
    for path in labels:
        label_cases[_label_case_id(path, image_stems)].append(path)
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


def _label_case_id(path: Path, image_stems: list[str]) -> str:
    """The case a label file belongs to: its name less the label tokens (``case01_seg``); a file
    marked as labels by its header alone (``case01_manual``, ``case01``): its name, or its name
    less the last ``_part``, whichever begins an image's name."""
    stem = _stem(path)
    if not looks_like_label_name(path):
        for case in (stem, stem.rsplit("_", 1)[0]):
            if any(image.startswith(case + "_") for image in image_stems):
                return case
    tokens = [t for t in stem.split("_") if t.lower() not in LABEL_NAME_TOKENS]
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


def _same_channels(cases: list[CaseSource]) -> tuple[list[CaseSource], list[SkippedCase]]:
    """The model takes a fixed channel list: cases offering another one are skipped, named."""
    if not cases:
        return cases, []
    ordered = sorted(cases, key=lambda case: case.name)
    lists = [[channel for channel, _ in case.channels] for case in ordered]
    expected = max(lists, key=lists.count)  # the most common list; ties: the first case's
    first = ordered[lists.index(expected)]
    kept, skipped = [], []
    for case in ordered:
        found = [channel for channel, _ in case.channels]
        if found == expected:
            kept.append(case)
        else:
            skipped.append(SkippedCase(case.name, f"case '{case.name}' has channels {found} but "
                                       f"case '{first.name}' has {expected}; every case needs the "
                                       "same channels"))
    return kept, skipped


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
