"""The simulation benchmark on tiny synthetic stacks: CSV rows, resuming, report, CLI."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import synthetic_cases

from napari_alseg.session import Session, import_model_backend
from napari_alseg.session.queries import Queries
from napari_alseg.simulation import (CONVERGENCE_TOLERANCE, FULL_DATA, REFERENCE_CSV, TABLE_MD, Curve, dice_at_effort,
                                     effort_to_reach, full_data_dice, read_rounds, reference_defects, simulate)

CLASSES = {"0": {"name": "background"}, "1": {"name": "core"}, "2": {"name": "outer rim"}}


def make_source(root, *, granularity, n_cases, shape):
    return synthetic_cases.make_source(root, granularity=granularity, n_cases=n_cases, shape=shape,
                                       classes=CLASSES, drift=True)


@pytest.fixture(scope="module", autouse=True)
def torch_imported():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import_model_backend()


def tiny_config():
    from napari_alseg.model import TrainConfig

    return TrainConfig(steps=2, batch_size=2, patch_size=None, augment=False, validate_every=100, device="cpu")


def run(source, out, rounds, strategies=("random", "dice-per-effort"), **options):
    return simulate(source, out, strategies=strategies, rounds=rounds, seeds=[0], batch_size=2,
                    initial_items=2, train_config=tiny_config(), **options)


def test_rounds_csv_columns_and_growing_effort(tmp_path):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    path = run(source, tmp_path / "out", rounds=2)
    with path.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:3] == ["strategy", "seed", "round"]
    assert {"effort_boundary_px", "effort_boundary_mm", "effort_seconds_est", "dice_test",
            "dice_test_core", "dice_test_outer_rim", "dice_pool", "wall_seconds"} <= set(header)
    rows = read_rounds(path)
    assert [(r["strategy"], r["round"]) for r in rows] == [
        ("random", 1), ("random", 2), ("dice-per-effort", 1), ("dice-per-effort", 2), (FULL_DATA, 2)]
    for strategy in ("random", "dice-per-effort"):
        first, second = (r for r in rows if r["strategy"] == strategy)
        assert 0 < first["effort_boundary_mm"] <= second["effort_boundary_mm"]
        assert first["labelled_items"] == 2 and second["labelled_items"] == 4
        assert 0 <= second["dice_test"] <= 1
    full = rows[-1]
    assert full["effort_boundary_pct"] <= 100.0 and full["labelled_slices"] == full["labelled_items"]
    assert (tmp_path / "out" / TABLE_MD).read_text().count("| random |") >= 2
    assert (tmp_path / "out" / "dice_vs_effort.png").stat().st_size > 0
    # the reference trains at least the runs' 2 rounds, chunk by chunk, each chunk's Dice recorded
    with (tmp_path / "out" / REFERENCE_CSV).open(newline="") as handle:
        chunks = list(csv.DictReader(handle))
    assert [int(c["chunk"]) for c in chunks] == list(range(1, len(chunks) + 1)) and 2 <= len(chunks) <= 4
    assert all(c["budget_rounds"] == "2" for c in chunks)
    assert float(chunks[-1]["dice_test"]) == pytest.approx(full["dice_test"], abs=1e-5)
    converged = chunks[-1]["converged"] == "1"
    assert converged == (float(chunks[-1]["spread_last"]) <= CONVERGENCE_TOLERANCE)
    assert converged or len(chunks) == 4  # trains on while not flat, up to twice the rounds
    assert "## Reference check" in (tmp_path / "out" / TABLE_MD).read_text()


def test_resume_continues_where_it_stopped(tmp_path):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    out = tmp_path / "out"
    first = read_rounds(run(source, out, rounds=1, strategies=("random",), full_data=False))
    with Session.open(out / "projects" / "random-seed0", annotator="oracle") as session:
        item = session.suggest(1)[0].item  # a crash after one answer of round 2
        truth = session.catalog.ground_truth(item.case)[item.slice_index]
        session.submit(item.case, truth, slice_index=item.slice_index, seconds_active=0.0)
    second = read_rounds(run(source, out, rounds=2, strategies=("random",), full_data=False))
    assert [r["round"] for r in second] == [1, 2]
    assert second[0] == first[0]
    assert second[1]["labelled_items"] == 4
    with pytest.raises(Exception, match="other settings"):
        simulate(source, out, strategies=["random"], rounds=2, seeds=[0], batch_size=3, initial_items=2,
                 train_config=tiny_config(), full_data=False)


def test_correction_mode_submits_corrections_of_the_prediction(tmp_path):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    run(source, tmp_path / "out", rounds=2, strategies=("random",), full_data=False, correction_mode=True)
    with Session.open(tmp_path / "out" / "projects" / "random-seed0", annotator="oracle") as session:
        kinds = [e.kind for e in session.catalog.events() if e.label_version is not None]
    assert kinds == ["manual", "manual", "corrected", "corrected"]  # no model to correct in round 1


def test_quality_threshold_accepts_acceptable_predictions_as_free_pseudo_labels(tmp_path, monkeypatch):
    from napari_alseg.strategies import QueryItem, Suggestion

    def rated_acceptable(queries):  # stands in for a fitted quality predictor
        project = queries.project
        open_cases = [c.name for c in project.cases if project.current_labels(c.name) is None
                      and (c.name, None) not in project.validation_items()]
        return [Suggestion(QueryItem(open_cases[0]), 1.0, "quality-threshold", {}, None, pseudo_label=True)]

    monkeypatch.setattr(Queries, "pseudo_label_candidates", rated_acceptable)
    source = make_source(tmp_path / "source", granularity="case", n_cases=8, shape=(8, 24, 24))
    rows = read_rounds(run(source, tmp_path / "out", rounds=2, strategies=("quality-threshold",),
                           full_data=False, correction_mode=True))
    with Session.open(tmp_path / "out" / "projects" / "quality-threshold-seed0", annotator="oracle") as session:
        kinds = [e.kind for e in session.catalog.events() if e.label_version is not None]
    assert kinds.count("pseudo-accepted") == 1  # after round 2's expert answers (round 1 has no model)
    assert [r["labelled_items"] for r in rows] == [2, 4]  # the expert's items only


def test_interpolated_effort_to_reach():
    ones = np.ones(3)
    curve = Curve("x", np.array([1, 2, 3]), 1,
                  {"dice_test": np.array([0.2, 0.6, 0.8]), "effort_boundary_mm": np.array([10.0, 20.0, 40.0]),
                   "effort_boundary_pct": np.array([1.0, 2.0, 4.0]), "labelled_items": ones,
                   "effort_items_pct": ones, "labelled_slices": ones}, {})
    reached = effort_to_reach(curve, 0.7)
    assert reached.boundary_mm == pytest.approx(30.0) and reached.round == pytest.approx(2.5)
    assert effort_to_reach(curve, 0.9) is None


def test_simulate_help():
    done = subprocess.run([sys.executable, "-m", "napari_alseg.cli", "simulate", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--strategies" in done.stdout


@pytest.mark.slow
def test_score_on_dask_workers_equals_in_process(tmp_path):
    from napari_alseg.cli import main

    source = make_source(tmp_path / "source", granularity="case", n_cases=5, shape=(16, 32, 32))
    run(source, tmp_path / "out", rounds=1, strategies=("random",), full_data=False, test_fraction=0.2)
    project = tmp_path / "out" / "projects" / "random-seed0"
    assert main(["score", str(project), str(tmp_path / "local.csv")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "napari_alseg.cli", "score", str(project),
                           str(tmp_path / "dask.csv"), "--workers", "2"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    local, remote = (list(csv.DictReader((tmp_path / name).open())) for name in ("local.csv", "dask.csv"))
    assert [r["case"] for r in local] == [r["case"] for r in remote] and local
    for a, b in zip(local, remote):
        assert float(a["score"]) == pytest.approx(float(b["score"]), rel=1e-5)


def chunk(seed, number, dice, converged, budget=3):
    return {"seed": str(seed), "budget_rounds": str(budget), "chunk": str(number), "dice_test": str(dice),
            "spread_last": "0.01" if converged else "0.2", "converged": "1" if converged else "0"}


def test_a_reference_below_an_active_learning_round_or_unconverged_is_a_defect():
    rows = [{"strategy": FULL_DATA, "seed": 0, "round": 3, "dice_test": 0.8},
            {"strategy": FULL_DATA, "seed": 1, "round": 3, "dice_test": 0.6},
            {"strategy": "random", "seed": 0, "round": 2, "dice_test": 0.7},
            {"strategy": "random", "seed": 1, "round": 2, "dice_test": 0.65},
            {"strategy": "random", "seed": 1, "round": 3, "dice_test": 0.62}]
    fine = [chunk(0, n, 0.8, n == 3) for n in (1, 2, 3)] + [chunk(1, n, 0.6, n == 3) for n in (1, 2, 3)]
    defects = reference_defects(rows, fine)
    assert len(defects) == 1 and defects[0].startswith("DEFECT: seed 1")
    assert "0.600" in defects[0] and "random's round 2 (0.650)" in defects[0]
    unconverged = [chunk(0, n, 0.8, False) for n in range(1, 7)] + fine[3:]
    defects = reference_defects(rows, unconverged)
    assert any("seed 0" in d and "did not converge in 6 chunks" in d for d in defects)
    assert any("no per-chunk" in d for d in reference_defects(rows, fine[:3]))  # seed 1 unchecked
    assert reference_defects(rows[2:], fine) == []  # no reference, nothing to check


def test_the_report_states_a_defective_reference(tmp_path):
    from napari_alseg.simulation import write_report

    columns = ("strategy", "seed", "round", "labelled_items", "labelled_slices", "effort_items_pct",
               "effort_boundary_px", "effort_boundary_mm", "effort_boundary_pct", "effort_seconds_est",
               "dice_test", "wall_seconds", "model_version")
    values = [("random", 0, 1, 0.5), ("random", 0, 2, 0.9), (FULL_DATA, 0, 2, 0.7)]
    with (tmp_path / "rounds.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for strategy, seed, round_index, dice in values:
            writer.writerow({**dict.fromkeys(columns, "1"), "strategy": strategy, "seed": seed, "round": round_index,
                             "dice_test": dice, "model_version": "v"})
    with (tmp_path / REFERENCE_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ("seed", "budget_rounds", "chunk", "dice_test", "spread_last", "converged"))
        writer.writeheader()
        writer.writerows([chunk(0, 1, 0.69, False, budget=2), chunk(0, 2, 0.7, True, budget=2)])
    write_report(tmp_path)
    text = (tmp_path / TABLE_MD).read_text()
    assert "**DEFECT: seed 0: the full-data reference (test Dice 0.700) scores below random's round 2" in text
    assert "defect report, not as results" in text


def test_full_data_dice_uses_the_largest_budget_only():
    rows = [{"strategy": FULL_DATA, "seed": 0, "round": 4, "dice_test": 0.5},
            {"strategy": FULL_DATA, "seed": 0, "round": 8, "dice_test": 0.7},
            {"strategy": FULL_DATA, "seed": 1, "round": 8, "dice_test": 0.8},
            {"strategy": "random", "seed": 0, "round": 8, "dice_test": 0.9}]
    assert full_data_dice(rows) == pytest.approx(0.75)
    assert math.isnan(full_data_dice(rows[3:]))


def test_dice_at_equal_effort_interpolates_inside_the_curve_only():
    curve = Curve("x", np.array([1, 2, 3]), 1,
                  {"dice_test": np.array([0.2, 0.6, 0.8]), "effort_boundary_pct": np.array([10.0, 20.0, 40.0])}, {})
    assert dice_at_effort(curve, 15.0) == pytest.approx(0.4)
    assert dice_at_effort(curve, 30.0) == pytest.approx(0.7)
    assert math.isnan(dice_at_effort(curve, 5.0)) and math.isnan(dice_at_effort(curve, 50.0))



# ----------------------------------------------------------------- plans and `alseg simulate`

PLANS = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"


def test_a_plan_round_trips_through_json_and_refuses_unknown_keys(tmp_path):
    from napari_alseg.errors import AlsegError
    from napari_alseg.simulation.plans import BenchmarkPlan, Group, load_plan, plan_from_dict, save_plan

    plan = BenchmarkPlan((Group("rois", ("random-roi", "dice-per-effort"), 10),
                          Group("fix", ("random",), 2, initial_items=3, correction_mode=True)),
                         rounds=4, seeds=(0, 2), dataset="brain-stack-72", downsample=2, steps=50,
                         patch_size=(64, 64), dataset_options={"size": 40})
    assert load_plan(save_plan(plan, tmp_path / "plan.json")) == plan
    with pytest.raises(AlsegError, match="unknown keys"):
        plan_from_dict({"groups": [], "rounds": 2, "round": 3})
    with pytest.raises(AlsegError, match="unknown group keys"):
        plan_from_dict({"groups": [{"name": "a", "strategies": ["random"], "batch": 2}], "rounds": 2})


@pytest.mark.parametrize("path", sorted(PLANS.glob("*.json")), ids=lambda path: path.stem)
def test_the_shipped_plans_name_real_strategies_with_both_random_baselines(path):
    from napari_alseg.simulation.plans import load_plan
    from napari_alseg.strategies import STRATEGIES, get_strategy

    plan = load_plan(path)
    for group in plan.groups:
        assert set(group.strategies) <= set(STRATEGIES)
        assert {"random-foreground", "random-foreground-roi"} & set(group.strategies)
        assert {"random", "random-roi"} & set(group.strategies)
        # a 2D stack's session ranks ROIs for ROI strategies, slices for the others: one unit per group
        roi = "brain-stack" in path.stem and any(get_strategy(name).granularity == "roi" for name in group.strategies)
        assert ("random-foreground-roi" in group.strategies) == roi
    if path.stem.startswith("standard"):
        assert plan.dataset in ("brain-stack-72", "tumour-cases-60") and plan.steps is not None


def test_a_downsampled_copy_halves_slices_in_plane_and_cases_in_3d(tmp_path):
    from napari_alseg.nifti import load_volume
    from napari_alseg.simulation.datasets import downsampled_copy

    for granularity, expected in (("slice", (6, 16, 16)), ("case", (3, 16, 16))):
        source = make_source(tmp_path / granularity, granularity=granularity, n_cases=1, shape=(6, 32, 33))
        small = downsampled_copy(source, tmp_path / f"{granularity}-down2", 2)
        image = load_volume(small / "case_000" / "case_000_t1.nii.gz")
        labels = load_volume(small / "case_000" / "case_000_seg.nii.gz")
        big = load_volume(source / "case_000" / "case_000_seg.nii.gz")
        assert image.data.shape == labels.data.shape == expected and labels.is_label
        assert set(np.unique(labels.data)) <= set(np.unique(big.data))
        np.testing.assert_allclose(np.abs(np.diag(labels.affine))[:3][::-1] / np.abs(np.diag(big.affine))[:3][::-1],
                                   [1 if granularity == "slice" else 2, 2, 2])
        assert (small / "classes.json").exists()
        assert downsampled_copy(source, tmp_path / f"{granularity}-down2", 2) == small  # kept for reruns


def test_alseg_simulate_runs_a_plan_file_with_overrides_and_shows_time_left(tmp_path, capsys):
    from napari_alseg.cli import main
    from napari_alseg.simulation.plans import BenchmarkPlan, Group, save_plan

    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    plan = BenchmarkPlan((Group("rois", ("random-roi", "random-foreground"), 3),
                          Group("slices", ("random",), 2)), rounds=5, seeds=(0,), steps=40)
    save_plan(plan, tmp_path / "plan.json")
    out = tmp_path / "out"
    assert main(["simulate", str(source), str(out), "--plan", str(tmp_path / "plan.json"), "--rounds", "1",
                 "--steps", "2", "--train-batch", "2", "--patch", "32", "32", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "[1/4 rounds" in printed and "left]" in printed and "[4/4 rounds" in printed  # 3 runs + reference
    rows = read_rounds(out / "rounds.csv")
    assert sorted((r["strategy"], r["round"]) for r in rows) == [
        (FULL_DATA, 1), ("random", 1), ("random-foreground", 1), ("random-roi", 1)]
    settings = (out / "groups" / "rois" / "settings.json").read_text()
    assert '"steps": 2' in settings and '"batch_size": 2' in settings
    assert (out / REFERENCE_CSV).exists() and (out / TABLE_MD).exists()
    with pytest.raises(SystemExit):
        main(["simulate", str(source), str(out), "--plan", str(tmp_path / "plan.json"), "--bogus"])
    assert main(["simulate", str(source), str(out), "--plan", str(tmp_path / "plan.json"), "--batch", "3"]) == 2
