"""How much the learner learns per minute: test Dice per class against training seconds.

For each labelled set, a fixed test split is held out (seeded); a share of the rest
(``--fractions``: 1.0 = every pool label, 0.1 = a tenth) trains the model in rounds,
warm-started from the previous one, as the product does between annotations. After
every round the test Dice per class is measured. Two recipes, side by side in one run:

* ``new``: this checkout's learner: the project's training plan (model/plan.py) with
  its default round budget, class-aware crops, batch Dice, warm-up + cosine per round;
* ``old``: the v0.1 learner, run from the git commit ``OLD_COMMIT`` (a worktree made
  under ``/tmp``) with its defaults (60 steps a round), rounds repeated until the same
  training time is spent.

Sets: ``brain-stack`` (2D, full resolution), ``tumour-cases`` (3D), the second
evaluation sets of ``benchmarks/eval_sets.py`` (never used to choose a setting), or
any labelled folder (``--folder DIR``, the layouts ``alseg create`` reads).

    python benchmarks/bench_learner.py [--sets brain-stack tumour-cases] [--folder DIR]
        [--recipes new old] [--fractions 1.0 0.1] [--seeds 0 1 2] [--minutes M]
        [--steps N --rounds R] [--out results/learner.csv]
    python benchmarks/bench_learner.py --step-times [--sets ...]   # seconds per step, old and new

``--steps N --rounds R`` trains R rounds of N steps instead of the plan's seconds: the
curve then does not depend on what else shares the CPU, and ``--step-times`` (run on a
quiet machine) converts steps into this machine's minutes.

Each (set, recipe, fraction, seed) runs in its own process (``--worker``); rows are
appended to the CSV as rounds finish, and a run already in the CSV is skipped, so an
interrupted benchmark resumes. ``--summary`` prints the table from the CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

OLD_COMMIT = "a264b8b"
OLD_TREE = Path("/tmp/alseg-learner-old")
TEST_FRACTION = 0.2
DEFAULT_MINUTES = {"brain-stack": 10.0, "sagittal-stack": 10.0, "tumour-cases": 5.0, "wm-lesions": 5.0}
FALLBACK_MINUTES = 6.0
TIMING_WARMUP, TIMING_STEPS = 3, 20
COLUMNS = ("set", "recipe", "fraction", "seed", "round", "seconds", "steps", "n_train", "n_test",
           "mean_dice", "class_dice", "stack_dice", "stack_class_dice")
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- data (either package version)

def set_folder(name: str) -> Path:
    """A sample set, a second evaluation set, or a folder given by path."""
    from napari_alseg.samples import sample_dir

    if Path(name).is_dir():
        return Path(name)
    if name in ("brain-stack", "tumour-cases"):
        return Path(sample_dir(name))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from eval_sets import write_eval_set

    return write_eval_set(name, Path(os.environ.get("ALSEG_DATA_DIR", Path.home() / ".cache/napari-alseg")) / "eval"
                          / name)


def load_items(folder: Path):
    """``(images, labels, spacings, n_classes, two_d)``: one entry per 2D slice or 3D case.

    images ``(Cin, *S)`` float32, labels ``(*S)`` int; 2D when ``dataset.json`` says the
    set is sliced (``granularity`` slice/roi). :func:`orientation` gives the rest of what
    the product's plan is made from.
    """
    from napari_alseg.nifti import load_volume
    from napari_alseg.store.discover import discover_cases

    meta_path = folder / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    two_d = meta.get("granularity") in ("slice", "roi")
    cases = discover_cases(folder, meta.get("channels"))
    images, labels, spacings = [], [], []
    for case in cases:
        if case.ground_truth is None:
            continue
        volumes = [load_volume(path) for _, path in case.channels]
        image = np.stack([volume.data for volume in volumes]).astype(np.float32)
        truth = load_volume(case.ground_truth, as_label=True)
        if two_d:
            for n in range(image.shape[1]):
                images.append(image[:, n])
                labels.append(truth.data[n].astype(np.int64))
                spacings.append(tuple(truth.spacing[1:]))
        else:
            images.append(image)
            labels.append(truth.data.astype(np.int64))
            spacings.append(tuple(truth.spacing))
    n_classes = int(max(int(label.max()) for label in labels)) + 1
    if "classes" in meta:
        n_classes = max(n_classes, len(meta["classes"]))
    return images, labels, spacings, n_classes, two_d


def orientation(folder: Path, two_d: bool) -> tuple[int | None, list[str]]:
    """The items' left-right axis and the class names (background first), as the product's
    ``Learner.fingerprint`` finds them, for the plan's mirror axes (this checkout's code only:
    the old recipe has no plan)."""
    from napari_alseg.nifti import load_volume
    from napari_alseg.plan import item_left_right_axis
    from napari_alseg.store.discover import discover_cases

    meta_path = folder / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    case = discover_cases(folder, meta.get("channels"))[0]
    axis = item_left_right_axis(load_volume(case.channels[0][1]).affine, 2 if two_d else 3)
    classes = meta.get("classes") or {}
    if not classes and (folder / "classes.json").is_file():
        from napari_alseg.samples.layout import load_class_names

        classes = load_class_names(folder)
    return axis, [str(classes[key]) for key in sorted(classes, key=int)]


def split(n_items: int, fraction: float, seed: int, two_d: bool) -> tuple[np.ndarray, np.ndarray]:
    """Test indices (fixed per seed, ``TEST_FRACTION``) and the labelled share of the rest.

    2D stacks test on evenly spaced slices (offset by the seed), so every structure along
    the stack is tested; 3D sets on a random draw of cases.
    """
    rng = np.random.default_rng(1000 + seed)
    step = round(1 / TEST_FRACTION)
    if two_d:
        test = np.arange(seed % step, n_items, step)
        pool = rng.permutation(np.setdiff1d(np.arange(n_items), test))
    else:
        order = rng.permutation(n_items)
        n_test = max(1, round(TEST_FRACTION * n_items))
        test, pool = order[:n_test], order[n_test:]
    n_train = max(1, round(fraction * len(pool)))
    return test, np.sort(pool[:n_train])


def test_dice(net, images, labels, test, n_classes, patch_size, two_d):
    """Per class: the mean of per-item Dice, and for 2D stacks the Dice of all test slices together.

    The per-item mean scores each test slice alone, so a few stray pixels of a structure
    on a slice that lacks it count as Dice 0 for that slice. The stack Dice treats the test
    slices as one volume (how a structure's segmentation of a case is usually scored); it
    is NaN-filled for 3D sets, whose items are whole cases already.
    """
    from napari_alseg.metrics import class_means, dice_per_class
    from napari_alseg.model import predict_proba

    per_item, predicted, truth = [], [], []
    for index in test:
        prediction = predict_proba(net, images[index], patch_size=patch_size).argmax(axis=0)
        per_item.append(dice_per_class(prediction, labels[index], n_classes))
        predicted.append(prediction.ravel())
        truth.append(np.asarray(labels[index]).ravel())
    stack = (dice_per_class(np.concatenate(predicted), np.concatenate(truth), n_classes) if two_d
             else np.full(n_classes - 1, np.nan))
    return class_means(per_item), stack


# ---------------------------------------------------------------- one run (a worker process)

def worker_folder(args: argparse.Namespace) -> Path:
    """The driver's copy of the set: the old recipe's code must not regenerate the samples."""
    return Path(args.set_dir) if args.set_dir else set_folder(args.set)


def run_worker(args: argparse.Namespace) -> None:
    import torch

    from napari_alseg.model import TrainingItem, fine_tune

    folder = worker_folder(args)
    images, labels, spacings, n_classes, two_d = load_items(folder)
    test, train = split(len(images), args.fraction, args.seed, two_d)
    items = [TrainingItem(images[i], labels[i], np.ones(labels[i].shape, bool)) for i in train]
    dims = 2 if two_d else 3
    override = json.loads(args.override or "{}")
    max_rounds = override.pop("rounds", None)
    sides = orientation(folder, two_d) if args.recipe == "new" else (None, ())
    config, spec, patch = recipe_settings(args.recipe, dims, images, spacings, train, n_classes, args.seed, override,
                                          sides)
    torch.manual_seed(args.seed)
    net = spec.build()
    budget = args.minutes * 60.0
    spent, steps, round_index = 0.0, 0, 0
    while (max_rounds is not None or spent < budget * 0.98) and (max_rounds is None or round_index < max_rounds):
        round_index += 1
        started = time.perf_counter()
        left = budget - spent
        result = fine_tune(net, items, config if max_rounds or config.seconds is None or config.seconds <= left
                           else replace(config, seconds=left))  # the last timed round ends on the budget
        spent += time.perf_counter() - started
        steps += result.steps_done
        net.load_state_dict(result.state_dict)
        scores, stack = test_dice(net, images, labels, test, n_classes, patch, two_d)
        row = {"set": args.set, "recipe": args.recipe, "fraction": args.fraction, "seed": args.seed,
               "round": round_index, "seconds": round(spent, 1), "steps": steps, "n_train": len(train),
               "n_test": len(test), "mean_dice": round(float(np.nanmean(scores)), 4),
               "class_dice": " ".join(f"{value:.3f}" for value in scores),
               "stack_dice": round(float(np.nanmean(stack)), 4) if two_d else "",
               "stack_class_dice": " ".join(f"{value:.3f}" for value in stack) if two_d else ""}
        append_row(Path(args.out), row)
        print(f"{args.set} {args.recipe} f={args.fraction} seed {args.seed} round {round_index}: "
              f"{spent:.0f} s, {steps} steps, test Dice {row['mean_dice']:.3f} [{row['class_dice']}]"
              + (f", stack Dice {row['stack_dice']:.3f} [{row['stack_class_dice']}]" if two_d else ""), flush=True)


def time_steps(args: argparse.Namespace) -> None:
    """Seconds per optimiser step of one recipe on one set (after a short warm-up), as JSON."""
    import torch

    from napari_alseg.model import TrainingItem, fine_tune

    folder = worker_folder(args)
    images, labels, spacings, n_classes, two_d = load_items(folder)
    test, train = split(len(images), 1.0, 0, two_d)
    items = [TrainingItem(images[i], labels[i], np.ones(labels[i].shape, bool)) for i in train]
    sides = orientation(folder, two_d) if args.recipe == "new" else (None, ())
    config, spec, _ = recipe_settings(args.recipe, 2 if two_d else 3, images, spacings, train, n_classes, 0,
                                      {"steps": TIMING_STEPS}, sides)
    torch.manual_seed(0)
    net = spec.build()
    fine_tune(net, items, replace(config, steps=TIMING_WARMUP))
    started = time.perf_counter()
    fine_tune(net, items, config)
    seconds = (time.perf_counter() - started) / TIMING_STEPS
    print(json.dumps({"set": args.set, "recipe": args.recipe, "seconds_per_step": round(seconds, 3),
                      "threads": torch.get_num_threads(), "batch": config.batch_size,
                      "patch": list(config.patch_size or ()), "features": list(spec.features),
                      "zoom": list(getattr(spec, "zoom", ()))}), flush=True)


def run_step_times(args: argparse.Namespace) -> None:
    """Per-step time of each recipe on each set, one process at a time (run it on a quiet machine)."""
    for name in args.sets:
        for recipe in args.recipes:
            env = dict(os.environ)
            if recipe == "old":
                env["PYTHONPATH"] = str(old_tree() / "src")
            subprocess.run([sys.executable, __file__, "--worker-times", "--set", name, "--recipe", recipe,
                            "--set-dir", str(set_folder(name))], check=True, env=env,
                           cwd="/tmp" if recipe == "old" else None)


def recipe_settings(recipe, dims, images, spacings, train, n_classes, seed, override, sides=(None, ())):
    """``(TrainConfig, ModelSpec, inference patch)`` of a recipe for these items.

    ``override``: plan fields and TrainConfig fields to set (``--override '{"steps": 100}'``),
    for tuning runs on the sample sets only. ``sides``: :func:`orientation`'s answer.
    """
    from dataclasses import fields

    from napari_alseg.model import ModelSpec, TrainConfig

    if recipe == "old":
        return TrainConfig(seed=seed, **override), ModelSpec(dims, images[0].shape[0], n_classes), None
    from napari_alseg.plan import TrainingPlan, fingerprint, make_plan

    plan_fields = {f.name for f in fields(TrainingPlan)}
    side_axis, class_names = sides
    plan = make_plan(fingerprint([images[i].shape[1:] for i in train], [spacings[i] for i in train],
                                 n_channels=images[0].shape[0], n_classes=n_classes, left_right_axis=side_axis,
                                 class_names=class_names[1:]))
    plan = plan.with_overrides(**{k: v for k, v in override.items() if k in plan_fields})
    config = TrainConfig(seconds=plan.seconds, batch_size=plan.batch_size, patch_size=plan.patch_size,
                         flip_axes=plan.mirror_axes, seed=seed)
    config = replace(config, **{k: v for k, v in override.items() if k not in plan_fields})
    if "steps" in override and "seconds" not in override:
        config = replace(config, seconds=None)
    spec = ModelSpec(dims, images[0].shape[0], n_classes, features=plan.features, zoom=plan.zoom)
    return config, spec, None if dims == 2 else plan.patch_size


def append_row(path: Path, row: dict) -> None:
    """Append one row; a CSV written before a column existed is rewritten with it left blank."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_rows(path)
    if path.exists() and rows and list(rows[0]) != list(COLUMNS):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS, restval="")
            writer.writeheader()
            writer.writerows({key: old.get(key, "") for key in COLUMNS} for old in rows)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- driver

def old_tree() -> Path:
    """A worktree of the v0.1 learner (made once)."""
    if not (OLD_TREE / "src").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(OLD_TREE), OLD_COMMIT],
                       check=True, capture_output=True)
    return OLD_TREE


def run_all(args: argparse.Namespace) -> None:
    out = Path(args.out)
    done = {(r["set"], r["recipe"], float(r["fraction"]), int(r["seed"])) for r in read_rows(out)}
    for name in args.sets:
        minutes = args.minutes or DEFAULT_MINUTES.get(name, FALLBACK_MINUTES)
        for fraction in args.fractions:
            for seed in args.seeds:
                for recipe in args.recipes:
                    if (name, recipe, fraction, seed) in done:
                        continue
                    env = dict(os.environ)
                    if recipe == "old":
                        env["PYTHONPATH"] = str(old_tree() / "src")
                    command = [sys.executable, __file__, "--worker", "--set", name, "--set-dir", str(set_folder(name)),
                               "--recipe", recipe,
                               "--fraction", str(fraction), "--seed", str(seed), "--minutes", str(minutes),
                               "--out", str(out.resolve())]
                    if args.steps:
                        command += ["--override", json.dumps({"steps": args.steps, "rounds": args.rounds})]
                    subprocess.run(command, check=True, env=env, cwd="/tmp" if recipe == "old" else None)
    print_summary(out)


def print_summary(out: Path) -> None:
    """Per (set, recipe, fraction): last-round test Dice, mean ± sd over seeds, and the worst class."""
    rows = read_rows(out)
    last: dict[tuple, dict] = {}
    for row in rows:
        key = (row["set"], row["recipe"], row["fraction"], row["seed"])
        if key not in last or int(row["round"]) > int(last[key]["round"]):
            last[key] = row
    groups: dict[tuple, list[dict]] = {}
    for (name, recipe, fraction, _), row in last.items():
        groups.setdefault((name, recipe, fraction), []).append(row)
    print("| set | recipe | labelled | seeds | train s | steps | s/step | test Dice (per slice/case) | per class "
          "(mean over seeds) | stack Dice | per class |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, recipe, fraction), group in sorted(groups.items()):
        dice = np.array([float(r["mean_dice"]) for r in group])
        classes = np.mean([[float(v) for v in r["class_dice"].split()] for r in group], axis=0)
        seconds = np.mean([float(r["seconds"]) for r in group])
        steps = np.mean([int(r["steps"]) for r in group])
        spread = f" ± {dice.std(ddof=1):.3f}" if len(dice) > 1 else ""
        stacked = [r for r in group if r.get("stack_dice")]
        stack_text = "– | –"
        if stacked:
            stack_classes = np.mean([[float(v) for v in r["stack_class_dice"].split()] for r in stacked], axis=0)
            stack_text = (f"{np.mean([float(r['stack_dice']) for r in stacked]):.3f} ({len(stacked)}) | "
                          + " ".join(f"{c:.2f}" for c in stack_classes))
        print(f"| {name} | {recipe} | {float(fraction):.0%} | {len(group)} | {seconds:.0f} | {steps:.0f} | "
              f"{seconds / steps:.2f} | {dice.mean():.3f}{spread} | {' '.join(f'{c:.2f}' for c in classes)} | "
              f"{stack_text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["brain-stack", "tumour-cases"])
    parser.add_argument("--folder", action="append", default=[], help="a labelled folder (repeatable)")
    parser.add_argument("--recipes", nargs="+", default=["new", "old"], choices=["new", "old"])
    parser.add_argument("--fractions", nargs="+", type=float, default=[1.0, 0.1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=None,
                        help="training time per run (default: brain-stack 10, tumour-cases 5, others 6)")
    parser.add_argument("--steps", type=int, default=None,
                        help="rounds of N optimiser steps instead of the plan's seconds (load-independent)")
    parser.add_argument("--rounds", type=int, default=None, help="with --steps: how many rounds")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/learner.csv"))
    parser.add_argument("--summary", action="store_true", help="only print the table from --out")
    parser.add_argument("--step-times", action="store_true",
                        help="only measure seconds per step of each recipe on each set (quiet machine)")
    parser.add_argument("--worker-times", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--set", help=argparse.SUPPRESS)
    parser.add_argument("--set-dir", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--override", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sets = list(args.sets) + [str(Path(folder).resolve()) for folder in args.folder]
    if args.worker:
        run_worker(args)
    elif args.worker_times:
        time_steps(args)
    elif args.step_times:
        run_step_times(args)
    elif args.summary:
        print_summary(Path(args.out))
    else:
        run_all(args)


if __name__ == "__main__":
    main()
