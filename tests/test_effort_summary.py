"""Effort that adds up (issue 14 item 4): the "all classes" row is the sum of the class rows,
whole-slice submits are split between classes, remaining effort in estimated seconds from
the annotator's timing, and case suggestions carry their remaining effort."""

import numpy as np
import pytest

import synthetic_cases
from napari_alseg.domain import TERM_EFFORT_MM, TERM_EFFORT_S
from napari_alseg.session import Session
from napari_alseg.session.accounting import ALL_CLASSES, SUMMARY_KEYS
from napari_alseg.store import Project


def open_session(tmp_path, granularity, shape, n_cases):
    source = synthetic_cases.make_source(tmp_path / "source", granularity=granularity, n_cases=n_cases,
                                         shape=shape, classes=synthetic_cases.BLOB_CLASSES)
    return Session(Project.create(tmp_path / "project", source, annotator="dr-a", seed=1), annotator="dr-a")


def assert_totals_add_up(summary):
    classes = [name for name in summary if name != ALL_CLASSES]
    for key in SUMMARY_KEYS:
        parts = [summary[name][key] for name in classes]
        if all(np.isfinite(parts)):
            assert summary[ALL_CLASSES][key] == pytest.approx(sum(parts)), key
        else:
            assert not np.isfinite(summary[ALL_CLASSES][key]), key


def test_totals_equal_the_sum_of_the_classes_after_whole_slice_and_roi_submits(tmp_path):
    with open_session(tmp_path, "slice", (6, 32, 32), 1) as session:
        truth = session.catalog.ground_truth("case_000")
        before = session.accounting.effort_summary()
        assert_totals_add_up(before)
        assert before[ALL_CLASSES]["spent_mm"] == 0
        session.submit("case_000", truth[0], slice_index=0, seconds_active=40)  # whole slice
        roi = np.where(truth[1] == 2, 2, 0).astype(np.uint8)
        session.submit("case_000", roi, slice_index=1, class_id=2, seconds_active=15)
        summary = session.accounting.effort_summary()
        assert_totals_add_up(summary)
        events = session.catalog.events()
        assert summary[ALL_CLASSES]["spent_mm"] == pytest.approx(sum(e.boundary_mm for e in events))
        assert summary[ALL_CLASSES]["spent_s"] == pytest.approx(55)
        assert summary["core"]["spent_mm"] > 0 and summary["rim"]["spent_mm"] > events[1].boundary_mm
        assert summary["core"]["remaining_mm"] > 0 and summary[ALL_CLASSES]["remaining_mm"] > 0


def test_remaining_seconds_come_from_the_annotators_timing_once_fitted(tmp_path):
    with open_session(tmp_path, "slice", (6, 32, 32), 1) as session:
        truth = session.catalog.ground_truth("case_000")
        session.submit("case_000", truth[0], slice_index=0, seconds_active=40)
        assert np.isnan(session.accounting.effort_summary()[ALL_CLASSES]["remaining_s"])  # one timed event: no fit
        half = truth[1].copy()
        half[:, 16:] = 0
        session.submit("case_000", half, slice_index=1, seconds_active=25)
        summary = session.accounting.effort_summary()
        assert_totals_add_up(summary)
        seconds_model = session.accounting.seconds_model()
        assert seconds_model is not None and summary[ALL_CLASSES]["remaining_s"] > 0
        assert summary["core"]["remaining_s"] > 0 and summary["rim"]["remaining_s"] > 0


def test_case_suggestions_carry_their_remaining_effort(tmp_path):
    with open_session(tmp_path, "case", (6, 24, 24), 3) as session:
        truth = session.catalog.ground_truth("case_000")
        session.submit("case_000", truth, seconds_active=100)
        session.submit("case_001", np.where(truth == 1, 1, 0).astype(np.uint8), seconds_active=60)
        suggestions = session.suggest(5, priced=True)
        assert suggestions and all(s.item.slice_index is None for s in suggestions)
        for suggestion in suggestions:
            assert suggestion.terms[TERM_EFFORT_MM] > 0 and suggestion.terms[TERM_EFFORT_S] > 0
        summary = session.accounting.effort_summary()
        assert_totals_add_up(summary)
        regions = session.accounting.remaining_by_region()  # the suggestions' numbers add up too
        assert {s.item.case for s in suggestions} <= {case for case, _ in regions}
        assert sum(regions[(s.item.case, None)][0].sum() for s in suggestions) == pytest.approx(
            sum(s.terms[TERM_EFFORT_MM] for s in suggestions))
        assert sum(mm.sum() for mm, _ in regions.values()) == pytest.approx(summary[ALL_CLASSES]["remaining_mm"])
        assert TERM_EFFORT_MM not in session.suggest(5)[0].terms  # ranking alone reads no labels
