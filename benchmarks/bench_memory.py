"""Peak memory of pool scoring on real-size volumes, through the real Session path.

Two scenarios, each scored in its own process so each peak is its own (``ru_maxrss`` only
grows), after another process wrote its cases:

* **brats**: ``--cases`` (default 20) BraTS-size cases, 4 channels x 240 x 240 x 155 voxels
  (1 mm), 4 classes; target: peak below 4 GB;
* **ct**: one CT-size case, 1 channel x 512 x 512 x 300 voxels (0.8 x 0.8 x 1.5 mm), 2 classes;
* **reader**: the napari reader (``read_nifti``) on highly compressible files, each in its own
  process: a zero-filled and a constant (every voxel 1000) 512 x 512 x 300 float32 ``.nii.gz``
  (300 MiB declared by a file of about 1 MB), within the reader's budget
  (``NAPARI_ALSEG_READER_BUDGET_GB``, default 4). The constant one is all foreground, the
  worst case for the display range's percentiles. Prints the budget's estimate from the header
  and the reader's peak RSS above the process's after its imports.

Each writes synthetic int16 NIfTI cases (a bright ellipsoid in noise) to a temp folder,
creates a project (``Project.create`` reads and checks every file), gives it an untrained
network built from the project's training plan (weights do not change memory), and calls
``Session.rescore(for_display=False)`` with the ``entropy`` strategy: one sliding-window
softmax pass per case with the plan's patch (``needs = {"model"}``, no MC samples). Images
come through the session's bounded LRU cache (``ALSEG_IMAGE_CACHE_MB``; default 2 GiB or a
quarter of RAM), so the expected peak is about the cache's budget plus one case and its
prediction.

Prints, per scoring scenario: sizes, the plan, seconds per phase and peak RSS after each phase (MB).
Slow on a small CPU (minutes per BraTS case on 2 cores): use ``--cases`` for a shorter run.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py [--cases N] [--only brats|ct|reader] [--cache-mb MB]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BRATS_SHAPE = (240, 240, 155)  # (i, j, k) voxels, as BraTS ships them
BRATS_SPACING = (1.0, 1.0, 1.0)
BRATS_CHANNELS = ("flair", "t1", "t1ce", "t2")
BRATS_CLASSES = ("background", "necrosis", "edema", "enhancing")
CT_SHAPE = (512, 512, 300)
CT_SPACING = (0.8, 0.8, 1.5)
CT_CLASSES = ("background", "organ")
STRATEGY = "entropy"


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def write_cases(folder: Path, n_cases: int, shape: tuple[int, int, int], spacing: tuple[float, ...],
                channels: tuple[str, ...], classes: tuple[str, ...]) -> None:
    """``folder/case_NNN/case_NNN_<channel>.nii`` (uncompressed int16) + classes.json, dataset.json."""
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    grid = np.ogrid[tuple(slice(0, size) for size in shape)]
    inside = sum(((axis - size / 2) / (size / 4)) ** 2 for axis, size in zip(grid, shape)) < 1
    rng = np.random.default_rng(0)
    for index in range(n_cases):
        case_dir = folder / f"case_{index:03d}"
        case_dir.mkdir(parents=True)
        for channel in channels:
            data = rng.normal(300, 40, size=shape).astype(np.int16)
            data[inside] += 500
            nib.save(nib.Nifti1Image(data, affine), case_dir / f"{case_dir.name}_{channel}.nii")
            del data
    (folder / "classes.json").write_text(json.dumps({str(i): {"name": name} for i, name in enumerate(classes)}))
    (folder / "dataset.json").write_text(json.dumps({"name": folder.name, "granularity": "case",
                                                     "channels": list(channels)}))


READER_SHAPE = (512, 512, 300)  # (i, j, k), float32 zeros: ~1000:1 under gzip


READER_FILES = {"zeros.nii.gz": 0.0, "constant.nii.gz": 1000.0}  # file name: every voxel's value


def write_reader_files(folder: Path) -> None:
    """READER_FILES in ``folder``: READER_SHAPE float32 volumes of one value (0.8 x 0.8 x 1.5 mm)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    for name, value in READER_FILES.items():
        data = np.full(READER_SHAPE, value, np.float32)
        nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 1.5, 1.0])), str(folder / name))
        del data


def run_reader(path: Path) -> None:
    """Open ``path`` with the napari reader in this process; print the peak."""
    from napari_alseg._reader import read_nifti
    from napari_alseg.nifti import memory_needed, reader_budget

    needed, declaration = memory_needed(path)
    before = peak_rss_mb()
    started = time.perf_counter()
    [(data, kwargs, kind)] = read_nifti(str(path))
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    print(f"[reader] {path.name}: {path.stat().st_size / 1e3:.0f} KB file, header declares {declaration}; "
          f"budget {reader_budget() / 2**30:g} GiB, the header's estimate {needed / 1e6:.0f} MB", flush=True)
    print(f"[reader] RESULT: read one {kind} layer of {data.nbytes / 1e6:.0f} MB in {seconds:.1f} s; "
          f"peak RSS {peak:.0f} MB ({peak - before:.0f} MB above the {before:.0f} MB after imports); "
          f"contrast limits {kwargs['contrast_limits']}", flush=True)


def scenario(name: str, n_cases: int) -> tuple[int, tuple[int, ...], tuple[float, ...], tuple[str, ...],
                                                tuple[str, ...]]:
    """``(cases, shape, spacing, channels, classes)`` of a scenario (CT: always one case)."""
    if name == "brats":
        return n_cases, BRATS_SHAPE, BRATS_SPACING, BRATS_CHANNELS, BRATS_CLASSES
    return 1, CT_SHAPE, CT_SPACING, ("ct",), CT_CLASSES


def run_scenario(name: str, n_cases: int, root: Path) -> None:
    """Score the cases under ``root/source`` in this process: create, give a model, score; print figures."""
    import torch

    from napari_alseg.model import save_checkpoint
    from napari_alseg.run_control import RunControl, RunProgress
    from napari_alseg.session import Session
    from napari_alseg.store import Project

    n_cases, shape, _spacing, channels, classes = scenario(name, n_cases)
    case_mb = len(channels) * np.prod(shape) * 4 / 1e6
    print(f"[{name}] {n_cases} case(s) of {len(channels)} x {' x '.join(map(str, shape))} voxels "
          f"({case_mb:.0f} MB float32 each), {len(classes)} classes; strategy {STRATEGY} (needs: model)",
          flush=True)
    started = time.perf_counter()
    project = Project.create(root / "project", root / "source", validation_fraction=0.0)
    print(f"[{name}] created the project in {time.perf_counter() - started:.0f} s; "
          f"peak RSS {peak_rss_mb():.0f} MB", flush=True)
    with Session(project, annotator="bench", strategy=STRATEGY, device="cpu") as session:
        plan = session.planning.training_plan()
        print(f"[{name}] plan: " + "; ".join(plan.describe()), flush=True)
        torch.manual_seed(0)
        net = session.learner.model_spec().build()
        path = save_checkpoint(project.models_dir / "v0001.pt", net, net.spec)
        project.record_checkpoint("v0001", path)
        print(f"[{name}] image cache budget {session.view.images.budget_bytes / 1e6:.0f} MB", flush=True)

        def progress(update: RunProgress) -> None:
            print(f"[{name}]   scored {update.done}/{update.total} cases, {time.perf_counter() - started:.0f} s, "
                  f"peak RSS {peak_rss_mb():.0f} MB, cache {session.view.images.nbytes / 1e6:.0f} MB "
                  f"({len(session.view.images)} cases)", flush=True)

        started = time.perf_counter()
        pool = session.rescore(control=RunControl(progress), for_display=False)
        seconds = time.perf_counter() - started
    print(f"[{name}] RESULT: scored {len(pool.terms)} cases in {seconds:.0f} s "
          f"({seconds / max(1, len(pool.terms)):.0f} s/case); peak RSS {peak_rss_mb():.0f} MB", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20, help="BraTS-size cases to score (default: %(default)s)")
    parser.add_argument("--only", choices=("brats", "ct", "reader"), help="run one scenario")
    parser.add_argument("--cache-mb", type=float, help="image cache budget in MiB (sets ALSEG_IMAGE_CACHE_MB)")
    parser.add_argument("--step", nargs=3, metavar=("ACTION", "NAME", "ROOT"), help=argparse.SUPPRESS)  # children
    args = parser.parse_args(argv)
    if args.step:
        action, name, root = args.step
        if name == "reader":
            if action == "write":
                write_reader_files(Path(root) / "source")
            else:
                for file_name in READER_FILES:  # each in its own process: ru_maxrss only grows
                    command = [sys.executable, __file__, "--step", "read", str(Path(root) / "source" / file_name),
                               root]
                    if subprocess.run(command).returncode:
                        return 1
            return 0
        if action == "read":
            run_reader(Path(name))
            return 0
        if action == "write":
            n_cases, shape, spacing, channels, classes = scenario(name, args.cases)
            started = time.perf_counter()
            write_cases(Path(root) / "source", n_cases, shape, spacing, channels, classes)
            print(f"[{name}] wrote the cases in {time.perf_counter() - started:.0f} s (another process)", flush=True)
        else:
            run_scenario(name, args.cases, Path(root))
        return 0
    env = dict(os.environ)
    if args.cache_mb is not None:
        env["ALSEG_IMAGE_CACHE_MB"] = str(args.cache_mb)
    for name in [args.only] if args.only else ["brats", "ct", "reader"]:
        with tempfile.TemporaryDirectory(prefix=f"bench-memory-{name}-") as root:
            for action in ("write", "score"):
                command = [sys.executable, __file__, "--step", action, name, root, "--cases", str(args.cases)]
                result = subprocess.run(command, env=env)
                if result.returncode:
                    return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
