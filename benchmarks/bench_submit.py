"""Submit latency of the project store: what the annotator waits for after "Submit".

A submit is durable before it returns (label file written, fsynced, renamed; database
commit fsynced), so its latency is bounded by the disk. Targets: p95 < 50 ms for a
256 x 256 slice merged into a 40-slice case, p95 < 300 ms for a 128^3 volume.

    python benchmarks/bench_submit.py [--repeats 40] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_alseg.nifti import save_volume
from napari_alseg.store import Project

N_CLASSES = 4
SLICE_CASE_SHAPE = (40, 256, 256)  # (k, j, i)
VOLUME_CASE_SHAPE = (128, 128, 128)


def blob_labels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Label-like content (a few nested ellipses), so gzip sees realistic runs, not noise."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    for class_id in range(1, N_CLASSES):
        centre = rng.uniform(-0.3, 0.3, len(shape))
        radius = rng.uniform(0.2, 0.6) / class_id
        inside = sum(((g - c) / radius) ** 2 for g, c in zip(grids, centre)) < 1
        labels[inside] = class_id
    return labels


def make_source(root: Path) -> Path:
    for name, shape in (("slices", SLICE_CASE_SHAPE), ("volume", VOLUME_CASE_SHAPE)):
        (root / name).mkdir(parents=True)
        save_volume(root / name / f"{name}_t1.nii.gz", np.zeros(shape, np.float32), np.eye(4))
    return root


def timed_ms(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1e3


def report(name: str, times_ms: list[float], target_ms: float) -> None:
    median, p95 = np.percentile(times_ms, [50, 95])
    verdict = "ok" if p95 < target_ms else "MISSED"
    print(f"{name:<34} n={len(times_ms):3d}  median {median:6.1f} ms  p95 {p95:6.1f} ms  "
          f"max {max(times_ms):6.1f} ms  (target p95 < {target_ms:.0f} ms: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="submits per kind (default 40)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to build the project (default: a temp folder; its disk is measured)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as temp:
        root = Path(temp)
        with Project.create(root / "project", make_source(root / "source"), annotator="bench",
                            class_names=[f"c{i}" for i in range(N_CLASSES)]) as project:
            project.submit("slices", blob_labels(SLICE_CASE_SHAPE, 0), kind="manual",
                           annotator="bench", seconds_active=1.0)  # slices merge into a full volume
            slice_ms = [timed_ms(lambda s=seed: project.submit(
                "slices", blob_labels(SLICE_CASE_SHAPE[1:], s), kind="manual",
                slice_index=s % SLICE_CASE_SHAPE[0], annotator="bench", seconds_active=1.0))
                for seed in range(args.repeats)]
            volumes = [blob_labels(VOLUME_CASE_SHAPE, seed) for seed in range(min(args.repeats, 8))]
            volume_ms = [timed_ms(lambda v=volumes[i % len(volumes)]: project.submit(
                "volume", v, kind="manual", annotator="bench", seconds_active=1.0))
                for i in range(args.repeats)]
        with Project.open(root / "project") as reopened:  # what a fresh reader pays
            read_ms = timed_ms(lambda: reopened.current_labels("volume"))
    print(f"project store submit latency ({args.repeats} submits each, durable on return)")
    report("slice 256x256 into 40x256x256", slice_ms, 50)
    report("volume 128^3", volume_ms, 300)
    print(f"{'cold read of a 128^3 version':<34} {read_ms:.1f} ms")


if __name__ == "__main__":
    main()
