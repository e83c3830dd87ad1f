"""The Session verbs on tiny synthetic projects: submit with effort, retrain, cancel, pseudo-labels."""


import numpy as np
import pytest
import synthetic_cases

from napari_alseg.errors import AlsegError
from napari_alseg.effort.boundary import slice_trace_length
from napari_alseg.run_control import RunControl
from napari_alseg.session import Session
from napari_alseg.store import PSEUDO_ACCEPTED, Project

from synthetic_cases import tiny_config, validation_cases

pytestmark = pytest.mark.usefixtures("model_backend")


make_source = synthetic_cases.blob_source


@pytest.fixture
def stack_session(tmp_path):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a", train_config=tiny_config()) as session:
        yield session


def test_submit_records_traced_boundary(stack_session):
    labels = np.zeros((32, 32), np.uint8)
    labels[10:20, 10:20] = 1
    event_id = stack_session.submit("case_000", labels, slice_index=0, seconds_active=12.5)
    event = stack_session.catalog.events()[-1]
    assert event.id == event_id and event.annotator == "dr-a" and event.seconds_active == 12.5
    assert event.boundary_px == pytest.approx(40, abs=1.5)  # a 10x10 square: its perimeter
    assert event.boundary_mm == pytest.approx(40, abs=1.5)


def test_shared_boundary_is_traced_once():
    plane = np.zeros((20, 20), np.uint8)
    plane[5:15, 2:10] = 1
    plane[5:15, 10:18] = 2
    both = slice_trace_length(plane, [1, 2], (1.0, 1.0))
    separate = sum(slice_trace_length(np.where(plane == c, c, 0), [c], (1.0, 1.0)).px for c in (1, 2))
    assert separate - both.px == pytest.approx(10, abs=1.5)


def test_roi_beside_a_delineated_class_is_not_charged_the_shared_boundary(stack_session):
    plane = np.zeros((32, 32), np.uint8)
    plane[5:15, 2:10] = 1
    plane[5:15, 10:18] = 2
    stack_session.submit("case_000", plane, slice_index=0, class_id=1, seconds_active=1)
    stack_session.submit("case_000", plane, slice_index=0, class_id=2, seconds_active=1)
    first, second = [event.boundary_px for event in stack_session.catalog.events()[-2:]]
    assert first == pytest.approx(36, abs=1.5)  # the 10x8 rectangle's whole outline
    assert second == pytest.approx(36 - 10, abs=1.5)  # the 10 px side it shares with class 1 is free


def test_retrain_needs_labels_first(stack_session):
    with pytest.raises(AlsegError, match="no labelled data yet"):
        stack_session.retrain()


def label_some_slices(session, slices=(0, 1, 2)):
    truth = session.catalog.ground_truth("case_000")
    held_out = {s for _, s in session.catalog.validation_items()}
    for n in slices:
        if n not in held_out:
            session.submit("case_000", truth[n], slice_index=n, seconds_active=3)


def test_retrain_versions_a_checkpoint_with_validation_metrics(stack_session):
    label_some_slices(stack_session)
    reports = []
    report = stack_session.retrain(control=RunControl(reports.append))
    assert not report.cancelled and report.model_version == "v0001"
    assert stack_session.learner.model_version == "v0001"
    assert report.steps_done == 4  # the bar goes on through the quality folds (tests/test_quality_examples.py)
    assert reports[-1].done == reports[-1].total == 4 + 1 * report.metrics["quality_folds"]  # folds: 1/4
    assert 0.0 <= report.metrics["val_dice"] <= 1.0
    by_class = report.metrics["val_dice_per_class"]  # by class id: background, core, rim
    assert len(by_class) == 3 and by_class[0] is None
    checkpoint = stack_session.catalog.checkpoints()[-1]
    assert checkpoint.path.exists() and checkpoint.metrics["val_dice"] == report.metrics["val_dice"]
    prediction = stack_session.predict_labels("case_000", 0)
    assert prediction.shape == (32, 32) and prediction.dtype == np.uint8


def test_cancel_keeps_the_previous_model(stack_session):
    label_some_slices(stack_session)
    stack_session.retrain()
    before = {k: v.clone() for k, v in stack_session.learner.current_net().state_dict().items()}
    report = stack_session.retrain(control=RunControl(stop_requested=lambda: True))
    assert report.cancelled and report.model_version == "v0001"
    assert len(stack_session.catalog.checkpoints()) == 1
    after = stack_session.learner.current_net().state_dict()
    assert all((before[k] == after[k]).all() for k in before)


def test_roi_submit_trains_on_partial_labels_with_allowed_classes(stack_session):
    truth = stack_session.catalog.ground_truth("case_000")
    n = next(s for s in range(6) if ("case_000", s) not in stack_session.catalog.validation_items())
    stack_session.submit("case_000", truth[n], slice_index=n, class_id=1, seconds_active=2)
    stack_session.mark_class_range("case_000", 2, 0, 3)
    allowed = stack_session.view.allowed_classes("case_000")
    assert not allowed[n, 1] and allowed[n, 0] and allowed[n, 2] == (n <= 3)
    assert not allowed[5, 2] and allowed[5, 1]
    (item,) = stack_session.view.training_items()
    assert item.labelled_mask.sum() == (truth[n] == 1).sum()
    np.testing.assert_array_equal(item.allowed_classes, allowed[n])


def test_prediction_keeps_given_labels(stack_session):
    label_some_slices(stack_session)
    stack_session.retrain()
    probs = stack_session.learner.predict_probabilities("case_000")
    snapshot = stack_session.catalog.current_labels("case_000")
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    given = probs.argmax(axis=0)[snapshot.labelled]
    np.testing.assert_array_equal(given, snapshot.data[snapshot.labelled])


def test_case_project_pseudo_label_accept_and_reopen(tmp_path):
    source = make_source(tmp_path / "source", granularity="case", n_cases=4, shape=(8, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-b", seed=2,
                             validation_fraction=0.25)
    training_cases = [c.name for c in project.cases if c.name not in validation_cases(project)]
    with Session(project, annotator="dr-b", train_config=tiny_config(steps=2, batch_size=1)) as session:
        assert session.view.spatial_dims == 3
        session.submit(training_cases[0], project.ground_truth(training_cases[0]), seconds_active=60)
        assert session.retrain().model_version == "v0001"
        session.accept_pseudo(training_cases[1])
        session.reject_pseudo(training_cases[2])
        kinds = [e.kind for e in project.events()]
        assert kinds == ["manual", PSEUDO_ACCEPTED, "pseudo-rejected"]
        pseudo_items = [item for item in session.view.training_items() if item.pseudo_label]
        assert len(pseudo_items) == 1
    with Session.open(tmp_path / "project", annotator="dr-b") as reopened:
        assert reopened.learner.model_version == "v0001" and reopened.learner.current_net() is not None
        assert len(reopened.catalog.events()) == 3


def test_a_correction_is_kept_as_a_quality_example_across_sessions(tmp_path):
    source = make_source(tmp_path / "source", granularity="case", n_cases=4, shape=(8, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-b", seed=2, validation_fraction=0.25)
    first, second = [c.name for c in project.cases if c.name not in validation_cases(project)][:2]
    with Session(project, annotator="dr-b", train_config=tiny_config(steps=2, batch_size=1)) as session:
        session.submit(first, project.ground_truth(first), seconds_active=60)
        session.retrain()
        session.rescore()
        known = session.queries.n_quality_examples
        prediction = session.predict_labels(second)
        session.submit(second, project.ground_truth(second), kind="corrected", original=prediction, seconds_active=5)
        assert session.queries.n_quality_examples == known + 1
    with Session.open(tmp_path / "project", annotator="dr-b") as reopened:
        assert reopened.queries.n_quality_examples == known + 1
        stored = {(case, n) for case, n, _c, _features, _dice in reopened._project.quality_examples()}
        assert (second, None) in stored


def test_suggest_without_a_model_falls_back_to_random(stack_session):
    stack_session.use_strategy("entropy")
    suggestions = stack_session.suggest(3)
    assert len(suggestions) == 3
    assert all("no model yet" in s.message for s in suggestions)
    held_out = {s for _, s in stack_session.catalog.validation_items()}
    assert not {s.item.slice_index for s in suggestions} & held_out
    assert stack_session._project.rounds() == []  # suggesting reads: what is served is recorded on request
    stack_session.queries.record_served(suggestions)
    stack_session.queries.record_served(stack_session.suggest(3))  # one record per model version and engine
    (served,) = stack_session._project.rounds()
    assert served.strategy == "entropy" and len(stack_session._project.round_suggestions(served.id)) == 3


def test_rescore_then_suggest_ranks_by_uncertainty_and_stores_scores(stack_session):
    label_some_slices(stack_session)
    stack_session.retrain()
    stack_session.use_strategy("mc-dropout-top")
    progress = []
    pool = stack_session.rescore(control=RunControl(lambda update: progress.append((update.done, update.total))))
    assert progress and progress[-1][0] == progress[-1][1]
    assert stack_session._project.has_scores("v0001")
    suggestions = stack_session.suggest(2)
    assert [s.message for s in suggestions] == ["", ""]
    scores = [pool.terms[s.item]["mc_top"] for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    first = suggestions[0]
    stack_session.skip(first.item)
    assert first.item not in [s.item for s in stack_session.suggest(2)]


def test_dice_per_effort_suggests_rois_with_effort_terms(stack_session):
    label_some_slices(stack_session)
    stack_session.retrain()
    stack_session.use_strategy("dice-per-effort")
    assert stack_session.queries.pool_granularity == "roi"
    stack_session.rescore()
    suggestion = stack_session.suggest(1)[0]
    assert suggestion.item.class_id in (1, 2) and suggestion.message == ""
    assert suggestion.terms["effort_mm"] > 0 and "dice_gap" in suggestion.terms
    summary = stack_session.accounting.effort_summary()
    assert summary["core"]["remaining_mm"] > 0 and summary["all classes"]["spent_mm"] > 0
    (version, traced, dice), = stack_session.accounting.learning_curve()
    assert version == "v0001" and traced > 0 and 0 <= dice <= 1


def test_dice_per_effort_measures_class_dice_on_the_manual_labels_only(stack_session):
    truth = stack_session.catalog.ground_truth("case_000")
    held_out = {s for _, s in stack_session.catalog.validation_items()}
    open_slice = next(n for n in range(6) if n not in held_out)
    stack_session.submit("case_000", truth[open_slice], slice_index=open_slice, class_id=1, seconds_active=1)
    stack_session.retrain()
    metrics = stack_session.catalog.metrics()
    background, core, rim = metrics["label_dice_per_class"]  # by class id
    assert background is None and 0 <= core <= 1 and rim is None  # rim: never delineated
    (history,) = stack_session.learner.class_dice_history()
    assert history[0] == core and np.isnan(history[1])


def test_gradient_vae_seeds_are_the_items_the_current_model_learnt_first(stack_session):
    held_out = {s for _, s in stack_session.catalog.validation_items()}
    open_slices = [n for n in range(6) if n not in held_out]
    label_some_slices(stack_session, open_slices[:2])
    stack_session.retrain()
    assert {item.slice_index for item in stack_session.view.recent_items()} == set(open_slices[:2])
    label_some_slices(stack_session, open_slices[2:3])
    stack_session.retrain()
    assert [item.slice_index for item in stack_session.view.recent_items()] == open_slices[2:3]
    stack_session.use_strategy("gradient-vae")
    stack_session.rescore(for_display=False)
    (suggestion,) = stack_session.suggest(1)
    assert suggestion.message == "" and suggestion.strategy == "gradient-vae"


def test_uncertainty_map_has_the_case_shape(stack_session):
    label_some_slices(stack_session)
    stack_session.retrain()
    heat = stack_session.learner.uncertainty_map("case_000", samples=4)
    assert heat.shape == (6, 32, 32) and heat.dtype == np.float32 and heat.min() >= 0


def test_the_uncertainty_map_shows_no_doubt_outside_the_image(stack_session, monkeypatch):
    label_some_slices(stack_session)
    stack_session.retrain()
    view = stack_session.learner.view
    image = np.array(view.case_image("case_000"))
    image[:, :, :, :8] = 0  # an empty band, as the air beside a head
    monkeypatch.setattr(view, "case_image", lambda case: image)
    heat = stack_session.learner.uncertainty_map("case_000", samples=4)
    assert (heat[:, :, :8] == 0).all() and (heat[:, :, 8:] > 0).any()


def test_first_network_is_seeded(stack_session):
    first = stack_session.learner.initial_net().state_dict()
    again = stack_session.learner.initial_net().state_dict()
    assert all((first[k] == again[k]).all() for k in first)


def test_the_training_plan_is_made_once_kept_with_the_project_and_overridable(tmp_path):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a") as session:
        plan = session.planning.training_plan()
        assert plan.spatial_dims == 2 and plan.device == "cpu"
        assert session.learner.round_config().seconds == plan.seconds and session.learner.round_config().steps is None
        session.planning.set_plan(seconds=42.0, batch_size=3)
    with Session.open(tmp_path / "project", annotator="dr-a", train_config=tiny_config(batch_size=None)) as session:
        kept = session.planning.training_plan()
        assert (kept.seconds, kept.batch_size) == (42.0, 3)
        config = session.learner.round_config()
        assert config.steps == 4 and config.seconds is None and config.batch_size == 3


def test_the_plan_keeper_works_without_a_session_and_a_session_reads_what_it_kept(tmp_path):
    from napari_alseg.plan import stored_plan
    from napari_alseg.session.planning import PlanKeeper

    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    keeper = PlanKeeper(project, lambda: "cpu")
    assert stored_plan(project) is None
    made = keeper.training_plan()  # made once, then kept
    assert made.spatial_dims == 2 and made.device == "cpu" and stored_plan(project) == made
    assert keeper.set_plan(seconds=42.0).seconds == 42.0 and keeper.inference_patch() is None
    with Session(project, annotator="dr-a") as session:
        plan = session.planning.training_plan()
        assert plan == stored_plan(project) and plan.seconds == 42.0


def test_the_plan_mirrors_a_stack_along_its_left_right_axis_and_rounds_train_with_it(tmp_path):
    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a") as session:
        # the synthetic cases' affine is diagonal: columns (i, along world x) are left-right
        assert session.planning.training_plan().mirror_axes == (1,)
        assert session.learner.round_config().flip_axes == (1,)
        session.settings.train_config = tiny_config(flip_axes=())
        assert session.learner.round_config().flip_axes == ()  # a config that says "no flip" wins


def test_a_plan_kept_before_mirroring_existed_gets_mirror_axes_and_keeps_its_overrides(tmp_path):
    import json

    from napari_alseg.plan import PLAN_SETTING, PLAN_VERSION

    source = make_source(tmp_path / "source", granularity="slice", n_cases=1, shape=(6, 32, 32))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a") as session:
        kept = json.loads(session.planning.set_plan(seconds=42.0).to_json())
        del kept["mirror_axes"]
        kept["version"] = 1
        project.store_setting(PLAN_SETTING, json.dumps(kept))
        plan = session.planning.training_plan()
        assert plan.mirror_axes == (1,) and plan.seconds == 42.0 and plan.version == PLAN_VERSION
        assert json.loads(project.setting(PLAN_SETTING))["version"] == PLAN_VERSION


def test_a_resampling_plan_predicts_on_the_native_grid(tmp_path):
    source = make_source(tmp_path / "source", granularity="case", n_cases=3, shape=(20, 24, 22))
    project = Project.create(tmp_path / "project", source, annotator="dr-a", seed=1)
    with Session(project, annotator="dr-a", train_config=tiny_config()) as session:
        session.planning.set_plan(zoom=(0.5, 0.5, 0.5), features=(4, 8, 8, 8, 16, 4))
        case = next(c.name for c in project.cases if (c.name, None) not in set(project.validation_items()))
        session.submit(case, project.ground_truth(case), seconds_active=1.0)
        report = session.retrain()
        assert session.learner.current_net().spec.zoom == (0.5, 0.5, 0.5) and not report.cancelled
        assert session.predict_labels(case).shape == project.case(case).shape
