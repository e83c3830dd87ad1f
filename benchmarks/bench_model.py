"""Model benchmark: fine-tuning round time, MC-dropout scoring throughput and agreement, peak memory.

Not a test: prints figures. Data shaped like our sample sets, synthetic by default:
2D brain stack (37 slices of 180x180, 1 channel, 11 classes) and 3D tumour cases
(12 cases of 80x96x80, 3 channels, 4 classes). ``--data DIR`` uses the generated
sample sets instead (``DIR/brain-stack``, ``DIR/tumour-cases``).

The network and round are the ones the product's training plan gives these items
(``plan.make_plan``: widths, working grid, batch, patch); ``--native-grid`` runs the
plan-less default network on the native grid instead.

    .venv/bin/python benchmarks/bench_model.py [--data DIR] [--samples 20] [--device cpu] [--native-grid]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from napari_alseg.model import (
    McResult,
    ModelSpec,
    TrainConfig,
    TrainingItem,
    fine_tune,
    mc_dropout,
    mc_dropout_full_passes,
)
from napari_alseg.model.device import pick_device
from napari_alseg.nifti import load_volume
from napari_alseg.scoring import region_terms

TUMOUR_CHANNELS = ("t1c", "t2", "flair")


def synthetic_brain_stack(rng: np.random.Generator, slices: int = 37, size: int = 180, n_classes: int = 11):
    """Slices of a bright head ellipse holding ``n_classes - 1`` jittered elliptic structures."""
    rows, cols = np.mgrid[:size, :size] / size - 0.5
    centres = rng.uniform(-0.22, 0.22, (n_classes - 1, 2))
    images, labels = [], []
    for _ in range(slices):
        image = np.where(rows**2 / 0.16 + cols**2 / 0.12 < 1, 0.5, 0.0) + rng.normal(0, 0.05, (size, size))
        label = np.zeros((size, size), np.int64)
        for structure, (row, col) in enumerate(centres + rng.normal(0, 0.01, centres.shape), start=1):
            inside = ((rows - row) / 0.05) ** 2 + ((cols - col) / 0.04) ** 2 < 1
            label[inside] = structure
            image[inside] += 0.1 * structure
        images.append(image[None].astype(np.float32))
        labels.append(label)
    return images, labels, n_classes


def synthetic_tumour_cases(rng: np.random.Generator, cases: int = 12, shape=(80, 96, 80)):
    """Cases of a brain ellipsoid with a nested three-label tumour at a random place."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size) for size in shape], indexing="ij"))
    brain = (grid**2).sum(axis=0) < 0.8
    images, labels = [], []
    for _ in range(cases):
        centre = rng.uniform(-0.35, 0.35, 3)[:, None, None, None]
        distance = np.sqrt(((grid - centre) ** 2).sum(axis=0))
        label = np.select([distance < 0.08, distance < 0.16, distance < 0.26], [3, 1, 2], 0) * brain
        contrast = rng.uniform(0.5, 1.5, (3, 4))
        image = contrast[:, label] * brain + rng.normal(0, 0.05, (3, *shape))
        images.append(image.astype(np.float32))
        labels.append(label.astype(np.int64))
    return images, labels, 4


def load_brain_stack(folder: Path):
    image = load_volume(folder / "stack" / "stack_t1.nii.gz").data
    label = load_volume(folder / "stack" / "stack_seg.nii.gz", as_label=True).data.astype(np.int64)
    return [slice_[None] for slice_ in image], list(label), int(label.max()) + 1


def load_tumour_cases(folder: Path):
    images, labels = [], []
    for case in sorted(path for path in folder.iterdir() if path.is_dir()):
        channels = [load_volume(case / f"{case.name}_{channel}.nii.gz").data for channel in TUMOUR_CHANNELS]
        images.append(np.stack(channels))
        labels.append(load_volume(case / f"{case.name}_seg.nii.gz", as_label=True).data.astype(np.int64))
    return images, labels, max(int(label.max()) for label in labels) + 1


def time_round(spec: ModelSpec, images, labels, config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    """One default fine-tuning round from a fresh net; returns the trained net and figures."""
    torch.manual_seed(0)
    net = spec.build()
    items = [TrainingItem(image, label, np.ones(label.shape, bool)) for image, label in zip(images, labels)]
    result = fine_tune(net, items, config)
    net.load_state_dict(result.state_dict)
    return net, {
        "seconds": result.metrics["seconds"],
        "steps": result.steps_done,
        "seconds_per_step": result.metrics["seconds"] / result.steps_done,
        "batch_size": result.metrics["batch_size"],
        "patch_size": tuple(result.metrics["patch_size"]),
        "initial_loss": result.metrics["initial_loss"],
        "final_loss": result.metrics["final_loss"],
        "best_val_loss": result.metrics["best_val_loss"],
    }


def time_mc(net, images, samples: int, device: torch.device, patch_size=None) -> dict:
    """Cases per minute of the head-only sampler and of ``samples`` full passes, and their score gap.

    The two run alternately, case by case, so that load from other processes on a
    shared machine falls on both alike. They draw the same dropout masks, so their
    scores differ by float rounding only (:func:`score_differences`, largest over cases).
    """
    mc_dropout(net, images[0], samples=2, device=device, patch_size=patch_size)
    head_only = full = 0.0
    differences: dict[str, float] = {}
    for image in images:
        started = time.perf_counter()
        sampled = mc_dropout(net, image, samples=samples, device=device, patch_size=patch_size)
        head_only += time.perf_counter() - started
        started = time.perf_counter()
        reference = mc_dropout_full_passes(net, image, samples=samples, device=device, patch_size=patch_size)
        full += time.perf_counter() - started
        for name, difference in score_differences(sampled, reference).items():
            differences[name] = max(differences.get(name, 0.0), difference)
    return {
        "head_only_per_min": 60 * len(images) / head_only,
        "full_passes_per_min": 60 * len(images) / full,
        "speedup": full / head_only,
        "differences": differences,
    }


def score_differences(sampled: McResult, reference: McResult) -> dict[str, float]:
    """Largest absolute gaps of the mean-probability and variance maps; relative gaps of the
    scores made from them (``scoring.region_terms``: mc_top, mc_sum, entropy_mc)."""
    terms, reference_terms = (
        region_terms(result.mean_probs, result.mean_probs, result.variance) for result in (sampled, reference)
    )
    return {
        "mean_probs": float(np.abs(sampled.mean_probs - reference.mean_probs).max()),
        "variance": float(np.abs(sampled.variance - reference.variance).max()),
        **{
            name: abs(terms[name] - reference_terms[name]) / max(abs(reference_terms[name]), 1e-12)
            for name in ("mc_top", "mc_sum", "entropy_mc")
        },
    }


def load_average() -> str:
    """The 1-minute load: other jobs on a shared machine slow every figure here."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def planned(images, n_classes: int, device: torch.device) -> tuple[ModelSpec, TrainConfig]:
    """The network and round settings the product's plan gives these items (1 mm voxels
    assumed: the plan's grid depends on their count, and the items here are isotropic)."""
    from napari_alseg.plan import fingerprint, make_plan

    shapes = [image.shape[1:] for image in images]
    plan = make_plan(fingerprint(shapes, [(1.0,) * len(shapes[0])] * len(shapes), n_channels=images[0].shape[0],
                                 n_classes=n_classes), "cuda" if device.type == "cuda" else "cpu")
    spec = ModelSpec(len(shapes[0]), images[0].shape[0], n_classes, features=plan.features, zoom=plan.zoom)
    config = TrainConfig(seconds=plan.seconds, batch_size=plan.batch_size, patch_size=plan.patch_size,
                         device=str(device))
    return spec, config


def benchmark(name: str, images, labels, n_classes: int, args: argparse.Namespace) -> None:
    spatial_dims = labels[0].ndim
    if args.native_grid:
        spec, config = ModelSpec(spatial_dims, images[0].shape[0], n_classes), TrainConfig(device=args.device)
    else:
        spec, config = planned(images, n_classes, pick_device(args.device))
    if args.steps:
        config = replace(config, steps=args.steps)
    print(f"\n== {name}: {len(images)} items of {images[0].shape}, {n_classes} classes, features {spec.features}, "
          f"zoom {spec.zoom or 'none (native grid)'}")
    net, round_figures = time_round(spec, images, labels, config)
    print(
        f"fine-tuning round: {round_figures['seconds']:.1f} s for {round_figures['steps']} steps "
        f"({round_figures['seconds_per_step']:.2f} s/step, batch {round_figures['batch_size']} "
        f"x {round_figures['patch_size']}); loss "
        f"{round_figures['initial_loss']:.3f} -> {round_figures['final_loss']:.3f}, "
        f"best val {round_figures['best_val_loss']}"
    )
    print(f"peak RSS after training: {peak_rss_mib():.0f} MiB; load average {load_average()}")
    mc_items = images[: args.mc_items if spatial_dims == 2 else args.mc_cases]
    windows = config.patch_size if spatial_dims == 3 and not args.native_grid else None  # as the product scores
    mc = time_mc(net, mc_items, args.samples, pick_device(args.device), windows)
    unit = "slices" if spatial_dims == 2 else "cases"
    print(
        f"MC dropout, T={args.samples}, {len(mc_items)} {unit}: head-only {mc['head_only_per_min']:.1f} {unit}/min, "
        f"full passes {mc['full_passes_per_min']:.1f} {unit}/min, speed-up {mc['speedup']:.1f}x"
    )
    gaps = mc["differences"]
    print(
        f"head-only vs full passes, largest gap: mean probs {gaps['mean_probs']:.1e}, variance {gaps['variance']:.1e} "
        f"(absolute); mc_top {gaps['mc_top']:.1e}, mc_sum {gaps['mc_sum']:.1e}, entropy_mc {gaps['entropy_mc']:.1e} "
        "(relative)"
    )
    print(f"peak RSS after scoring: {peak_rss_mib():.0f} MiB; load average {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder holding brain-stack/ and tumour-cases/")
    parser.add_argument("--samples", type=int, default=20, help="MC-dropout samples T (default 20)")
    parser.add_argument("--mc-items", type=int, default=8, help="2D slices scored for the MC figures")
    parser.add_argument("--mc-cases", type=int, default=2, help="3D cases scored for the MC figures")
    parser.add_argument("--steps", type=int, help="override the default steps per round")
    parser.add_argument("--only", choices=("2d", "3d"), help="run one of the two benchmarks")
    parser.add_argument("--native-grid", action="store_true",
                        help="the plan-less default network on the native grid, not the training plan's")
    parser.add_argument("--device", help="cpu / cuda (default: CUDA when available)")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, "
        f"torch {torch.__version__}, load average {load_average()}"
    )
    rng = np.random.default_rng(0)
    if args.only != "3d":
        stack = load_brain_stack(args.data / "brain-stack") if args.data else synthetic_brain_stack(rng)
        benchmark("2D brain stack", *stack, args)
    if args.only != "2d":
        cases = load_tumour_cases(args.data / "tumour-cases") if args.data else synthetic_tumour_cases(rng)
        benchmark("3D tumour cases", *cases, args)


if __name__ == "__main__":
    main()
