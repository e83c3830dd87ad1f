"""The rescore race (issue 12): an item submitted or skipped while the pool is being scored
must not come back as a suggestion when the new scores are adopted."""

import pytest
import synthetic_cases

from napari_alseg.run_control import RunControl
from napari_alseg.session import Session
from napari_alseg.store import Project

pytestmark = pytest.mark.usefixtures("model_backend")


@pytest.fixture
def trained_session(tmp_path):
    source = synthetic_cases.make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32),
                                         classes=synthetic_cases.BLOB_CLASSES)
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a", train_config=synthetic_cases.tiny_config(steps=2)) as session:
        held_out = {n for _, n in project.validation_items()}
        open_slices = [n for n in range(6) if n not in held_out]
        truth = project.ground_truth("case_000")
        session.submit("case_000", truth[open_slices[0]], slice_index=open_slices[0], seconds_active=1)
        session.retrain()
        yield session, open_slices[1:]


def test_an_item_submitted_during_a_rescore_is_not_suggested_again(trained_session):
    """The annotator submits while the worker scores (here: from the progress callback)."""
    session, open_slices = trained_session
    truth = session.catalog.ground_truth("case_000")
    submitted = []

    def annotator_submits_meanwhile(_update):
        if not submitted:
            n = open_slices[0]
            session.submit("case_000", truth[n], slice_index=n, seconds_active=1)
            submitted.append(n)

    session.rescore(control=RunControl(annotator_submits_meanwhile))
    suggested = {s.item.slice_index for s in session.suggest(100)}
    assert submitted and submitted[0] not in suggested
    assert suggested  # the rest of the pool is still served


def test_compute_then_adopt_drops_items_submitted_or_skipped_in_between(trained_session):
    session, open_slices = trained_session
    truth = session.catalog.ground_truth("case_000")
    result = session.queries.compute_rescore()
    n_submitted, n_skipped = open_slices[:2]
    session.submit("case_000", truth[n_submitted], slice_index=n_submitted, seconds_active=1)
    session.skip(type(result.pool.candidates[0])("case_000", n_skipped))
    assert not session._project.has_scores(session.learner.model_version)  # computing changed nothing
    session.queries.adopt_rescore(result)
    suggested = {s.item.slice_index for s in session.suggest(100)}
    assert n_submitted not in suggested and n_skipped not in suggested
    assert session._project.has_scores(session.learner.model_version)


def test_compute_rescore_leaves_session_state_alone(trained_session):
    session, _open = trained_session
    before = session.suggest(100)
    session.queries.compute_rescore()
    after = session.suggest(100)
    assert [s.item for s in after] == [s.item for s in before]
    assert not session._project.has_scores(session.learner.model_version)


def test_a_computed_round_changes_nothing_until_it_is_adopted(trained_session):
    session, open_slices = trained_session
    truth = session.catalog.ground_truth("case_000")
    trained = session.compute_round()
    assert not trained.cancelled and session.learner.model_version == "v0001"
    assert len(session.catalog.checkpoints()) == 1
    session.submit("case_000", truth[open_slices[0]], slice_index=open_slices[0], seconds_active=1)  # meanwhile
    report = session.adopt_round(trained)
    assert report.model_version == session.learner.model_version == "v0002" and not report.cancelled
    assert trained.n_items == 1  # trained on the labels as they were when the round started


def test_a_cancelled_round_adopts_to_nothing(trained_session):
    session, _open = trained_session
    report = session.adopt_round(session.compute_round(control=RunControl(stop_requested=lambda: True)))
    assert report.cancelled and report.model_version == "v0001" and len(session.catalog.checkpoints()) == 1
