"""Quality predictor (METHODS A): can it tell Poor / Adjust / Acceptable predictions apart?

Trains a small 3D net on a few tumour cases, probing its Dice on a few held-out cases
every ``--chunk`` steps and snapshotting it each time the probe passes the next level
of ``--ladder`` (model maturity, the same levels whatever the seed); each held-out case
also gets its own level of added image noise (case difficulty), so the predictions span
poor to good both across and within snapshots. For every (snapshot, case) prediction it
computes the quality features (probabilities + MC-dropout variance) and the true Dice,
then cross-validates each model with all snapshots of a case in the same fold. Prints the confusion matrix,
accuracy, one-vs-rest AUC per class and the costly error (Poor predicted Acceptable).
Paper (Boehringer et al. 2023, BraTS): 82 % accuracy, AUC 0.995 / 0.810 / 0.877.
Targets: accuracy >= 80 %, Poor -> Acceptable <= 5 %.

The Dice target defaults to whole tumour (classes merged): a net trained for minutes on
a CPU reaches it, while the mean over the three small tumour classes stays below 0.8
(``--target mean`` shows it). ``--threads`` pins torch's threads, fine-tuning included:
on a CPU shared with other jobs one thread is several times faster than two.

    python benchmarks/bench_quality.py [--data DIR] [--n-cases 24] [--size 48]
        [--train-cases 6] [--chunk 5] [--max-steps 200] [--ladder 0.3,0.5,...] [--max-noise 1.5]
        [--target whole|mean] [--mc-samples 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_alseg.model import ModelSpec, TrainConfig, TrainingItem, fine_tune, mc_dropout, predict_proba
from napari_alseg.model.preprocessing import normalise_image
from napari_alseg.nifti import load_volume
from napari_alseg.quality import (
    CLASS_NAMES,
    MODELS,
    QualityThresholds,
    cross_validate,
    prediction_dice,
    quality_features,
)
from napari_alseg.samples import generate_sample, load_class_names

CHANNELS = ("t1c", "t2", "flair")
SHORT_NAMES = ("Poor", "Adjust", "Acceptable")


def load_cases(set_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """case -> (image ``(3, k, j, i)`` float32, labels ``(k, j, i)`` int64)."""
    cases = {}
    for folder in sorted(p for p in set_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = folder.name
        image = np.stack([load_volume(folder / f"{name}_{channel}.nii.gz").data for channel in CHANNELS])
        labels = load_volume(folder / f"{name}_seg.nii.gz", as_label=True).data
        cases[name] = (image.astype(np.float32), labels.astype(np.int64))
    return cases


def noisy(image: np.ndarray, noise_sd: float, seed: int) -> np.ndarray:
    """Normalised image with Gaussian noise of ``noise_sd`` (z-score units) inside the head."""
    normalised = normalise_image(image, 3)
    noise = np.random.default_rng(seed).normal(0.0, noise_sd, normalised.shape).astype(np.float32)
    return np.where(normalised != 0, normalised + noise, 0.0).astype(np.float32)


def rated_predictions(net, images, labels, n_classes, mc_samples, seed, whole):
    """(features ``(N, F)``, Dice ``(N,)``) of the net's prediction of each image."""
    features, dice = [], []
    for image, truth in zip(images, labels):
        probs = predict_proba(net, image, device="cpu")
        variance = mc_dropout(net, image, samples=mc_samples, seed=seed, device="cpu").variance
        features.append(quality_features(normalise_image(image, 3), probs, variance))
        dice.append(prediction_dice(probs, truth, n_classes, whole=whole))
    return np.array(features), np.array(dice)


def pin_threads(threads: int) -> None:
    """Keep torch at ``threads``: fine-tuning picks its device through ``pick_device``,
    which would reset the count to every physical core."""
    from napari_alseg.model import device

    def configure() -> int:
        torch.set_num_threads(threads)
        return threads

    device.configure_cpu_threads = configure
    configure()


def print_report(model: str, report, seconds: float) -> None:
    print(f"\n== {model} ({seconds:.1f} s) ==")
    print("confusion (rows = true, columns = predicted):")
    for name, row in zip(CLASS_NAMES, report.confusion):
        print(f"  {name:<28} {row[0]:>4} {row[1]:>4} {row[2]:>4}")
    print(f"accuracy {report.accuracy:.3f}  (paper 0.82, target >= 0.80)")
    auc = ", ".join(f"{name} {value:.3f}" for name, value in zip(SHORT_NAMES, report.auc))
    print(f"one-vs-rest AUC: {auc}  (paper 0.995 / 0.810 / 0.877)")
    recall = report.confusion.diagonal() / np.maximum(report.confusion.sum(axis=1), 1)
    print("recall: " + ", ".join(f"{name} {value:.3f}" for name, value in zip(SHORT_NAMES, recall)))
    print(f"Poor predicted Acceptable: {report.poor_as_acceptable:.1%}  (target <= 5 %)")


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.threads:
        pin_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        set_dir = args.data or generate_sample("tumour-cases", Path(scratch), n_cases=args.n_cases, size=args.size)
        cases = load_cases(set_dir)
        n_classes = len(load_class_names(set_dir))
    names = sorted(cases)
    rng = np.random.default_rng(args.seed)
    order = [names[i] for i in rng.permutation(len(names))]
    train, rated = order[: args.train_cases], order[args.train_cases:]
    print(f"{len(names)} cases of shape {cases[names[0]][0].shape}: {len(train)} train the net, "
          f"{len(rated)} are rated at each snapshot; Dice target: {args.target}")
    noise_sd = rng.uniform(0.0, args.max_noise, len(rated))
    images = [noisy(cases[name][0], sd, args.seed + i) for i, (name, sd) in enumerate(zip(rated, noise_sd))]
    labels = [cases[name][1] for name in rated]
    whole = args.target == "whole"

    torch.manual_seed(args.seed)
    net = ModelSpec(3, len(CHANNELS), n_classes).build()
    items = [TrainingItem(cases[n][0], cases[n][1], np.ones(cases[n][1].shape, bool)) for n in train]
    ladder = sorted(float(level) for level in args.ladder.split(","))
    features, dice, groups = [], [], []
    for steps in range(args.chunk, args.max_steps + 1, args.chunk):
        config = TrainConfig(steps=args.chunk, batch_size=2, patch_size=(48, 48, 48), validation_fraction=0.0,
                             seed=args.seed + steps, device="cpu")
        net.load_state_dict(fine_tune(net, items, config).state_dict)
        probe = np.mean([prediction_dice(predict_proba(net, image, device="cpu"), truth, n_classes, whole=whole)
                         for image, truth in zip(images[: args.probe_cases], labels[: args.probe_cases])])
        if probe < ladder[0] and steps + args.chunk <= args.max_steps:
            continue
        ladder = [level for level in ladder if level > probe] or [math.inf]
        snapshot_features, snapshot_dice = rated_predictions(net, images, labels, n_classes, args.mc_samples,
                                                             args.seed, whole)
        features.append(snapshot_features)
        dice.append(snapshot_dice)
        groups += rated
        counts = np.bincount(QualityThresholds().classify(snapshot_dice), minlength=3)
        print(f"snapshot after {steps:>4} steps: Dice mean {snapshot_dice.mean():.3f} "
              f"(min {snapshot_dice.min():.3f}, max {snapshot_dice.max():.3f}); Poor/Adjust/Acceptable "
              f"{counts.tolist()}  [{time.perf_counter() - started:.0f} s]")
        if ladder == [math.inf]:
            break
    features, dice, groups = np.concatenate(features), np.concatenate(dice), np.array(groups)
    counts = np.bincount(QualityThresholds().classify(dice), minlength=3)
    print(f"\n{len(dice)} rated predictions: Poor {counts[0]}, Adjust {counts[1]}, Acceptable {counts[2]}")
    for model in MODELS:
        fitted_at = time.perf_counter()
        report = cross_validate(features, dice, model=model, folds=args.folds, seed=args.seed, groups=groups)
        print_report(model, report, time.perf_counter() - fitted_at)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a tumour-cases folder (default: generate one)")
    parser.add_argument("--n-cases", type=int, default=24)
    parser.add_argument("--size", type=int, default=48, help="voxels along the longest axis when generating")
    parser.add_argument("--train-cases", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=5, help="training steps between probes")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--ladder", default="0.3,0.5,0.65,0.75,0.82,0.88",
                        help="probe Dice levels at which to snapshot")
    parser.add_argument("--probe-cases", type=int, default=4)
    parser.add_argument("--max-noise", type=float, default=1.5, help="largest per-case noise sd (z-score units)")
    parser.add_argument("--target", choices=("whole", "mean"), default="whole",
                        help="Dice of the merged tumour, or mean over the tumour classes")
    parser.add_argument("--mc-samples", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, 0 = the product's default")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main()
