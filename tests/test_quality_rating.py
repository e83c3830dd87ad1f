"""Quality ratings that read the prediction (issue 22 item 4): predicted Dice with an interval,
from the first retrain with any number of examples; ROI submits add examples; session.queries.rate_items."""

import numpy as np
import pytest
import synthetic_cases

from napari_alseg.domain import QueryItem
from napari_alseg.errors import AlsegError
from napari_alseg.quality import ACCEPTABLE, ADJUST, POOR, QualityEstimate
from napari_alseg.session import Session
from napari_alseg.store import Project

from synthetic_cases import tiny_config, validation_cases

pytestmark = pytest.mark.usefixtures("model_backend")


def test_rate_items_rates_any_pool_item_and_reuses_the_pools_ratings(tmp_path):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity="case", n_cases=6, shape=(8, 24, 24))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=3, validation_fraction=0.2)
    training = [c.name for c in project.cases if c.name not in validation_cases(project)]
    with Session(project, annotator="dr-q", train_config=tiny_config(steps=2, batch_size=1)) as session:
        with pytest.raises(AlsegError, match="no model yet"):
            session.queries.rate_items([QueryItem(training[1])])
        session.submit(training[0], project.ground_truth(training[0]), seconds_active=30)
        session.retrain()  # one labelled case: no fold, the validation split alone
        session.rescore()
        rows = session.queries.quality_rows()
        assert rows and all(isinstance(estimate, QualityEstimate) for _item, estimate in rows)
        assert [e.dice for _i, e in rows] == sorted((e.dice for _i, e in rows), reverse=True)
        items = [item for item, _estimate in rows]
        rated = session.queries.rate_items(items)
        assert rated == [estimate for _item, estimate in rows]  # the pool's own ratings, as the tab shows them
        for estimate in rated:
            assert 0.0 <= estimate.low <= estimate.dice <= estimate.high <= 1.0
            assert estimate.quality_class in (POOR, ADJUST, ACCEPTABLE)
            assert estimate.class_name in ("Poor", "Acceptable with adjustments", "Acceptable")
        # an item the pool did not rate (the labelled case): rated now from a prediction of it
        fresh = session.queries.rate_items([QueryItem(training[0]), items[0]])
        assert len(fresh) == 2 and fresh[1] == rated[0]
        assert 0.0 <= fresh[0].low <= fresh[0].dice <= fresh[0].high <= 1.0


def test_a_first_retrain_rates_from_no_example_and_says_so(tmp_path):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity="case", n_cases=4, shape=(8, 24, 24))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=3, validation_fraction=0.0)
    assert not validation_cases(project)
    training = [c.name for c in project.cases]
    with Session(project, annotator="dr-q", train_config=tiny_config(steps=2, batch_size=1)) as session:
        session.submit(training[0], project.ground_truth(training[0]), seconds_active=30)
        session.retrain()
        session.rescore()
        assert session.queries.n_quality_examples == 0
        rows = session.queries.quality_rows()
        assert len(rows) == len(training) - 1 and session.queries.quality_status == ""
        assert "uncalibrated" in session.queries.quality_note and "soft Dice" in session.queries.quality_note
        assert all(row[1].high - row[1].low > 0.3 or row[1].low == 0.0 or row[1].high == 1.0 for row in rows)


def test_roi_submits_add_examples_with_their_class_dice(tmp_path):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(10, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=1)
    held_out = {n for _case, n in project.validation_items()}
    truth = project.ground_truth("case_000")
    labelled = [n for n in range(10) if n not in held_out][:3]
    with Session(project, annotator="dr-q", strategy="dice-per-effort", train_config=tiny_config()) as session:
        for n in labelled:
            session.submit("case_000", truth[n], slice_index=n, seconds_active=3)
        session.retrain()
        session.rescore()
        roi = next(s.item for s in session.suggest(20) if s.item.class_id is not None)
        before = session.queries.n_quality_examples
        seen = session.predict_labels(roi.case, roi.slice_index)
        mask = np.where(truth[roi.slice_index] == roi.class_id, roi.class_id, 0).astype(truth.dtype)
        session.submit(roi.case, mask, slice_index=roi.slice_index, class_id=roi.class_id,
                       original=seen, seconds_active=5)
        assert session.queries.n_quality_examples == before + 1
        stored = {(c, s, k): d for c, s, k, _f, d in session._project.quality_examples()}
        predicted, submitted = seen == roi.class_id, mask == roi.class_id
        both = predicted.sum() + submitted.sum()
        expected = 2.0 * (predicted & submitted).sum() / both if both else 1.0
        assert stored[(roi.case, roi.slice_index, roi.class_id)] == pytest.approx(expected)
        # and the ROI can be rated through the public API, by its class's features
        estimate = session.queries.rate_items([roi])[0]
        assert 0.0 <= estimate.low <= estimate.dice <= estimate.high <= 1.0

