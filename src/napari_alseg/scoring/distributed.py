"""Pool scoring spread over Dask workers: one pure task per case (docs/DESIGN.md §5.11).

Scoring is embarrassingly parallel over cases, so each task gets only paths and numbers
(the checkpoint, the case's channel files, the slices to score), loads what it needs
and returns plain rows: tasks pickle cheaply and run the same in-process, on a local
cluster of processes, or on a remote cluster that sees the same files. Every task runs
:func:`napari_alseg.scoring.score_pool` (MC dropout: entropy, margin, mc_top, mc_sum, ...)
without partial labels, so partially labelled slices score as if unlabelled.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..domain import CASE, NEED_MC, NEED_MODEL, SLICE
from ..errors import AlsegError
from ..nifti import load_volume
from ..plan import inference_patch, stored_plan
from ..store import DB_NAME, Project, discover_cases
from ..store.export import csv_cell
from ..domain import QueryItem

if TYPE_CHECKING:
    from dask.distributed import Client

MC_SAMPLES = 20


@dataclass(frozen=True)
class CaseTask:
    """What one worker needs: ``slices`` None = the whole case (3D nets) or every slice (2D)."""

    checkpoint: str
    case: str
    channel_paths: tuple[str, ...]
    slices: tuple[int, ...] | None = None
    channel_indices: tuple[int | None, ...] = ()  # per channel: its index in a 4D file (MSD)
    channels_first: bool = False
    patch_size: tuple[int, ...] | None = None  # sliding windows, as the project's session predicts


ScoreRow = tuple[str, "int | None", float, dict[str, float]]


def score_case(task: CaseTask, mc_samples: int = MC_SAMPLES, seed: int = 0) -> list[ScoreRow]:
    """``(case, slice or None, score, terms)`` of one case's items; pure: same task, same rows."""
    from ..model import load_checkpoint
    from .request import ScoreRequest
    from .run import score_pool

    net, spec, _metrics = load_checkpoint(task.checkpoint)
    indices = task.channel_indices or (None,) * len(task.channel_paths)
    image = np.stack([load_volume(path, as_label=False, channel=index,
                                  channels_first=task.channels_first and index is not None).data
                      for path, index in zip(task.channel_paths, indices)]).astype(np.float32)
    if image.shape[0] != spec.in_channels:
        raise AlsegError(f"case {task.case!r}: {image.shape[0]} channels, the model expects {spec.in_channels}")
    granularity = CASE if spec.spatial_dims == 3 else SLICE
    skipped = set()
    if granularity == SLICE and task.slices is not None:
        skipped = {QueryItem(task.case, n) for n in range(image.shape[1]) if n not in task.slices}
    pool = score_pool(ScoreRequest(net, spec, {task.case: image}, {task.case: None}, granularity=granularity,
                                   n_classes=spec.n_classes, needs={NEED_MODEL, NEED_MC}, mc_samples=mc_samples,
                                   validation=skipped, seed=seed, patch_size=task.patch_size))
    return [(item.case, item.slice_index, item.score, dict(item.terms)) for item in pool.to_scored_items()]


def project_tasks(folder: str | os.PathLike) -> list[CaseTask]:
    """A project's pool with its current model: non-validation items not fully labelled."""
    with Project.open(folder) as project:
        checkpoints = project.checkpoints()
        if not checkpoints:
            raise AlsegError(f"{project.folder}: no model yet; retrain once before scoring")
        held_out = set(project.validation_items())
        tasks = []
        for record in project.cases:
            if (record.name, None) in held_out:
                continue
            snapshot = project.current_labels(record.name)
            done = (np.zeros(record.n_slices, bool) if snapshot is None
                    else np.asarray(snapshot.labelled.all(axis=(1, 2))))
            slices = tuple(n for n in range(record.n_slices) if not done[n] and (record.name, n) not in held_out)
            if not slices:
                continue
            tasks.append(CaseTask(str(checkpoints[-1].path), record.name,
                                  tuple(str(p) for p in record.channel_paths),
                                  None if project.granularity == CASE else slices,
                                  record.channel_indices, record.channels_first, _patch(project)))
        return tasks


def folder_tasks(folder: str | os.PathLike, model_project: str | os.PathLike) -> list[CaseTask]:
    """Every case of a source folder, with the current model of ``model_project``."""
    with Project.open(model_project) as project:
        checkpoints = project.checkpoints()
        if not checkpoints:
            raise AlsegError(f"{project.folder}: no model yet; retrain once before scoring")
        checkpoint = str(checkpoints[-1].path)
        channel_order = list(project.cases[0].channel_names)
        patch = _patch(project)
    return [CaseTask(checkpoint, case.name, tuple(str(path) for _name, path in case.channels),
                     channel_indices=case.channel_indices, channels_first=case.channels_first, patch_size=patch)
            for case in discover_cases(Path(folder), channel_order)]


def _patch(project: Project) -> tuple[int, ...] | None:
    """The sliding-window size the project's own session predicts with."""
    return inference_patch(stored_plan(project))


def tasks_for(target: str | os.PathLike, model_project: str | os.PathLike | None) -> list[CaseTask]:
    """A project folder scores its own pool; a folder of cases needs ``model_project``."""
    if (Path(target) / DB_NAME).is_file():
        return project_tasks(target)
    if model_project is None:
        raise AlsegError(f"{target}: not a project; give --model PROJECT to say whose model scores these cases")
    return folder_tasks(target, model_project)


def score_tasks(tasks: Sequence[CaseTask], *, workers: int | None = None,
                address: str | None = None) -> list[ScoreRow]:
    """Run the tasks in-process (default), on a local cluster of ``workers`` processes
    (one thread each, ``OMP_NUM_THREADS=1``), or on the Dask scheduler at ``address``."""
    if workers is None and address is None:
        return [row for task in tasks for row in score_case(task)]
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise AlsegError("scoring on Dask needs dask[distributed]: pip install 'napari-alseg[dask]'") from None
    if address is not None:
        with Client(address) as client:
            return _gather(client, tasks)
    if workers is None or workers < 1:
        raise AlsegError(f"--workers must be at least 1, got {workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        return _gather(client, tasks)


def _gather(client: Client, tasks: Sequence[CaseTask]) -> list[ScoreRow]:
    futures = client.map(score_case, list(tasks), pure=True)
    return [row for rows in client.gather(futures) for row in rows]


def write_ranked_csv(rows: Sequence[ScoreRow], path: str | os.PathLike) -> Path:
    """Rows best first (highest score), columns case, slice, score, then every term by name;
    a case name a spreadsheet would run as a formula gets a leading ``'`` (:func:`csv_cell`)."""
    ranked = sorted(rows, key=lambda row: (-row[2], row[0], -1 if row[1] is None else row[1]))
    terms = sorted({name for row in ranked for name in row[3]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "slice", "score", *terms])
        for case, slice_index, score, values in ranked:
            writer.writerow([csv_cell(case), "" if slice_index is None else slice_index, f"{score:.9g}",
                             *(f"{values[name]:.9g}" if name in values else "" for name in terms)])
    return path
