"""Clicks against tracing: Dice of an item after 1, 2, 3, 5, 10 simulated clicks, clicks to Dice 0.9.

For each set, the held-out validation items of a fresh project (cases of a case project,
slices of a stack; ``--items`` per class at most) are clicked by the simulated clicker
(:mod:`napari_alseg.simulation.clicker`: a click at the centre of the largest error, until
Dice 0.9 or 10 clicks):

- **model-free**: from empty labels, :func:`napari_alseg.clicks.segment_with_clicks` with no prior;
- **guided after round r** (``--rounds``): a model trained on the labels of ``r`` rounds
  (``--batch`` random pool items a round, labelled by the ground-truth oracle, ``--minutes``
  of training a round) pre-fills the item and its probability of the class is the prior;
- **guided-net after round r** (``--guided-net``, instead of the above): the same with a
  network that reads the clicks (the plan's ``guidance``, trained with simulated clicks), so
  each click re-predicts the item given all clicks so far (:meth:`Session.click_segment`),
  and that prediction is the prior (its per-click time includes that prediction).

Seconds, from a stated model (see ``--trace-s-per-mm`` and ``--click-s``; assumptions, to be
replaced by the annotator's own timing): tracing an item costs its ground-truth outline
(per slice, mm) x s/mm; clicking costs clicks x s/click plus the outline still to paint
after the last click (the final mask's changed boundary against the truth) x s/mm.

    OMP_NUM_THREADS=1 python benchmarks/bench_clicks.py --data DIR [--sets tumour-cases wm-lesions]

Sets: ``tumour-cases`` and ``brain-stack`` (the settings were chosen on them) and the
held-out ``sagittal-stack`` and ``wm-lesions`` (``benchmarks/eval_sets.py``; never tuned on).
One CSV row per item and mode goes to ``--out``; a summary per set, mode and class is printed.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_alseg.clicks import segment_with_clicks
from napari_alseg.domain import CASE
from napari_alseg.effort.boundary import boundary_length, changed_boundary_length
from napari_alseg.effort.seconds import CLICK_SECONDS_PRIOR
from napari_alseg.samples import generate_sample
from napari_alseg.simulation.clicker import MAX_CLICKS, click_until_good, item_region
from napari_alseg.store import Project

sys.path.insert(0, str(Path(__file__).parent))
from eval_sets import EVAL_SETS, write_eval_set  # noqa: E402

TUNED_SETS = ("tumour-cases", "brain-stack")
TRACE_S_PER_MM = 0.5  # s per mm of outline traced with a brush (assumption: 2 mm/s, careful)
CLICK_S = CLICK_SECONDS_PRIOR  # s per click, looking included: the seconds model's prior (an assumption)
REPORTED_CLICKS = (1, 2, 3, 5, 10)


@dataclass(frozen=True)
class Item:
    """One structure to click: ``class_id`` on a case (``slice_index`` None) or on one slice."""

    case: str
    slice_index: int | None
    class_id: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the sets (made there when missing)")
    parser.add_argument("--sets", nargs="+", default=[*TUNED_SETS, *EVAL_SETS])
    parser.add_argument("--items", type=int, default=6, help="items per class at most")
    parser.add_argument("--rounds", type=int, default=3, help="guided: rounds of labels (0: model-free only)")
    parser.add_argument("--batch", type=int, default=2, help="items labelled a round")
    parser.add_argument("--minutes", type=float, default=1.0, help="training a round")
    parser.add_argument("--guided-net", action="store_true",
                        help="guided rows with a network that reads the clicks (plan guidance on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace-s-per-mm", type=float, default=TRACE_S_PER_MM)
    parser.add_argument("--click-s", type=float, default=CLICK_S)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/clicks.csv"))
    args = parser.parse_args()
    rows = []
    for name in args.sets:
        rows += bench_set(name, args)
        write_rows(args.out, rows)
    print(f"rows: {args.out}")


def bench_set(name: str, args) -> list[dict]:
    """Every mode on one set: the model-free rows, then the guided rows of each round."""
    source = set_folder(name, args.data)
    with tempfile.TemporaryDirectory(prefix="alseg-clicks-") as folder:
        project = Project.create(Path(folder) / "project", source, annotator="bench", seed=args.seed)
        items = held_out_items(project, args.items)
        print(f"\n{name}: {len(items)} items ({'cases' if project.granularity == CASE else 'slices'}"
              f" x classes), held out from training", flush=True)
        rows = click_items(project, items, None, "model-free", args)
        if args.rounds:
            rows += guided_rows(project, items, args)
        project.close()
    for row in rows:
        row["set"] = name
    return rows


def set_folder(name: str, data: Path) -> Path:
    if name in EVAL_SETS:
        return write_eval_set(name, data, seed=0)
    folder = data / name
    return folder if (folder / "dataset.json").exists() else generate_sample(name, data)


def held_out_items(project: Project, per_class: int) -> list[Item]:
    """The validation split's structures: per class up to ``per_class`` items, spread evenly."""
    items: dict[int, list[Item]] = {}
    for case, slice_index in project.validation_items():
        truth = project.ground_truth(case)
        region = truth if slice_index is None else truth[slice_index]
        for class_id in np.unique(region):
            if class_id:
                items.setdefault(int(class_id), []).append(Item(case, slice_index, int(class_id)))
    chosen = []
    for class_id, found in sorted(items.items()):
        picks = np.unique(np.linspace(0, len(found) - 1, min(per_class, len(found))).astype(int))
        chosen += [found[p] for p in picks]
    return chosen


def guided_rows(project: Project, items: list[Item], args) -> list[dict]:
    """Train round after round on oracle labels; after each, click every item with the model."""
    from napari_alseg.model import TrainConfig
    from napari_alseg.session import Session
    from napari_alseg.simulation.oracle import Oracle

    session = Session(project, annotator="bench", strategy="random", batch_size=args.batch, seed=args.seed,
                      train_config=TrainConfig(seconds=args.minutes * 60.0, seed=args.seed))
    if args.guided_net:
        session.planning.set_plan(guidance=True)
    mode = "guided-net" if args.guided_net else "guided"
    oracle = Oracle(session, correction_mode=False)
    rows = []
    for round_index in range(1, args.rounds + 1):
        for suggestion in session.suggest(args.batch):
            oracle.answer(suggestion.item)
        started = time.perf_counter()
        session.retrain()
        print(f"  round {round_index}: trained {time.perf_counter() - started:.0f} s on "
              f"{round_index * args.batch} labelled items", flush=True)
        rows += click_items(project, items, session, f"{mode}-r{round_index}", args)
    return rows


def click_items(project: Project, items: list[Item], session, mode: str, args) -> list[dict]:
    """Click each item (with ``session``'s model as prefill and prior, or model-free)."""
    rows, latencies = [], []
    images: dict[str, np.ndarray] = {}
    for item in items:
        if item.case not in images:
            images[item.case] = np.stack([v.data for v in project.load_channels(item.case)]).astype(np.float32)
        rows.append(click_item(project, images[item.case], item, session, mode, args, latencies))
    summarise(project, rows, mode, latencies)
    return rows


def click_item(project: Project, image: np.ndarray, item: Item, session, mode: str, args,
               latencies: list[float]) -> dict:
    record = project.case(item.case)
    spacing = record.spacing
    truth = project.ground_truth(item.case) == item.class_id
    on_item = item_region(truth.shape, item.slice_index)
    truth &= on_item
    labels, prior = np.zeros(truth.shape, project.label_dtype), None
    if session is not None:
        labels, prior = prefill_and_prior(session, item, truth.shape)
    start = (labels == item.class_id) & on_item

    def segment(clicks):
        began = time.perf_counter()
        if session is not None and args.guided_net:  # the prior is predicted again, given the clicks
            result = session.click_segment(item.case, labels, item.class_id, clicks, slice_index=item.slice_index)
        else:
            result = segment_with_clicks(image, labels, item.class_id, clicks, spacing=spacing,
                                         slice_index=item.slice_index, prior=prior)
        latencies.append(time.perf_counter() - began)
        return (result.labels == item.class_id) & on_item

    run = click_until_good(truth, segment, spacing, start=start)
    trace_mm = outline_mm(truth, spacing)
    paint_mm = changed_mm(run.mask, truth, spacing)
    row = {"mode": mode, "case": item.case, "slice": "" if item.slice_index is None else item.slice_index,
           "class": project.class_names[item.class_id], "dice_start": round(run.dice[0], 4),
           "clicks_to_target": "" if run.clicks_to_target is None else run.clicks_to_target,
           "clicks_used": len(run.clicks), "dice_final": round(run.dice[-1], 4),
           "trace_mm": round(trace_mm, 1), "paint_after_mm": round(paint_mm, 1),
           "trace_s": round(trace_mm * args.trace_s_per_mm, 1),
           "click_s": round(len(run.clicks) * args.click_s + paint_mm * args.trace_s_per_mm, 1)}
    for n in REPORTED_CLICKS:
        row[f"dice_{n}"] = round(run.dice[min(n, len(run.dice) - 1)], 4)
    return row


def prefill_and_prior(session, item: Item, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The model's labels (the prefill of correct mode) and its probability of the class, ``(k, j, i)``."""
    probabilities = session.learner.predict_probabilities(item.case, item.slice_index)
    labels = np.zeros(shape, np.uint8)
    prior = np.zeros(shape, np.float32)
    where = slice(None) if item.slice_index is None else item.slice_index
    labels[where] = probabilities.argmax(axis=0)
    prior[where] = probabilities[item.class_id]
    return labels, prior


def outline_mm(mask: np.ndarray, spacing) -> float:
    """The outline to trace slice by slice (mm)."""
    planes = np.flatnonzero(mask.any(axis=(1, 2)))
    return float(sum(boundary_length(mask[k], spacing[1:]).mm for k in planes))


def changed_mm(mask: np.ndarray, truth: np.ndarray, spacing) -> float:
    """The outline still to paint to turn ``mask`` into ``truth``, slice by slice (mm)."""
    planes = np.flatnonzero((mask | truth).any(axis=(1, 2)))
    return float(sum(changed_boundary_length(mask[k], truth[k], spacing[1:]).mm for k in planes))


def summarise(project: Project, rows: list[dict], mode: str, latencies: list[float]) -> None:
    print(f"  {mode}: per click median {1000 * np.median(latencies):.0f} ms, worst "
          f"{1000 * max(latencies):.0f} ms ({len(latencies)} clicks)")
    print(f"    {'class':<22}{'n':>3}" + "".join(f"{f'@{n}':>7}" for n in REPORTED_CLICKS)
          + f"{'to0.9':>7}{'reach':>7}{'s/trace':>9}")
    for name in dict.fromkeys(row["class"] for row in rows):
        mine = [row for row in rows if row["class"] == name]
        dice = "".join(f"{np.mean([row[f'dice_{n}'] for row in mine]):>7.3f}" for n in REPORTED_CLICKS)
        needed = [np.inf if row["clicks_to_target"] == "" else row["clicks_to_target"] for row in mine]
        reached = np.isfinite(needed)
        median = f"{np.median(needed):.0f}" if np.isfinite(np.median(needed)) else f">{MAX_CLICKS}"
        ratio = sum(row["click_s"] for row in mine) / max(sum(row["trace_s"] for row in mine), 1e-9)
        print(f"    {name:<22}{len(mine):>3}{dice}{median:>7}{reached.mean():>7.2f}{ratio:>9.2f}")


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in ("set", *row)))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
