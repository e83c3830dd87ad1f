"""Pool scoring: which items are candidates, what each term holds, progress, cancel, VAE."""

import math

import numpy as np
import pytest
import torch

from napari_alseg.errors import AlsegError, Cancelled
from napari_alseg.model import ModelSpec, TrainConfig, TrainingItem
from napari_alseg.quality import FEATURE_NAMES
from napari_alseg.run_control import RunControl
from napari_alseg.scoring import (
    PoolScores,
    SCORING_CANCELLED,
    ScoreRequest,
    region_terms,
    roi_terms,
    score_pool,
    train_bootstrap_nets,
)
from napari_alseg.strategies import QueryItem
from napari_alseg.uncertainty import class_mean_variance_sum, margin_score, mean_entropy, top_fraction_mean

TINY = (4, 8, 8, 8, 16, 4)


@pytest.fixture(scope="module")
def cpu(one_torch_thread):
    return one_torch_thread


def tiny_net(dims, seed=0):
    torch.manual_seed(seed)
    return ModelSpec(dims, 1, 3, TINY, dropout=0.5).build()


def stack(k=5, shape=(32, 32), seed=0):
    """One case ``(1, k, *shape)`` with a class-1 square and a class-2 bar on every slice."""
    labels = np.zeros((k, *shape), np.int64)
    labels[:, 8:20, 8:20] = 1
    labels[:, 20:26, 10:18] = 2
    image = np.random.default_rng(seed).normal(0, 0.2, (1, k, *shape)).astype(np.float32)
    return image + labels[None].astype(np.float32), labels


def partially_labelled_stack():
    """Slice 0 fully labelled, slice 2 only class 1 painted, slice 4 held out."""
    image, labels = stack()
    mask = np.zeros(labels.shape, bool)
    mask[0] = True
    mask[2] = labels[2] == 1
    return {"c": image}, {"c": (labels, mask)}, {QueryItem("c", 4)}


def test_items_without_a_model_per_granularity():
    images, labels, validation = partially_labelled_stack()
    pool = score_pool(ScoreRequest(None, None, images, labels, granularity="slice", n_classes=3, needs={"mc"},
                                   validation=validation))
    assert pool.candidates == [QueryItem("c", n) for n in (1, 2, 3)]
    assert pool.labelled == [QueryItem("c", 0)]
    assert not pool.has_model and pool.terms == {} and pool.available() == frozenset()
    assert pool.bboxes[QueryItem("c", 2)] == ((2, 3), (0, 32), (0, 32))
    assert all(item.score == -math.inf and item.terms == {} for item in pool.to_scored_items())

    allowed = np.ones((5, 3), bool)
    allowed[3, 2] = False  # weak annotation: class 2 does not reach slice 3
    rois = score_pool(ScoreRequest(None, None, images, labels, granularity="roi", n_classes=3, needs=set(),
                                   validation=validation, allowed={"c": allowed}))
    assert [(i.slice_index, i.class_id) for i in rois.candidates] == [(1, 1), (1, 2), (2, 2), (3, 1)]
    assert [(i.slice_index, i.class_id) for i in rois.labelled] == [(0, 1), (0, 2), (2, 1)]
    assert rois.allowed[("c", 3)] == {0, 1}

    volumes = {name: np.zeros((1, 4, 8, 8), np.float32) for name in ("a", "b", "c")}
    full, half = np.ones((4, 8, 8), bool), np.zeros((4, 8, 8), bool)
    half[0] = True
    cases = score_pool(ScoreRequest(None, None, volumes,
                                    {"a": (np.zeros((4, 8, 8)), full), "b": (np.zeros((4, 8, 8)), half)},
                                    granularity="case", n_classes=3, needs=set(), validation={QueryItem("c")}))
    assert cases.candidates == [QueryItem("b")] and cases.labelled == [QueryItem("a")]
    assert cases.bboxes[QueryItem("b")] == ((0, 4), (0, 8), (0, 8))


def test_scored_slices_carry_terms_features_boxes_and_progress(cpu):
    images, labels, validation = partially_labelled_stack()
    calls = []
    pool = score_pool(ScoreRequest(tiny_net(2), None, images, labels, granularity="slice", n_classes=3,
                                   needs={"model", "mc", "features"}, mc_samples=3, validation=validation,
                                   device=cpu, model_version="v0002"),
                      control=RunControl(lambda update: calls.append((update.done, update.total))))
    assert pool.has_model and pool.model_version == "v0002"
    assert pool.available() == {"model", "mc", "features"}
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]  # slices 0-3; slice 0 for its features
    for item in pool.candidates:
        assert set(pool.terms[item]) == {"entropy", "margin", "entropy_mc", "mc_top", "mc_sum", "foreground"}
        (k0, k1), (j0, j1), (i0, i1) = pool.bboxes[item]
        assert (k0, k1) == (item.slice_index, item.slice_index + 1) and 0 <= j0 < j1 <= 32 and 0 <= i0 < i1 <= 32
    assert set(pool.features) == {QueryItem("c", n) for n in range(4)}
    assert pool.features[QueryItem("c", 0)].shape == (TINY[4],)
    stored = pool.to_scored_items()
    assert [(s.slice_index, s.score) for s in stored] == [
        (item.slice_index, pytest.approx(pool.terms[item]["mc_top"])) for item in pool.candidates]


def test_partially_labelled_slice_is_scored_on_the_renormalised_prediction(cpu):
    images, labels, validation = partially_labelled_stack()
    pool = score_pool(ScoreRequest(tiny_net(2), None, images, labels, granularity="slice", n_classes=3,
                                   needs={"model"}, validation=validation, device=cpu))
    fresh = score_pool(ScoreRequest(tiny_net(2), None, images, {}, granularity="slice", n_classes=3,
                                    needs={"model"}, validation=validation, device=cpu))
    # Slice 2's labelled pixels are certain now; slice 1 has no labels and is unchanged.
    assert pool.terms[QueryItem("c", 2)]["entropy"] < fresh.terms[QueryItem("c", 2)]["entropy"]
    assert pool.terms[QueryItem("c", 1)]["entropy"] == pytest.approx(fresh.terms[QueryItem("c", 1)]["entropy"])


def test_a_stop_cancels_cleanly(cpu):
    images, labels, validation = partially_labelled_stack()
    answers = iter([False, False, True])
    with pytest.raises(Cancelled) as raised:  # information for the user, not an error
        score_pool(ScoreRequest(tiny_net(2), None, images, labels, granularity="slice", n_classes=3,
                                needs={"model"}, validation=validation, device=cpu),
                   control=RunControl(stop_requested=lambda: next(answers)))
    assert str(raised.value) == SCORING_CANCELLED


def three_cases_last_labelled():
    """Cases c0, c1 unlabelled and c2 fully labelled (the validation case of the quality tests)."""
    images, labels = {}, {}
    for index in range(3):
        image, truth = stack(k=6, shape=(24, 24), seed=index)
        images[f"c{index}"] = image
        labels[f"c{index}"] = (truth, np.full(truth.shape, index == 2))
    return images, labels


def test_validation_cases_give_quality_examples_and_few_examples_still_rate_and_say_so(cpu):
    images, labels = three_cases_last_labelled()
    pool = score_pool(ScoreRequest(tiny_net(3), None, images, labels, granularity="case", n_classes=3,
                                   needs={"model", "mc", "quality"}, mc_samples=2, validation={QueryItem("c2")},
                                   device=cpu))
    assert pool.candidates == [QueryItem("c0"), QueryItem("c1")]
    assert [example[0] for example in pool.quality_examples] == [QueryItem("c2")]
    _item, features, dice = pool.quality_examples[0]
    assert features.shape == (len(FEATURE_NAMES),) and 0.0 <= dice <= 1.0
    assert set(pool.quality_features) == set(pool.candidates)
    for item in pool.candidates:  # rated from the one example: the soft Dice, barely calibrated
        terms = pool.terms[item]
        assert 0.0 <= terms["quality_dice_low"] <= terms["quality_dice"] <= terms["quality_dice_high"] <= 1.0
        assert terms["quality_class"] in (0, 1, 2) and terms["quality_examples"] == 1
    assert pool.quality_status == "" and "only 1 prediction(s)" in pool.quality_note
    assert "quality" in pool.available()


def test_the_round_rates_with_its_own_validation_examples_and_those_known_before(cpu):
    images, labels = three_cases_last_labelled()
    rng = np.random.default_rng(0)
    known = [(QueryItem(f"old{n}"), rng.normal(size=len(FEATURE_NAMES)), dice)
             for n, dice in enumerate([0.1, 0.2, 0.3, 0.9, 0.95])]
    known.append((QueryItem("c2"), rng.normal(size=len(FEATURE_NAMES)), 0.5))  # replaced by this round's
    pool = score_pool(ScoreRequest(tiny_net(3), None, images, labels, granularity="case", n_classes=3,
                                   needs={"model", "mc", "quality"}, mc_samples=2, validation={QueryItem("c2")},
                                   device=cpu, quality_examples=known))
    assert pool.quality_status == ""
    for item in pool.candidates:
        assert np.isfinite(pool.terms[item]["quality_class"]) and pool.terms[item]["quality_examples"] == 6


def test_vae_latents_and_gradient_steps_of_the_seeds(cpu):
    images, labels, validation = partially_labelled_stack()
    pool = score_pool(ScoreRequest(tiny_net(2), None, images, labels, granularity="slice", n_classes=3,
                                   needs={"model", "vae"}, validation=validation, device=cpu, vae_steps=5,
                                   recent=[QueryItem("c", 0)]))
    assert "vae" in pool.available()
    assert set(pool.gradient_latents) == {QueryItem("c", 0)}
    z, moved = pool.vae_latents[QueryItem("c", 0)], pool.gradient_latents[QueryItem("c", 0)]
    assert z.shape == (2,)  # a small set: 2 latent dimensions (docs/METHODS.md §5.1)
    assert 0 < np.linalg.norm(moved - z) < 1e-2  # a real, small step
    assert set(pool.vae_latents) >= set(pool.candidates)
    again = score_pool(ScoreRequest(tiny_net(2), None, images, labels, granularity="slice", n_classes=3,
                                    needs={"model", "vae"}, validation=validation, device=cpu, vae=pool.vae))
    assert again.vae is pool.vae
    np.testing.assert_allclose(again.vae_latents[QueryItem("c", 1)], pool.vae_latents[QueryItem("c", 1)])


def test_train_bootstrap_nets_gives_distinct_members(cpu):
    image, labels = stack(k=2)
    items = [TrainingItem(image[:, n], labels[n], np.ones_like(labels[n], bool)) for n in range(2)]
    net = tiny_net(2)
    config = TrainConfig(steps=1, batch_size=1, augment=False, device="cpu")
    members = train_bootstrap_nets(net, items, config, n=2, seed=1)
    assert len(members) == 2
    first, second = (dict(m.named_parameters())["conv_0.conv_0.conv.weight"] for m in members)
    assert not torch.equal(first, second)
    with pytest.raises(AlsegError, match="at least 2"):
        train_bootstrap_nets(net, items, config, n=1)


def test_region_terms_are_the_uncertainty_formulas():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 6, 6)).transpose(3, 0, 1, 2).astype(np.float32)
    samples = rng.dirichlet(np.ones(3), size=(5, 4, 6, 6)).transpose(0, 4, 1, 2, 3)
    terms = region_terms(probs, mc_probs=samples.mean(0), variance=samples.var(0), members=samples[:2])
    assert terms["entropy"] == pytest.approx(mean_entropy(probs))
    assert terms["margin"] == pytest.approx(margin_score(probs))
    assert terms["mc_sum"] == pytest.approx(class_mean_variance_sum(samples))
    assert terms["mc_top"] == pytest.approx(top_fraction_mean(samples.var(0).mean(0)))


def test_roi_terms_ignore_labelled_pixels():
    probs = np.zeros((3, 10, 10), np.float32)
    probs[0], probs[1] = 0.5, 0.5  # uncertain everywhere ...
    unlabelled = np.zeros((10, 10), bool)
    unlabelled[:, 8:] = True
    probs[:, :, 8:] = np.array([0.0, 1.0, 0.0])[:, None, None]  # ... except where unlabelled
    assert roi_terms(probs, 1, unlabelled)["entropy"] == pytest.approx(0.0)
    # All pixels open: the region (columns 8-9 grown by 2 px) adds two uncertain columns.
    assert roi_terms(probs, 1, np.ones((10, 10), bool))["entropy"] == pytest.approx(np.log(2) / 2)



def test_the_predicted_outline_leaves_out_contact_with_delineated_neighbours():
    from napari_alseg.effort.boundary import boundary_length, roi_trace_length
    from napari_alseg.scoring.terms import predicted_outline_mm

    probs = np.zeros((3, 20, 20), np.float32)
    probs[0] = 1.0
    probs[:, 4:10, 4:14] = np.array([0.1, 0.8, 0.1])[:, None, None]  # class 1 predicted: 6×10
    probs[:, 10:16, 4:14] = np.array([0.1, 0.1, 0.8])[:, None, None]  # class 2 below it, touching
    labels = np.zeros((20, 20), np.int64)
    labels[10:16, 4:14] = 2
    labelled = labels == 2  # class 2 delineated on this slice
    predicted = probs.argmax(axis=0) == 1
    alone = predicted_outline_mm(probs, 1, None, (1.0, 1.0))
    assert alone == pytest.approx(boundary_length(predicted).mm)
    beside = predicted_outline_mm(probs, 1, (labels, labelled), (0.5, 2.0))
    assert beside == pytest.approx(roi_trace_length(predicted, [labelled], (0.5, 2.0)).mm)
    assert beside < boundary_length(predicted, (0.5, 2.0)).mm - 15  # the 10 px shared edge (20 mm) is free
    without_class_2 = np.stack([probs[0] + probs[2], probs[1], np.zeros_like(probs[2])])
    assert math.isnan(predicted_outline_mm(without_class_2, 2, None, (1.0, 1.0)))  # not predicted: no outline

def test_inputs_are_checked():
    images, labels, _ = partially_labelled_stack()
    with pytest.raises(AlsegError, match="granularity"):
        score_pool(ScoreRequest(None, None, images, labels, granularity="volume", n_classes=3, needs=set()))
    with pytest.raises(AlsegError, match="unknown scoring needs"):
        score_pool(ScoreRequest(None, None, images, labels, granularity="slice", n_classes=3, needs={"magic"}))
    with pytest.raises(AlsegError, match="2D net"):
        score_pool(ScoreRequest(tiny_net(3), None, images, labels, granularity="slice", n_classes=3, needs=set()))
    with pytest.raises(AlsegError, match=r"\(channels, k, j, i\)"):
        score_pool(ScoreRequest(None, None, {"c": images["c"][0]}, {}, granularity="slice", n_classes=3,
                                needs=set()))


def test_available_follows_what_the_pool_holds():
    item = QueryItem("a")
    pool = PoolScores("case", 3, True, None, [item], [], terms={item: {"mc_top": 0.1, "bootstrap": 0.2}})
    assert pool.available() == {"model", "mc", "bootstrap"}
    pool.features[item] = np.ones(4)
    assert "features" in pool.available()


def test_prediction_boxes_computed_in_slabs_match_the_whole_argmax(monkeypatch):
    from napari_alseg.scoring import boxes

    rng = np.random.default_rng(0)
    probs = rng.random((3, 9, 7, 6)).astype(np.float32)
    probs[1:, :2] = 0  # no foreground on the first two slices
    whole = {item: boxes.item_bbox(probs, item, (9, 7, 6)) for item in (QueryItem("c"), QueryItem("c", None, 2))}
    monkeypatch.setattr(boxes, "BBOX_SLAB_VOXELS", 50)  # one slice of 7 x 6 at a time
    assert {item: boxes.item_bbox(probs, item, (9, 7, 6)) for item in whole} == whole
    hard = probs.argmax(axis=0)
    assert whole[QueryItem("c")][0] == (max(0, int(np.nonzero((hard > 0).any(axis=(1, 2)))[0][0]) - 2), 9)


def test_scoring_and_the_model_share_one_partial_label_posterior():
    """Scoring's partial-label posterior (docs/METHODS.md §7.2) is the model's
    renormalise_prediction, also where the network puts no mass on the classes still possible
    (both: uniform over C_n)."""
    from types import SimpleNamespace

    from napari_alseg.model import renormalise_prediction
    from napari_alseg.scoring.predict import RegionPrediction, with_partial_labels

    probs = np.zeros((3, 4, 4), np.float32)
    probs[0] = 0.7
    probs[1] = 0.3  # class 2 gets nothing
    probs[:, 0, 0] = (0.2, 0.3, 0.5)
    labels = np.zeros((4, 4), np.int64)
    mask = np.zeros((4, 4), bool)
    mask[3] = True
    labels[3] = 1
    allowed = np.array([False, False, True])  # C_n = {2}: the network gives it no mass off (0, 0)
    allowed_map = torch.from_numpy(np.broadcast_to(allowed[:, None, None], probs.shape).copy())
    expected = renormalise_prediction(torch.from_numpy(probs)[None], torch.from_numpy(labels)[None],
                                      torch.from_numpy(mask)[None], allowed_map[None])[0].numpy()
    region = QueryItem("c", 0)
    inputs = SimpleNamespace(region_labels=lambda _region: (labels, mask), region_allowed=lambda _region: allowed)
    scored = with_partial_labels(RegionPrediction(probs, probs, np.ones_like(probs), None, None), inputs, region)
    np.testing.assert_allclose(scored.probs, expected, atol=1e-6)
    np.testing.assert_allclose(scored.mc_probs, expected, atol=1e-6)
    np.testing.assert_allclose(scored.probs[:, 1, 1], [0, 0, 1])  # no mass on C_n: uniform over C_n = {2}
    np.testing.assert_allclose(scored.probs[:, 3, 0], [0, 1, 0])  # a labelled pixel keeps its label
    assert (scored.variance[:, 3] == 0).all()


def test_scoring_takes_the_prediction_inside_the_body_as_the_dock_shows_it():
    # issue 22 items 2 and 8: a young model's stray probability in the air counted as expected
    # foreground, so a slice that is mostly air topped dice-per-effort's queue
    from napari_alseg.scoring.predict import RegionPrediction, within_body
    from napari_alseg.scoring.terms import roi_terms

    image = np.zeros((1, 20, 20), np.float32)
    image[0, 5:15, 5:15] = 1.0  # the head; the rest is air
    probs = np.full((3, 20, 20), 1 / 3, np.float32)
    variance = np.full((3, 20, 20), 0.01, np.float32)
    members = np.stack([probs, probs])
    shown = within_body(RegionPrediction(probs, probs.copy(), variance, members, None), image)
    unlabelled = np.ones((20, 20), bool)
    assert roi_terms(shown.probs, 1, unlabelled)["foreground"] == pytest.approx(100 / 3, rel=1e-5)  # inside only
    assert roi_terms(probs, 1, unlabelled)["foreground"] == pytest.approx(400 / 3, rel=1e-5)  # (the air counted)
    assert (shown.probs[0, 0, 0], shown.mc_probs[1, 0, 0], shown.variance[2, 0, 0]) == (1.0, 0.0, 0.0)
    assert (shown.members[:, 0, 0, 0] == 1.0).all() and (shown.variance[:, 10, 10] == 0.01).all()
    full = np.ones((1, 20, 20), np.float32)
    full[0, 10, 10] = 0.5  # the floor inside the head: nothing empty reaches the edge
    untouched = RegionPrediction(probs, None, None, None, None)
    assert within_body(untouched, full) is untouched  # nothing empty: the prediction as it was
