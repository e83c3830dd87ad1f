"""Quality ratings from the first retrain (issue 14 item 3): examples of known Dice without extra work."""

import numpy as np
import pytest
import synthetic_cases

import napari_alseg.scoring as scoring
from napari_alseg.domain import QUALITY_CLASS_NAMES, TERM_QUALITY_EXAMPLES
from napari_alseg.run_control import RunControl
from napari_alseg.session import Session
from napari_alseg.session.learner import QUALITY_FOLDS
from napari_alseg.store import Project

from synthetic_cases import tiny_config, validation_cases

pytestmark = pytest.mark.usefixtures("model_backend")


make_source = synthetic_cases.blob_source


@pytest.fixture
def rated_nets(monkeypatch):
    """Every net :func:`rated_prediction` is asked to rate, with the item it rates."""
    seen = []
    original = scoring.rated_prediction

    def recording(net, image, labels, n_classes, **options):
        seen.append((net, image))
        return original(net, image, labels, n_classes, **options)

    monkeypatch.setattr(scoring, "rated_prediction", recording)
    return seen


def test_one_retrain_rates_every_unlabelled_case_and_says_on_how_many_examples(tmp_path, rated_nets):
    source = make_source(tmp_path / "source", granularity="case", n_cases=8, shape=(8, 24, 24))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=3, validation_fraction=0.25)
    validation = validation_cases(project)
    training = [c.name for c in project.cases if c.name not in validation]
    labelled, unlabelled = training[:4], training[4:]
    with Session(project, annotator="dr-q", train_config=tiny_config(steps=2, batch_size=1)) as session:
        for case in labelled:
            session.submit(case, project.ground_truth(case), seconds_active=30)
        reports = []
        trained = session.compute_round(control=RunControl(reports.append))
        # one bar over the round (2 steps) and its folds (a quarter of the round: 1 step each)
        assert {r.total for r in reports} == {2 + QUALITY_FOLDS}
        assert [r.done for r in reports] == list(range(1, 2 + QUALITY_FOLDS + 1))
        expected = len(labelled) + len(validation)
        assert trained.metrics["quality_examples_rated"] == expected  # each labelled case out of fold, once
        validation_images = [session.view.case_image(case) for case in validation]
        for net, image in rated_nets:  # the round's model rates the validation split, never its own training items
            assert (net is trained.net) == any(np.array_equal(image, v) for v in validation_images)
        assert len({id(net) for net, _image in rated_nets}) == QUALITY_FOLDS + 1
        session.adopt_round(trained)
        session.rescore()
        assert session.queries.n_quality_examples == expected
        rows = session.queries.quality_rows()
        assert sorted(item.case for item, _estimate in rows) == sorted(unlabelled)
        assert all(e.class_name in QUALITY_CLASS_NAMES and 0.0 <= e.low <= e.dice <= e.high <= 1.0
                   for _item, e in rows)
        assert session.queries.quality_basis == expected and session.queries.quality_status == ""
        suggestion = session.suggest(1)[0]
        assert suggestion.terms[TERM_QUALITY_EXAMPLES] == expected
    with Session.open(tmp_path / "project", annotator="dr-q") as reopened:
        assert reopened.queries.n_quality_examples == expected


def test_the_previous_model_rates_cases_labelled_since_for_free(tmp_path, rated_nets):
    source = make_source(tmp_path / "source", granularity="case", n_cases=8, shape=(8, 24, 24))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=3, validation_fraction=0.25)
    training = [c.name for c in project.cases if c.name not in validation_cases(project)]
    with Session(project, annotator="dr-q", train_config=tiny_config(steps=2, batch_size=1)) as session:
        session.submit(training[0], project.ground_truth(training[0]), seconds_active=30)
        session.retrain()  # one labelled case: no fold to hold out, the validation split only
        assert session.queries.n_quality_examples == len(validation_cases(project))
        session.rescore()
        base = session.learner.current_net()
        session.submit(training[1], project.ground_truth(training[1]), seconds_active=30)
        rated_nets.clear()
        trained = session.compute_round()
        # the model that rated training[1] while it was unlabelled, once, after the validation split
        assert [net is base for net, _image in rated_nets].count(True) == 1
        rated = {item.case for item, _f, _d in trained.quality_examples}
        assert rated == {training[0], training[1], *validation_cases(project)}


def test_a_cancel_during_the_folds_keeps_the_trained_round(tmp_path):
    """The folds only rate: Cancel after the round's last step ends them, and the round is kept."""
    source = make_source(tmp_path / "source", granularity="case", n_cases=8, shape=(8, 24, 24))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=3, validation_fraction=0.25)
    validation = validation_cases(project)
    training = [c.name for c in project.cases if c.name not in validation]
    with Session(project, annotator="dr-q", train_config=tiny_config(steps=2, batch_size=1)) as session:
        for case in training[:4]:
            session.submit(case, project.ground_truth(case), seconds_active=30)
        reports = []
        trained = session.compute_round(control=RunControl(reports.append, lambda: len(reports) >= 2))
        assert [r.done for r in reports] == [1, 2]  # the round's two steps; no fold stepped
        assert not trained.cancelled and trained.steps_done == 2
        assert trained.metrics["quality_examples_rated"] == len(validation)  # rated before the folds
        assert session.adopt_round(trained).model_version == "v0001"


@pytest.mark.parametrize("strategy", ["mc-dropout-top", "dice-per-effort"])  # slices, ROIs
def test_a_slice_project_rates_its_slices(tmp_path, strategy):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(10, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=1)
    held_out = {n for _case, n in project.validation_items()}
    truth = project.ground_truth("case_000")
    labelled = [n for n in range(10) if n not in held_out][:4]
    with Session(project, annotator="dr-q", strategy=strategy, train_config=tiny_config()) as session:
        for n in labelled:
            session.submit("case_000", truth[n], slice_index=n, seconds_active=3)
        session.retrain()
        session.rescore()
        rows = session.queries.quality_rows()
        assert rows and all(item.slice_index is not None and item.slice_index not in labelled
                            and item.class_id is None for item, _estimate in rows)
        assert len(rows) == 10 - len(labelled) - len(held_out)
        assert session.queries.quality_basis == session.queries.n_quality_examples >= len(labelled)


def test_a_simulated_round_skips_the_folds(tmp_path):
    source = make_source(tmp_path / "source", granularity="case", n_cases=6, shape=(8, 24, 24))
    project = Project.create(tmp_path / "project", source, annotator="dr-q", seed=3, validation_fraction=0.2)
    training = [c.name for c in project.cases if c.name not in validation_cases(project)]
    with Session(project, annotator="dr-q", train_config=tiny_config(steps=2, batch_size=1)) as session:
        for case in training[:3]:
            session.submit(case, project.ground_truth(case), seconds_active=30)
        trained = session.compute_round(rate_quality=False)
        assert trained.quality_examples == () and "quality_examples_rated" not in trained.metrics
        np.testing.assert_array_equal(session.view.training_items()[0].labels,
                                      project.ground_truth(training[0]))


def test_a_quality_fold_trains_for_a_quarter_of_the_round():
    from napari_alseg.model import TrainConfig
    from napari_alseg.session.learner import QUALITY_FOLD_BUDGET, fold_config

    assert QUALITY_FOLD_BUDGET == 0.25
    assert fold_config(TrainConfig(steps=40)).steps == 10 and fold_config(TrainConfig(steps=40)).seconds is None
    assert fold_config(TrainConfig(seconds=120.0)).seconds == 30.0
    assert fold_config(TrainConfig()).seconds == 30.0  # the default 120 s round
