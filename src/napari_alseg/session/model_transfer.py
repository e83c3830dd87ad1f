"""Models in and out of projects: export a trained model with what it was trained on, and start
a new project from one.

An exported model (``alseg model export``) is a checkpoint under its own format name
(:func:`napari_alseg.model.save_model_file`) whose SHA-256 also covers :class:`ModelInfo`: the
class and channel names, the granularity (2D or 3D network), the training plan and the
project it came from. ``alseg create --init-model FILE`` (:func:`create_from_model`) checks that
the new cases fit it (dimensionality, channels, classes) before anything is written, then
makes its weights the project's first checkpoint, so suggestions use it at once and the
first retrain warm-starts from it, and makes its plan the project's plan.

torch is imported only inside the functions, like every core module outside ``model``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..domain import CASE
from ..errors import AlsegError
from ..plan import MIN_PATCH, Fingerprint, TrainingPlan
from .planning import PlanKeeper

if TYPE_CHECKING:
    from ..model import ModelSpec, SegmentationNet
    from ..store import Project
    from ..store.ingest import ProjectPlan

INITIAL_MODEL_SETTING = "initial_model"  # meta: JSON record of the model a project started from
FIRST_VERSION = "v0001"
MODEL_SUFFIX = ".pt"
# Names that carry no meaning ("image", "0000", "class_3", "channel_1"): not compared.
_GENERIC_NAME = re.compile(r"^(image|channel|ch|class|label|modality)?[ _-]?\d*$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model was trained on, stored (and checksummed) inside the file.

    ``class_names``: index = class id, background first. ``channel_names``: the network's
    input order. ``granularity``: ``"case"`` (3D net) or ``"slice"`` (2D net). ``plan``: the
    :class:`~napari_alseg.plan.TrainingPlan` JSON it was trained with. ``dataset`` /
    ``model_version``: where it came from; ``exported_at``: ISO 8601 UTC.
    """

    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    granularity: str
    plan: str
    dataset: str
    model_version: str
    exported_at: str
    software: str

    @classmethod
    def from_about(cls, about: dict[str, Any], where: str) -> ModelInfo:
        missing = [f.name for f in fields(cls) if f.name not in about]
        if missing:
            raise AlsegError(f"{where}: the model file does not say its {', '.join(missing)}; "
                             "export it again from its project")
        values = {f.name: about[f.name] for f in fields(cls)}
        values["class_names"] = tuple(str(name) for name in values["class_names"])
        values["channel_names"] = tuple(str(name) for name in values["channel_names"])
        return cls(**values)


@dataclass(frozen=True)
class ExportedModel:
    """A model file read back and verified: the rebuilt net (CPU, eval mode) and its description.

    ``metrics``: what the model was validated with in its own project; ``sha256``: of the
    file's bytes, recorded by the project that starts from it.
    """

    path: Path
    net: SegmentationNet
    spec: ModelSpec
    metrics: dict[str, Any]
    info: ModelInfo
    sha256: str

    def training_plan(self) -> TrainingPlan:
        plan = TrainingPlan.from_json(self.info.plan)
        if plan.spatial_dims != self.spec.spatial_dims:
            raise AlsegError(f"{self.path.name}: its plan is for {plan.spatial_dims}D items but its network "
                             f"is {self.spec.spatial_dims}D; export it again from its project")
        return plan


# ---------------------------------------------------------------------------- out


def export_model(project: Project, plan: TrainingPlan, path: str | os.PathLike) -> Path:
    """Write the project's current model, with its description and training ``plan``, to
    ``path`` (a folder: a file ``<dataset>-<version>.pt`` in it); atomic, like every checkpoint."""
    from ..model import load_checkpoint, save_model_file

    checkpoints = project.checkpoints()
    if not checkpoints:
        raise AlsegError(f"{project.folder}: no model yet; retrain once before exporting it")
    latest = checkpoints[-1]
    net, spec, metrics = load_checkpoint(latest.path)
    info = ModelInfo(class_names=project.class_names, channel_names=tuple(project.cases[0].channel_names),
                     granularity=project.granularity, plan=plan.to_json(),
                     dataset=project.dataset_name, model_version=latest.model_version,
                     exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     software=f"napari-alseg {__version__}")
    path = Path(path)
    if path.is_dir():
        path = path / f"{_file_safe(project.dataset_name)}-{latest.model_version}{MODEL_SUFFIX}"
    return save_model_file(path, net, spec, metrics, asdict(info))


def read_model_file(path: str | os.PathLike) -> ExportedModel:
    """Load and verify (format, checksum, description) a file written by :func:`export_model`."""
    from ..model import load_model_file

    path = Path(path)
    net, spec, metrics, about = load_model_file(path)
    info = ModelInfo.from_about(about, path.name)
    return ExportedModel(path, net, spec, metrics, info, _file_sha256(path))


# ---------------------------------------------------------------------------- in


def check_fits(model: ExportedModel, plan: ProjectPlan) -> None:
    """Refuse, in one line, cases the model cannot take: another dimensionality, channel count
    or class count, or channel / class names that differ where both sides name them."""
    where = model.path.name
    dims = 3 if plan.granularity == CASE else 2
    if model.spec.spatial_dims != dims:
        raise AlsegError(f"{where}: a {model.spec.spatial_dims}D model ({model.info.granularity} granularity), "
                         f"but these cases make a {plan.granularity}-granularity project ({dims}D); set "
                         f"\"granularity\": \"{model.info.granularity}\" in dataset.json, or start without "
                         "--init-model")
    channels = tuple(name for name, _path in plan.cases[0].source.channels)
    _check_names("channels", where, model.info.channel_names, channels, model.spec.in_channels,
                 "name them alike (dataset.json \"channels\" or \"modality\")")
    classes = tuple(info.name for info in plan.classes)
    _check_names("classes", where, model.info.class_names, classes, model.spec.n_classes,
                 "name them alike (classes.json, or dataset.json \"labels\")", skip_first=True)


def create_from_model(folder: str | os.PathLike, source_dir: str | os.PathLike, *, init_model: str | os.PathLike,
                   device: str | None = None, **create_options: Any) -> Project:
    """:meth:`Project.create <napari_alseg.store.Project.create>` starting from an exported model.

    The model file is verified and the cases checked against it before anything is written;
    if installing the model then fails (a full disk), what was created is removed again.
    ``device`` decides the plan's device kind (default: CUDA when available).
    """
    from ..store import Project

    model = read_model_file(init_model)
    folder = Path(folder).absolute()
    existed = set(folder.iterdir()) if folder.is_dir() else None
    project = Project.create(folder, source_dir, before_writing=lambda plan: check_fits(model, plan),
                             **create_options)
    try:
        install_model(project, model, device=device)
    except BaseException:
        project.close()
        _remove_created(folder, existed)
        raise
    return project


def install_model(project: Project, model: ExportedModel, *, device: str | None = None) -> TrainingPlan:
    """Make ``model`` the (empty) project's first checkpoint and its plan the project's; the
    provenance goes under :data:`INITIAL_MODEL_SETTING`. Returns the plan kept."""
    from ..model import save_checkpoint

    if project.checkpoints():
        raise AlsegError(f"{project.folder}: already has a model; an initial model is for a new project")
    planning = PlanKeeper(project, lambda: device)
    here = planning.replan()
    plan = planning.set_plan(**imported_plan_fields(model.training_plan(), here, model.spec, planning.fingerprint()))
    path = save_checkpoint(project.models_dir / f"{FIRST_VERSION}.pt", model.net, model.spec)
    # No metrics of its own yet: the source project's Dice says nothing about these cases.
    project.record_checkpoint(FIRST_VERSION, path)
    record = {"file": str(model.path.absolute()), "sha256": model.sha256, "dataset": model.info.dataset,
              "model_version": model.info.model_version, "exported_at": model.info.exported_at,
              "metrics": model.metrics,
              "working_spacing_mm": list(TrainingPlan.from_json(model.info.plan).working_spacing_mm)}
    project.store_setting(INITIAL_MODEL_SETTING, json.dumps(record))
    return plan


def imported_plan_fields(exported: TrainingPlan, here: TrainingPlan, spec: ModelSpec,
                         dataset: Fingerprint) -> dict[str, Any]:
    """The plan fields a project starting from an exported model takes, over its own plan ``here``.

    The network's widths, working-grid zoom and guidance (whether it reads clicks) are the
    model's (its weights were trained with them); the working spacing follows from that zoom
    on these cases; the patch (native voxels) is the model's, no larger than these items;
    batch and round budget are the model's when it was planned for the same device kind,
    else this device's.
    """
    zoom = spec.zoom or (1.0,) * spec.spatial_dims
    same_device = exported.device == here.device
    return {
        "features": tuple(spec.features),
        "zoom": tuple(zoom),
        "guidance": spec.guidance,
        "working_spacing_mm": tuple(round(native / factor, 4)
                                    for native, factor in zip(dataset.median_spacing_mm, zoom)),
        "patch_size": tuple(min(patch, max(size, MIN_PATCH))
                            for patch, size in zip(exported.patch_size, dataset.median_shape)),
        "batch_size": exported.batch_size if same_device else here.batch_size,
        "seconds": exported.seconds if same_device else here.seconds,
    }


def initial_model_lines(project: Project) -> list[str]:
    """For ``alseg status`` / ``create``: where the project's first model came from (or nothing)."""
    stored = project.setting(INITIAL_MODEL_SETTING)
    if stored is None:
        return []
    record = json.loads(stored)
    dice = record.get("metrics", {}).get("val_dice")
    there = f", validation Dice there {dice:.3f}" if isinstance(dice, (int, float)) else ""
    spacing = " x ".join(f"{value:g}" for value in record.get("working_spacing_mm", []))
    return [f"{FIRST_VERSION} is {record['model_version']} of {record['dataset']} "
            f"(exported {record['exported_at']}{there}; worked at {spacing} mm there), "
            f"from {record['file']}"]


# ---------------------------------------------------------------------------- helpers


def _check_names(what: str, where: str, model_names: Sequence[str], names: Sequence[str], expected: int,
                 remedy: str, *, skip_first: bool = False) -> None:
    """Count first, then names position by position (case-insensitively; background and
    generic names such as ``class_2`` or ``image`` are not compared)."""
    listed = f"the model's {what} are {', '.join(model_names)}; these cases' are {', '.join(names)}"
    if len(names) != expected:
        raise AlsegError(f"{where}: the model has {expected} {what}, these cases {len(names)}: {listed}")
    start = 1 if skip_first else 0
    differ = [index for index in range(start, len(names))
              if index < len(model_names) and not _generic(model_names[index]) and not _generic(names[index])
              and model_names[index].casefold() != names[index].casefold()]
    if differ:
        order = (" (the same names in another order)"
                 if sorted(n.casefold() for n in model_names[start:]) == sorted(n.casefold() for n in names[start:])
                 else "")
        raise AlsegError(f"{where}: {what} differ{order}: {listed}; {remedy}, or start without --init-model")


def _generic(name: str) -> bool:
    return bool(_GENERIC_NAME.match(name.strip()))


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_created(folder: Path, existed: set[Path] | None) -> None:
    """Undo a creation: the folder if it was made, else only the entries that were not there."""
    if existed is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for entry in set(folder.iterdir()) - existed:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
