"""The cohort benchmark: seconds per finished item under each workflow, and a cohort left all done."""

import os

import numpy as np
import pytest
import synthetic_cases

from napari_alseg.errors import AlsegError
from napari_alseg.quality import ACCEPTABLE, MIN_FIT_CASES, POOR
from napari_alseg.session import Session, import_model_backend
from napari_alseg.session.queries import Queries
from napari_alseg.store import Project
from napari_alseg.simulation.cohort import run_cohort
from napari_alseg.simulation.cohort_files import ACCEPTED, CLICK, CORRECT, ITEMS_CSV, NO_ENGINE, REVIEW, TRACE
from napari_alseg.simulation.cohort_report import REPORT_MD, outcomes, read_csv
from napari_alseg.simulation.measure import PoolTotals, is_labelled
from napari_alseg.pricing import SecondsCosts, costs_from_dict, redraw, review_slices, trace_mm


@pytest.fixture(scope="module", autouse=True)
def torch_imported():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import_model_backend()


def square(shape=(40, 40), top=10, left=10, size=16, value=1):
    plane = np.zeros(shape, np.uint8)
    plane[top:top + size, left:left + size] = value
    return plane


# ------------------------------------------------------------------ pricing


def test_an_outline_within_the_tolerance_is_not_redrawn_but_counts_as_changed():
    truth, prefill = square(), square(left=11)  # one pixel to the right
    fix = redraw(prefill, truth, [1], (1.0, 1.0), tolerance_mm=2.0)
    assert fix.mm == 0.0 and fix.erase_clicks == 0
    assert fix.changed_mm > 0  # the older measure charges the moved outline


def test_an_outline_far_off_is_redrawn_and_nothing_prefilled_is_traced_in_full():
    truth = square()
    outline = trace_mm(truth, [1], (1.0, 1.0))
    assert redraw(np.zeros_like(truth), truth, [1], (1.0, 1.0), 2.0).mm == pytest.approx(outline)
    far = redraw(square(left=20), truth, [1], (1.0, 1.0), 2.0)  # 10 px off: the left and shared sides redrawn
    assert 0.4 * outline < far.mm < outline
    assert redraw(truth, truth, [1], (1.0, 1.0), 2.0).mm == 0.0


def test_a_stray_component_costs_one_erase_click_and_spacing_scales_the_tolerance():
    truth = square()
    prefill = truth.copy()
    prefill[32:36, 32:36] = 1
    assert redraw(prefill, truth, [1], (1.0, 1.0), 2.0).erase_clicks == 1
    two_off = square(left=12)
    assert redraw(two_off, truth, [1], (1.0, 1.0), 2.0).mm == 0.0  # 2 mm off: within the tolerance
    assert redraw(two_off, truth, [1], (1.0, 1.0), 1.5).mm > 0
    # coarse pixels: one pixel (3 mm) off is the finest correction, not redrawn; two are
    assert redraw(square(left=11), truth, [1], (3.0, 3.0), 2.0).mm == 0.0
    assert redraw(two_off, truth, [1], (3.0, 3.0), 2.0).mm > 0


def test_review_counts_slices_showing_a_structure_at_least_one():
    volume = np.zeros((5, 8, 8), np.uint8)
    assert review_slices(volume) == 1
    volume[1:4, 2, 2] = 1
    assert review_slices(volume) == 3


def test_costs_refuse_unknown_keys_and_negative_values():
    assert costs_from_dict({"click_seconds": 2}).click_seconds == 2.0
    with pytest.raises(AlsegError, match="unknown keys"):
        costs_from_dict({"click_second": 2})
    with pytest.raises(AlsegError, match=">= 0"):
        SecondsCosts(review_seconds_per_slice=-1)


# ------------------------------------------------------------------ the loop


def blob_cases(root):
    return synthetic_cases.blob_source(root, granularity="case", n_cases=7, shape=(6, 32, 32))


def run_tiny(source, out, **options):
    return run_cohort(source, out, engines=options.pop("engines", ["random"]), seeds=[0], rounds=2, batch_size=1,
                      initial_items=1, train_config=synthetic_cases.tiny_config(device="cpu"),
                      show=lambda line: None, **options)


def test_the_cohort_ends_all_done_and_the_seconds_add_up_per_workflow(tmp_path):
    source = blob_cases(tmp_path / "source")
    out = run_tiny(source, tmp_path / "out")
    rows = read_csv(out / ITEMS_CSV)
    with Session.open(out / "projects" / "random-seed0", annotator="oracle") as session:
        pool = PoolTotals.of(session).regions
        assert all(is_labelled(session, item) for item in pool)
        spacing = session.view.in_plane_spacing(pool[0].case)
        truth_outline = sum(trace_mm(session.catalog.ground_truth(item.case), [1, 2], spacing) for item in pool)
    for workflow in (TRACE, CORRECT, CLICK, REVIEW):  # one row per pool item and workflow
        assert sorted(r["case"] for r in rows if r["workflow"] == workflow) == sorted(i.case for i in pool)
    traced = sum(float(r["seconds"]) for r in rows if r["workflow"] == TRACE)
    assert traced == pytest.approx(SecondsCosts().trace_seconds_per_mm * truth_outline, rel=1e-4)
    assert {r["engine"] for r in rows if r["workflow"] == TRACE} == {NO_ENGINE}
    # the round 1 item had no model: traced under correct, clicked model-free under clicks
    first = [r for r in rows if r["round"] == "1"]
    assert {r["how"] for r in first if r["workflow"] == CORRECT} == {"traced"}
    assert {r["how"] for r in first if r["workflow"] == CLICK} == {"clicked"}
    table = {(o.engine, o.workflow): o for o in outcomes(rows)}
    assert table[(NO_ENGINE, TRACE)].percent == (pytest.approx(100.0),)
    for workflow in (CORRECT, CLICK, REVIEW):
        total = sum(float(r["seconds"]) for r in rows if r["workflow"] == workflow)
        assert table[("random", workflow)].percent[0] == pytest.approx(100 * total / traced, rel=1e-4)
        assert table[("random", workflow)].hours[0] == pytest.approx(total / 3600, rel=1e-4)
    assert "| random | review |" in (out / REPORT_MD).read_text()


def test_an_accepted_bad_pseudo_label_is_an_error(tmp_path, monkeypatch):
    from napari_alseg.quality import QualityEstimate

    def rate_everything_acceptable(self, items):
        return [QualityEstimate(0.95, 0.9, 1.0, ACCEPTABLE) for _ in items]

    monkeypatch.setattr(Queries, "rate_items", rate_everything_acceptable)
    monkeypatch.setattr(Queries, "n_quality_examples", property(lambda self: MIN_FIT_CASES))  # calibrated
    source = blob_cases(tmp_path / "source")
    out = run_tiny(source, tmp_path / "out")
    rows = [r for r in read_csv(out / ITEMS_CSV) if r["workflow"] == REVIEW and r["how"] == ACCEPTED]
    with Session.open(out / "projects" / "random-seed0", annotator="oracle") as session:
        pool = PoolTotals.of(session).regions
    assert len(rows) == len(pool) - 2  # the pool less the 2 labelled in the rounds
    for row in rows:
        assert float(row["final_dice"]) == float(row["prefill_dice"])
        assert int(row["accept_error"]) == int(float(row["final_dice"]) < 0.8)
    # a four-step model is bad: some accepted labels are errors, and the table says how many
    errors = sum(int(r["accept_error"]) for r in rows)
    assert errors > 0
    outcome = next(o for o in outcomes(read_csv(out / ITEMS_CSV)) if o.workflow == REVIEW)
    assert (outcome.accepted, outcome.errors) == (len(rows), errors)


def test_an_uncalibrated_acceptable_rating_is_not_accepted(tmp_path, monkeypatch):
    """As the dock: a rating still (nearly) the model's own soft Dice sends the item to the expert."""
    from napari_alseg.quality import QualityEstimate

    monkeypatch.setattr(Queries, "rate_items",
                        lambda self, items: [QualityEstimate(0.95, 0.9, 1.0, ACCEPTABLE)] * len(items))
    monkeypatch.setattr(Queries, "n_quality_examples", property(lambda self: MIN_FIT_CASES - 1))
    out = run_tiny(blob_cases(tmp_path / "source"), tmp_path / "out")
    review = [r for r in read_csv(out / ITEMS_CSV) if r["workflow"] == REVIEW]
    assert review and ACCEPTED not in {r["how"] for r in review}


def test_nothing_rated_acceptable_is_clicked_and_a_rerun_adds_only_new_runs(tmp_path, monkeypatch):
    from napari_alseg.quality import QualityEstimate

    monkeypatch.setattr(Queries, "rate_items", lambda self, items: [QualityEstimate(0.2, 0.1, 0.3, POOR)] * len(items))
    source = blob_cases(tmp_path / "source")
    out = run_tiny(source, tmp_path / "out")
    review = [r for r in read_csv(out / ITEMS_CSV) if r["workflow"] == REVIEW]
    assert ACCEPTED not in {r["how"] for r in review}
    before = len(read_csv(out / ITEMS_CSV))
    run_tiny(source, out)
    assert len(read_csv(out / ITEMS_CSV)) == before
    with pytest.raises(AlsegError, match="other settings"):
        run_cohort(source, out, engines=["random"], seeds=[0], rounds=3, batch_size=1, initial_items=1,
                   train_config=synthetic_cases.tiny_config(device="cpu"), show=lambda line: None)


def test_roi_engines_are_refused_for_a_cohort(tmp_path):
    with pytest.raises(AlsegError, match="ROIs"):
        run_tiny(tmp_path, tmp_path / "out", engines=["dice-per-effort"])


def test_alseg_simulate_cohort_runs_and_prices_with_a_costs_file(tmp_path, capsys):
    from napari_alseg.cli import main

    source = blob_cases(tmp_path / "source")
    costs = tmp_path / "costs.json"
    costs.write_text('{"click_seconds": 1.5}')
    assert main(["simulate", str(source), str(tmp_path / "out"), "--cohort", "--strategies", "random",
                 "--seeds", "1", "--rounds", "1", "--batch", "1", "--steps", "2", "--costs", str(costs)]) == 0
    shown = capsys.readouterr().out
    assert "[1/2 steps" in shown and "left]" in shown and "report:" in shown
    assert "`click_seconds`: 1.5" in (tmp_path / "out" / REPORT_MD).read_text()
    costs.write_text('{"click_secs": 1}')
    assert main(["simulate", str(source), str(tmp_path / "out2"), "--cohort", "--costs", str(costs)]) == 2
    assert "unknown keys ['click_secs']" in capsys.readouterr().err
    assert main(["simulate", str(source), str(tmp_path / "out3"), "--costs", str(costs)]) == 2
    assert "--costs prices a cohort" in capsys.readouterr().err


# ------------------------------------------------------------------ priced in seconds


def test_expected_seconds_grow_with_the_doubt_along_the_outline_and_are_unknown_without_a_structure():
    from napari_alseg.pricing import expected_seconds

    mask = np.zeros((3, 32, 32), np.float32)
    mask[:, 8:24, 8:24] = 1
    sure = np.stack([1 - mask, mask])
    doubtful = np.stack([1 - 0.6 * mask - 0.2, 0.6 * mask + 0.2])  # same argmax, softer
    costs = SecondsCosts()
    assert expected_seconds(sure, (1.0, 1.0)) == pytest.approx(3 * costs.review_seconds_per_slice)
    assert expected_seconds(doubtful, (1.0, 1.0)) > expected_seconds(sure, (1.0, 1.0)) + 10
    assert np.isnan(expected_seconds(np.stack([np.ones((3, 8, 8)), np.zeros((3, 8, 8))]), (1.0, 1.0)))


def test_the_seconds_priced_engine_ranks_equal_doubt_by_expected_seconds():
    from napari_alseg.pool import PoolScores
    from napari_alseg.strategies import QueryItem, SelectionContext, get_strategy, select

    terms = {"cheap": {"entropy": 0.3, "expected_s": 60.0}, "dear": {"entropy": 0.3, "expected_s": 1000.0},
             "unknown": {"entropy": 0.3, "expected_s": float("nan")},  # priced at the median, 300 s
             "doubtful": {"entropy": 0.9, "expected_s": 300.0}}
    pool = PoolScores("case", 3, True, "v1", [QueryItem(c) for c in terms], [],
                      terms={QueryItem(c): v for c, v in terms.items()})
    ranked = [s.item.case for s in get_strategy("entropy-per-second").select(pool, 4, 0, SelectionContext())]
    assert ranked == ["cheap", "doubtful", "unknown", "dear"]
    # through the registry, as the session and the cohort call it: the pool serves the expected
    # seconds, so the engine ranks instead of falling back to random
    picks = select("entropy-per-second", pool, 4, 0)
    assert [s.item.case for s in picks] == ranked and not any("random" in s.message for s in picks)
    unpriced = [s.item.case for s in get_strategy("entropy").select(pool, 1, 0, SelectionContext())]
    assert unpriced == ["doubtful"]


# ------------------------------------------------------------------ the dock's cohort line


def test_the_cohort_seconds_count_done_items_and_price_the_rest_once_scored(tmp_path):
    source = blob_cases(tmp_path / "source")
    project = Project.create(tmp_path / "project", source, annotator="ann")
    with Session(project, annotator="ann", train_config=synthetic_cases.tiny_config(device="cpu")) as session:
        first = session.cohort_seconds()
        assert first.items_done == 0 and first.left_with_model_s is None and first.trace_rest_s is None
        pool = session.suggest(50)
        case = pool[0].item.case
        truth = session.catalog.ground_truth(case)
        session.submit(case, truth, seconds_active=120.0)
        after = session.cohort_seconds()
        assert (after.items_done, after.items_left) == (1, first.items_left - 1)
        outline = trace_mm(truth, [1, 2], session.view.in_plane_spacing(case))
        assert after.traced_done_s == pytest.approx(SecondsCosts().trace_seconds_per_mm * outline)
        assert after.spent_s == 120.0 and after.saved_s == pytest.approx(after.traced_done_s - 120.0)
        assert after.trace_rest_s is not None and after.trace_rest_s > 0
        session.retrain()
        session.rescore()
        scored = session.cohort_seconds()
        assert scored.left_with_model_s is not None and scored.left_with_model_s > 0


def test_the_cohort_line_reads_as_durations():
    from napari_alseg._qt.effort_tab import cohort_text, hours_text
    from napari_alseg.session.cohort_time import CohortSeconds

    assert [hours_text(s) for s in (40, 720, 11100)] == ["40 s", "12 min", "3 h 05 min"]
    text = cohort_text(CohortSeconds(12, 36, 3900.0, 9000.0, 11400.0, 34800.0))
    assert text == ("Cohort: 12 of 48 items done, 1 h 05 min spent (tracing them: 2 h 30 min, saved 1 h 25 min). "
                    "Left: ~3 h 10 min with the current model; tracing the rest ~9 h 40 min.")
    assert "more than tracing" in cohort_text(CohortSeconds(1, 1, 600.0, 300.0, None, None))
    untimed = cohort_text(CohortSeconds(2, 0, 0.0, 300.0, None, None))  # a script's or imported labels
    assert untimed == "Cohort: 2 of 2 items done (untimed: tracing them would take 5 min)." and "saved" not in untimed
