"""Quality ratings (docs/METHODS.md §6.1, issue 22 item 4): do they rank the unlabelled pool
after 1, 2, 3 rounds?

Runs the product as an annotator would: a project from a sample folder (its labels held back as
ground truth), a few items answered by the simulated annotator (corrections of the prefill once
a model exists, as in the dock's correct mode), then rounds of retrain (with the out-of-fold
quality rating the dock runs) -> rescore for display -> answer the next suggestions. The
quality predictor learns only from the examples the product gathers itself: the validation
split, out-of-fold folds, the previous model on items labelled since, and corrections (ROIs
too). After each retrain it rates every unlabelled item the Review tab lists
(``session.queries.quality_rows()``), and the benchmark compares those ratings with the true Dice of the
same model's prediction of each item (the ground truth the project holds back):

- AUC per class, one-vs-rest, with the predicted Dice as the score: Poor (lower Dice, more
  Poor), Acceptable (higher, more Acceptable), Adjust (nearer 0.7, the band's centre); NaN
  when the pool holds no item, or only items, of that class;
- Spearman of predicted vs true Dice (in brackets: against the Dice of the raw prediction,
  without the body rule that makes air background in what the annotator sees, as pool scoring
  rated it until 2026-12-08); the mean absolute error of the predicted Dice, and how often the true Dice lies
  inside the stated 80 % interval. A last row per set pools every round's rated items.

    OMP_NUM_THREADS=1 python benchmarks/bench_quality.py [--data /tmp/data] [--sets tumour-cases,brain-stack]
        [--rounds 3] [--minutes 1] [--seed 0] [--threads 1]

Missing sample folders are generated with the package's sample generator.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_alseg.domain import LABELS_AS_GROUND_TRUTH, QueryItem
from napari_alseg.quality import ACCEPTABLE, ADJUST, POOR, QualityThresholds, prediction_dice
from napari_alseg.samples import generate_sample

# (strategy, items answered before the first retrain, items answered per round)
SETTINGS = {
    "tumour-cases": ("mc-dropout-top", 3, 2),  # cases; the first retrain had 3 labelled cases
    "brain-stack": ("dice-per-effort", 12, 8),  # ROIs (a class on a slice): their submits add examples
}
SHORT_NAMES = ("Poor", "Adjust", "Acceptable")


def class_scores(predicted: np.ndarray) -> dict[int, np.ndarray]:
    """One-vs-rest score per class from the predicted Dice (larger = more of that class)."""
    return {POOR: -predicted, ADJUST: -np.abs(predicted - 0.7), ACCEPTABLE: predicted}


def ranking_figures(predicted: np.ndarray, low: np.ndarray, high: np.ndarray, truth: np.ndarray) -> dict:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    classes = QualityThresholds().classify(truth)
    auc = {}
    for quality_class, score in class_scores(predicted).items():
        positives = classes == quality_class
        auc[quality_class] = (float(roc_auc_score(positives, score)) if 0 < positives.sum() < len(positives)
                              else math.nan)
    spearman = (float(spearmanr(predicted, truth).statistic)
                if len(truth) >= 3 and np.ptp(truth) > 0 and np.ptp(predicted) > 0 else math.nan)
    return {"auc": auc, "spearman": spearman, "mae": float(np.abs(predicted - truth).mean()),
            "coverage": float(((truth >= low) & (truth <= high)).mean()),
            "counts": np.bincount(classes, minlength=3).tolist(), "n": len(truth)}


def true_dice(session, item: QueryItem, truth: np.ndarray) -> tuple[float, float]:
    """Dice of the active model's prediction of the item as the annotator sees it (the prefill:
    air outside the body is background), and raw (no body rule, as pool scoring rated it until
    scoring.predict.within_body)."""
    from napari_alseg.model import predict_proba

    reference = truth if item.slice_index is None else truth[item.slice_index]
    n_classes = session.catalog.n_classes
    shown = session.learner.predict_probabilities(item.case, item.slice_index)
    image = session.view.case_image(item.case)
    if item.slice_index is not None:
        image = image[:, item.slice_index]
    patch = session.learner.inference_patch if item.slice_index is None else None
    scored = predict_proba(session.learner.current_net(), image, device="cpu", patch_size=patch)
    return prediction_dice(shown, reference, n_classes), prediction_dice(scored, reference, n_classes)


def run_set(name: str, data: Path, work: Path, rounds: int, minutes: float, seed: int) -> list[dict]:
    from napari_alseg.model import TrainConfig
    from napari_alseg.session import Session
    from napari_alseg.simulation.oracle import Oracle
    from napari_alseg.store import Project

    strategy, first, per_round = SETTINGS[name.rstrip("0123456789").rstrip("-")]  # tumour-cases-60: as tumour-cases
    project = Project.create(work / name, data / name, annotator="bench", seed=seed,
                             labels_as=LABELS_AS_GROUND_TRUTH)
    config = TrainConfig(seconds=minutes * 60.0, device="cpu", seed=seed)
    results, pooled = [], []
    with Session(project, annotator="bench", strategy=strategy, train_config=config, seed=seed) as session:
        oracle = Oracle(session, correction_mode=True)
        truths = {case.name: project.ground_truth(case.name) for case in project.cases}
        for suggestion in session.suggest(first):
            oracle.answer(suggestion.item)
        for round_index in range(1, rounds + 1):
            started = time.perf_counter()
            import torch

            torch.manual_seed(seed + round_index)
            report = session.retrain()
            session.rescore()
            rows = session.queries.quality_rows()
            predicted = np.array([e.dice for _item, e in rows])
            low = np.array([e.low for _item, e in rows])
            high = np.array([e.high for _item, e in rows])
            both = np.array([true_dice(session, item, truths[item.case]) for item, _e in rows]).reshape(-1, 2)
            truth, scored = both[:, 0], both[:, 1]
            figures = ranking_figures(predicted, low, high, truth) if rows else {}
            figures["spearman_scored"] = ranking_figures(predicted, low, high, scored)["spearman"] if rows else math.nan
            pooled.append((predicted, low, high, truth))
            api = session.queries.rate_items([item for item, _e in rows[:3]])  # the public API agrees with the tab
            assert api == [e for _item, e in rows[:3]]
            results.append({"set": name, "round": round_index, "examples": session.queries.n_quality_examples,
                            "note": session.queries.quality_note, "validation_dice": report.metrics.get("val_dice"),
                            "predicted_mean": float(predicted.mean()) if rows else math.nan,
                            "true_mean": float(truth.mean()) if rows else math.nan,
                            "seconds": time.perf_counter() - started, **figures})
            print_row(results[-1], flush=True)
            for suggestion in session.suggest(per_round):
                oracle.answer(suggestion.item)
    if pooled:  # every round's rated items together (each item rated by the model of its round)
        figures = ranking_figures(*(np.concatenate(parts) for parts in zip(*pooled)))
        results.append({"set": name, "round": "1-3 pooled", "examples": results[-1]["examples"], "note": "",
                        "predicted_mean": float(np.concatenate([p[0] for p in pooled]).mean()),
                        "true_mean": float(np.concatenate([p[3] for p in pooled]).mean()), "seconds": 0.0,
                        "spearman_scored": math.nan, **figures})
        print_row(results[-1], flush=True)
    return results


def print_row(row: dict, flush: bool = False) -> None:
    auc = row.get("auc", {})
    auc_text = " / ".join("—" if math.isnan(auc.get(c, math.nan)) else f"{auc[c]:.2f}" for c in range(3))
    counts = "/".join(str(c) for c in row.get("counts", []))
    print(f"| {row['set']} | {row['round']} | {row['examples']} | {row.get('n', 0)} ({counts}) | {auc_text} | "
          f"{row.get('spearman', math.nan):.2f} ({row.get('spearman_scored', math.nan):.2f}) | "
          f"{row['predicted_mean']:.2f} / {row['true_mean']:.2f} | "
          f"{row.get('mae', math.nan):.2f} | {row.get('coverage', math.nan):.0%} | {row['seconds']:.0f} |",
          flush=flush)
    if row["note"]:
        print(f"|   note: {row['note']} |", flush=flush)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/data"))
    parser.add_argument("--sets", default="tumour-cases,brain-stack")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=1.0, help="training per round (the quality folds add half)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    sets = [name.strip() for name in args.sets.split(",") if name.strip()]
    for name in sets:
        if not (args.data / name).is_dir():
            generate_sample(name, args.data)
    print("| set | round | examples | rated items (Poor/Adjust/Acceptable) | AUC Poor / Adjust / Acceptable | "
          "Spearman (vs the scored prediction) | predicted / true mean Dice | MAE | in 80 % interval | s |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as work:
        for name in sets:
            run_set(name, args.data, Path(work), args.rounds, args.minutes, args.seed)


if __name__ == "__main__":
    main()
