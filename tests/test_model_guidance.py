"""The guided network: click maps as extra input, training with simulated clicks, guided
prediction, the click tool's prior, and the plan that decides (old plans and checkpoints unguided)."""

import json

import numpy as np
import pytest
import torch

import synthetic_cases
from napari_alseg.clicks import Click
from napari_alseg.errors import AlsegError
from napari_alseg.model import (TrainConfig, TrainingItem, fine_tune, load_checkpoint, mc_dropout, predict_proba,
                                save_checkpoint, with_guidance)
from napari_alseg.model.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, payload_sha256
from napari_alseg.model.guidance import GUIDANCE_SIGMA, click_maps, simulated_clicks
from napari_alseg.model.networks import ModelSpec
from napari_alseg.plan import PLAN_SETTING, PLAN_VERSION
from napari_alseg.session import Session, facade
from napari_alseg.store import Project

TINY = (4, 8, 8, 8, 16, 4)
SHAPE = (8, 32, 32)


@pytest.fixture(autouse=True)
def single_thread(one_torch_thread):
    yield


def guided_net(spatial_dims=2, n_classes=3, zoom=()):
    torch.manual_seed(0)
    return ModelSpec(spatial_dims, 1, n_classes, TINY, dropout=0.1, zoom=zoom, guidance=True).build().eval()


def two_squares(seed=0, shape=(32, 32)):
    """Class 1 and class 2 squares on noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int64)
    labels[4:14, 4:14] = 1
    labels[18:28, 16:30] = 2
    image = (labels + rng.normal(0, 0.2, shape))[None].astype(np.float32)
    return TrainingItem(image, labels, np.ones(shape, bool))


@pytest.mark.parametrize("spatial_dims, zoom", [(2, ()), (3, ()), (3, (0.5, 0.75, 1.0))])
def test_a_guided_net_without_clicks_reads_zero_maps(spatial_dims, zoom):
    net = guided_net(spatial_dims, zoom=zoom)
    x = torch.randn(1, 1, *(20,) * spatial_dims)
    zeros = torch.cat([x, torch.zeros(1, 3, *x.shape[2:])], dim=1)
    with torch.no_grad():
        assert torch.equal(net(x), net(zeros))
        clicked = zeros.clone()
        clicked[(0, 2, *(10,) * spatial_dims)] = 1.0
        assert not torch.equal(net(x), net(clicked))
    image = x[0].numpy()
    assert predict_proba(net, image).shape == (3, *x.shape[2:])
    result = mc_dropout(net, image, samples=3)
    assert result.mean_probs.shape == (3, *x.shape[2:]) and np.isfinite(result.variance).all()
    with pytest.raises(AlsegError, match="expects input"):
        net(torch.zeros(1, 2, *x.shape[2:]))


def test_adding_or_removing_guidance_keeps_the_prediction_without_clicks():
    net = guided_net()
    x = torch.randn(1, 1, 24, 24)
    plain = with_guidance(net, False)
    assert plain.spec.guidance is False and plain.spec.input_channels == 1
    again = with_guidance(plain, True)
    with torch.no_grad():
        assert torch.allclose(plain(x), net(x)) and torch.allclose(again(x), net(x))
    assert with_guidance(net, True) is net


def test_click_maps_put_a_unit_blob_in_the_clicked_class_map_at_the_click():
    spec = ModelSpec(2, 1, 3, TINY, guidance=True)
    maps = click_maps(spec, (40, 36), [((10, 12), 2), ((30, 5), 0), ((11, 12), 2)])
    assert maps.shape == (3, 40, 36) and maps.dtype == np.float32
    assert not maps[1].any()
    assert maps[2, 10, 12] == pytest.approx(1.0) and maps[2, 11, 12] == pytest.approx(1.0)  # max, not sum
    assert maps[0, 30, 5] == pytest.approx(1.0) and maps.max() <= 1.0
    assert maps[2, 10, 12 + 2] == pytest.approx(np.exp(-0.5 * (2 / GUIDANCE_SIGMA) ** 2))
    assert maps[2, 30, 30] == 0
    zoomed = click_maps(ModelSpec(2, 1, 3, TINY, zoom=(0.5, 1.0), guidance=True), (40, 36), [((20, 18), 1)])
    assert zoomed[1, 24, 18] == pytest.approx(np.exp(-0.5 * (4 / (2 * GUIDANCE_SIGMA)) ** 2))  # wider on axis 0
    with pytest.raises(AlsegError, match="outside"):
        click_maps(spec, (40, 36), [((40, 0), 1)])
    with pytest.raises(AlsegError, match="class"):
        click_maps(spec, (40, 36), [((1, 1), 3)])


def test_simulated_clicks_land_on_labelled_errors_with_the_true_class():
    labels = two_squares().labels
    labelled = np.ones(labels.shape, bool)
    labelled[:, :8] = False  # the left of the class-1 square is unlabelled
    prediction = np.zeros_like(labels)
    prediction[0:3, 0:3] = 2  # a false class-2 blob, in the unlabelled part
    prediction[20:24, 18:22] = 2  # part of the class-2 square found
    rng = np.random.default_rng(0)
    for _ in range(30):
        clicks = simulated_clicks(prediction, labels, labelled, rng)
        assert 1 <= len(clicks) <= 3
        for position, class_id in clicks:
            assert labelled[position] and prediction[position] != labels[position]
            assert class_id == labels[position]
        assert clicks[0][1] == 2  # the largest error region: the class-2 square's missed part
    first = simulated_clicks(prediction, labels, labelled, rng, initial=True)
    assert [class_id for _, class_id in first[:2]] == [1, 2]
    assert all(labels[position] == class_id and labelled[position] for position, class_id in first[:2])
    assert simulated_clicks(labels, labels, labelled, rng) == []


def test_a_guided_round_trains_with_clicks_and_stores_a_guided_spec_that_reloads(tmp_path):
    net = guided_net()
    items = [two_squares(seed) for seed in range(2)]
    result = fine_tune(net, items, TrainConfig(steps=6, batch_size=2, augment=False, guided_fraction=0.5, seed=3))
    assert result.steps_done == 6 and 0 < result.metrics["guided_steps"] < 6
    assert fine_tune(net, items, TrainConfig(steps=2, batch_size=2, augment=False,
                                             guided_fraction=0.0)).metrics["guided_steps"] == 0
    net.load_state_dict(result.state_dict)
    path = save_checkpoint(tmp_path / "v0001.pt", net, net.spec)
    loaded, spec, _ = load_checkpoint(path)
    assert spec.guidance and loaded.spec.input_channels == 4
    image = items[0].image
    plain = predict_proba(loaded, image)
    clicked = predict_proba(loaded, image, clicks=[((8, 8), 1), ((2, 30), 0)])
    assert np.allclose(plain, predict_proba(net, image), atol=1e-6) and not np.allclose(plain, clicked)
    with pytest.raises(AlsegError, match="does not read clicks"):
        predict_proba(with_guidance(loaded, False), image, clicks=[((8, 8), 1)])
    with pytest.raises(AlsegError, match="guided_fraction"):
        TrainConfig(guided_fraction=1.5)


def test_an_old_checkpoint_loads_as_an_unguided_net(tmp_path):
    spec = ModelSpec(2, 1, 3, TINY)
    old_spec = json.loads(spec.to_json())
    del old_spec["guidance"]
    net = spec.build()
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "spec": json.dumps(old_spec),
               "metrics": "{}", "state_dict": net.state_dict()}
    payload["sha256"] = payload_sha256(payload)
    torch.save(payload, tmp_path / "old.pt")
    loaded, loaded_spec, _ = load_checkpoint(tmp_path / "old.pt")
    assert loaded_spec.guidance is False and loaded_spec == spec and loaded.spec.input_channels == 1


def make_session(tmp_path, granularity="case"):
    source = synthetic_cases.blob_source(tmp_path / "source", granularity=granularity, n_cases=1, shape=SHAPE)
    project = Project.create(tmp_path / "project", source, annotator="dr-g", validation_fraction=0.0)
    return Session(project, annotator="dr-g", train_config=synthetic_cases.tiny_config())


def test_a_plan_kept_before_guidance_upgrades_unguided_and_keeps_its_fields(tmp_path):
    with make_session(tmp_path) as session:
        kept = json.loads(session.planning.set_plan(seconds=42.0, mirror_axes=()).to_json())
        del kept["guidance"]
        kept["version"] = 2
        session._project.store_setting(PLAN_SETTING, json.dumps(kept))
        plan = session.planning.training_plan()
        assert plan.guidance is False and plan.version == PLAN_VERSION
        assert plan.seconds == 42.0 and plan.mirror_axes == ()  # a version-2 plan's mirror axes are its own
        assert json.loads(session._project.setting(PLAN_SETTING))["guidance"] is False
        assert session.learner.model_spec().guidance is False
        assert session.planning.set_plan(guidance=True).guidance and session.learner.model_spec().guidance
        assert "clicks: the network reads them" in "\n".join(session.planning.training_plan().describe())


def retrained_guided(session):
    session.planning.set_plan(guidance=True, features=TINY)
    truth = synthetic_cases.blob_case(0, SHAPE)[1]
    session.submit("case_000", truth, seconds_active=10)
    session.retrain(rate_quality=False)
    return truth


def test_click_segment_with_a_guided_net_takes_the_prediction_given_the_clicks_as_prior(tmp_path, monkeypatch):
    with make_session(tmp_path) as session:
        truth = retrained_guided(session)
        assert session.learner.current_net().spec.guidance
        asked, priors = [], []
        real_predict, real_segment = session.learner.predict_probabilities, facade.segment_with_clicks

        def predicting(*args, **options):
            probabilities = real_predict(*args, **options)
            asked.append((options.get("clicks", ()), probabilities))
            return probabilities

        def segmenting(*args, prior=None, **options):
            priors.append(prior)
            return real_segment(*args, prior=prior, **options)

        monkeypatch.setattr(session.learner, "predict_probabilities", predicting)
        monkeypatch.setattr(facade, "segment_with_clicks", segmenting)
        core = tuple(int(v) for v in np.argwhere(truth == 1)[0])
        clicks = [Click(core, True), Click((0, 0, 0), False)]
        session.click_segment("case_000", np.zeros(SHAPE, np.uint8), 1, clicks)
        session.click_segment("case_000", np.zeros(SHAPE, np.uint8), 1, clicks[:1])
        assert [said for said, _ in asked] == [[(core, 1), ((0, 0, 0), 0)], [(core, 1)]]  # predicted per click
        for (_, probabilities), prior in zip(asked, priors):
            assert prior.dtype == np.float32 and np.array_equal(prior, probabilities[1])


def test_an_unguided_prior_is_predicted_once_for_repeated_clicks(tmp_path, monkeypatch):
    with make_session(tmp_path, "slice") as session:
        session.submit("case_000", synthetic_cases.blob_case(0, SHAPE)[1][2], slice_index=2, seconds_active=5)
        session.planning.set_plan(features=TINY)
        session.retrain(rate_quality=False)
        assert not session.learner.current_net().spec.guidance
        calls = []
        real = session.learner.predict_probabilities
        monkeypatch.setattr(session.learner, "predict_probabilities",
                            lambda *args, **options: calls.append(args) or real(*args, **options))
        labels = np.zeros(SHAPE, np.uint8)
        for _ in range(3):
            session.click_segment("case_000", labels, 1, [Click((4, 16, 16), True)], slice_index=4)
        session.click_segment("case_000", labels, 2, [Click((5, 16, 16), True)], slice_index=5)
        assert calls == [("case_000", 4), ("case_000", 5)]


def test_the_plan_command_switches_guidance(tmp_path, capsys):
    from napari_alseg.cli import main

    make_session(tmp_path).close()
    assert main(["plan", str(tmp_path / "project"), "--guidance"]) == 0
    assert "clicks: the network reads them" in capsys.readouterr().out
    assert main(["plan", str(tmp_path / "project"), "--no-guidance"]) == 0
    assert "does not read them" in capsys.readouterr().out


def test_a_project_started_from_a_guided_model_plans_a_guided_net():
    from napari_alseg.session.model_transfer import imported_plan_fields
    from napari_alseg.plan import fingerprint, make_plan

    dataset = fingerprint([(32, 32)], [(1.0, 1.0)], n_channels=1, n_classes=3)
    plan = make_plan(dataset)
    fields = imported_plan_fields(plan, plan, ModelSpec(2, 1, 3, TINY, guidance=True), dataset)
    assert plan.guidance is False and plan.with_overrides(**fields).guidance is True
