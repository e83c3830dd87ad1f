"""Query strategies on constructed pools whose right answer is known, plus every strategy
on a real (tiny) scored pool in 2D and 3D."""

import math

import numpy as np
import pytest
import torch

from napari_alseg.effort.matrix import EffortModel
from napari_alseg.effort.seconds import SecondsModel
from napari_alseg.errors import AlsegError
from napari_alseg.model import ModelSpec
from napari_alseg.quality import FEATURE_NAMES, QualityPredictor
from napari_alseg.scoring import PoolScores, ScoreRequest, region_terms, score_pool
from napari_alseg.strategies import (STRATEGIES, QueryItem, SelectionContext, get_strategy, pseudo_label_candidates,
                                     select)
from napari_alseg.strategies.gradient_vae import direction_cosine

TINY = (4, 8, 8, 8, 16, 4)
ALL_NEEDS = {"model", "mc", "features", "bootstrap", "vae", "quality", "effort"}


def case_pool(terms, *, labelled=(), features=None, n_classes=3, has_model=True, **fields):
    """A case-granularity pool from ``{case: {term: value}}``."""
    candidates = [QueryItem(case) for case in terms]
    return PoolScores(
        "case", n_classes, has_model, "v1", candidates, [QueryItem(case) for case in labelled],
        terms={QueryItem(case): dict(values) for case, values in terms.items()},
        features={QueryItem(case): np.asarray(f, float) for case, f in (features or {}).items()},
        **fields,
    )


def names(suggestions):
    return [s.item.case for s in suggestions]


def binary_probs(foreground, shape=(4, 8, 8)):
    p = np.full(shape, foreground, dtype=np.float32)
    return np.stack([1 - p, p])


# ----------------------------------------------------------------- uncertainty sampling


def test_margins_picks_probabilities_nearest_half():
    terms = {name: region_terms(binary_probs(p)) for name, p in {"sure": 0.95, "half": 0.52, "low": 0.1}.items()}
    assert names(select("margins", case_pool(terms), 1, seed=0)) == ["half"]


def test_entropy_picks_the_most_uniform_prediction():
    uniform = np.full((3, 4, 8, 8), 1 / 3, dtype=np.float32)
    peaked = np.stack([np.full((4, 8, 8), v, np.float32) for v in (0.8, 0.1, 0.1)])
    terms = {"peaked": region_terms(peaked), "uniform": region_terms(uniform)}
    picks = select("entropy", case_pool(terms), 2, seed=0)
    assert names(picks) == ["uniform", "peaked"]
    assert picks[0].terms["uncertainty"] == pytest.approx(math.log(3), rel=1e-5)


def mc_terms(variance_value, where):
    probs = binary_probs(0.5, (32, 32, 32))
    variance = np.zeros_like(probs)
    variance[(slice(None), *where)] = variance_value
    return region_terms(probs, mc_probs=probs, variance=variance)


def test_mc_top_prefers_small_high_variance_blob_and_mc_sum_the_broad_one():
    blob = (slice(10, 13),) * 3  # 27 voxels: about the top 0.1 % of 32^3
    terms = {"blob": mc_terms(0.2, blob), "broad": mc_terms(0.01, (slice(None),) * 3)}
    pool = case_pool(terms)
    assert names(select("mc-dropout-top", pool, 1, seed=0)) == ["blob"]
    assert names(select("mc-dropout-sum", pool, 1, seed=0)) == ["broad"]


def test_bootstrap_and_entropy_mc_rank_by_their_own_terms():
    pool = case_pool({"a": {"bootstrap": 0.1, "entropy_mc": 0.9, "mc_top": 0.0},
                      "b": {"bootstrap": 0.3, "entropy_mc": 0.2, "mc_top": 0.0}})
    assert names(select("bootstrap", pool, 1, seed=0)) == ["b"]
    assert names(select("entropy-mc", pool, 1, seed=0)) == ["a"]


# ----------------------------------------------------------------- redundancy restriction


def test_representative_takes_one_from_each_feature_cluster():
    a, b = [1.0, 0.05], [0.05, 1.0]
    uncertainty = {"a1": 0.9, "a2": 0.8, "b1": 0.7, "a3": 0.6, "b2": 0.5}
    features = {name: a if name.startswith("a") else b for name in uncertainty}
    pool = case_pool({name: {"mc_top": u} for name, u in uncertainty.items()}, features=features)
    picks = select("representative", pool, 2, seed=0)
    assert sorted(name[0] for name in names(picks)) == ["a", "b"]
    assert picks[0].score > picks[1].score and "uncertainty" in picks[0].terms


def test_non_similar_picks_the_candidate_far_from_labelled():
    features = {"near1": [1.0, 0.05], "far": [0.0, 1.0], "near2": [1.0, 0.1], "done": [1.0, 0.0]}
    pool = case_pool({"near1": {"mc_top": 0.9}, "far": {"mc_top": 0.8}, "near2": {"mc_top": 0.7}},
                     labelled=["done"], features=features)
    picks = select("non-similar", pool, 1, seed=0)
    assert names(picks) == ["far"]
    assert picks[0].terms["max_similarity"] == pytest.approx(0.0)


# ----------------------------------------------------------------- dice per effort


def roi_pool(candidates, labelled, effort, history=(), seconds_model=None, spacing=(("c", (0.5, 0.5)),)):
    """An ROI pool of case "c" with a model, and the selection context dice-per-effort ranks it in."""
    pool = PoolScores("roi", 3, True, "v1", [QueryItem("c", n, cls) for n, cls in candidates],
                      [QueryItem("c", n, cls) for n, cls in labelled], n_slices={"c": 10})
    context = SelectionContext(effort, seconds_model, dict(spacing), [np.asarray(h, float) for h in history])
    return pool, context


def observed_effort(touching):
    """B from one slice: class 1 a 20×20 square, class 2 a 6×6 square touching it or not."""
    labels = np.zeros((40, 40), np.int64)
    labels[5:25, 5:25] = 1
    if touching:
        labels[10:16, 25:31] = 2
    else:
        labels[30:36, 30:36] = 2
    effort = EffortModel(3)
    effort.observe(labels, [1, 2])
    return effort


def test_dice_per_effort_prefers_the_roi_next_to_labelled_neighbours():
    # Slice 5 already has class 1: the 6 px class 1 / class 2 border is free there.
    pool, context = roi_pool([(5, 2), (6, 2)], [(5, 1)], observed_effort(touching=True))
    picks = select("dice-per-effort", pool, 2, seed=0, context=context)
    assert [s.item.slice_index for s in picks] == [5, 6]
    assert picks[0].terms["effort_mm"] < picks[1].terms["effort_mm"]
    assert picks[0].terms["effort_px"] == pytest.approx(2 * picks[0].terms["effort_mm"])


def test_dice_per_effort_prefers_the_class_with_the_larger_dice_gap():
    effort = EffortModel(3)
    square = np.zeros((40, 40), np.int64)
    square[5:15, 5:15] = 1
    square[20:30, 20:30] = 2
    effort.observe(square, [1, 2])  # equal boundaries for classes 1 and 2
    history = [[0.7, 0.3], [0.9, 0.5]]  # D̃_1 = 0.8, D̃_2 = 0.4
    seconds = SecondsModel.fit([1, 1, 2, 2], [10, 20, 10, 20], [5, 10, 5, 10])
    pool, context = roi_pool([(3, 1), (3, 2)], [], effort, history, seconds)
    best = select("dice-per-effort", pool, 1, seed=0, context=context)[0]
    assert best.item.class_id == 2
    assert best.terms["dice_gap"] == pytest.approx(0.6)
    assert best.terms["effort_s"] == pytest.approx(0.5 * best.terms["effort_px"])


def test_dice_per_effort_asks_last_for_a_known_class_the_model_sees_none_of_on_the_slice():
    # class 1 is known (latest Dice 0.8) and expected on 0.2 px of slice 4: most likely absent there;
    # class 2 is not learnt yet (0.1): its slice keeps its place whatever the model predicts
    pool, context = roi_pool([(3, 1), (4, 1), (5, 2)], [], observed_effort(touching=False), history=[[0.8, 0.1]])
    pool.terms.update({QueryItem("c", 3, 1): {"foreground": 40.0}, QueryItem("c", 4, 1): {"foreground": 0.2},
                       QueryItem("c", 5, 2): {"foreground": 0.0}})
    picks = select("dice-per-effort", pool, 3, seed=0, context=context)
    assert [s.item.slice_index for s in picks][-1] == 4
    assert "sees none of it" in picks[-1].message and set(s.item.slice_index for s in picks[:2]) == {3, 5}


def test_dice_per_effort_rejects_history_of_the_wrong_length():
    pool, context = roi_pool([(3, 1)], [], EffortModel(3), history=[[0.5, 0.5, 0.5]])
    with pytest.raises(AlsegError, match="2 values"):
        select("dice-per-effort", pool, 1, seed=0, context=context)


def test_dice_per_effort_prices_an_unseen_class_at_a_prior_not_at_the_floor():
    effort = observed_effort(touching=False)  # classes 1 and 2 seen; pools of 4 classes below
    labels = np.zeros((40, 40), np.int64)
    labels[5:25, 5:25] = 1
    four = EffortModel(4)
    four.observe(labels, [1])
    pool = PoolScores("roi", 4, True, "v1", [QueryItem("c", 3, 1), QueryItem("c", 3, 3)], [], n_slices={"c": 10})
    context = SelectionContext(four, class_dice_history=[np.array([0.6, np.nan, np.nan])])
    picks = {s.item.class_id: s for s in select("dice-per-effort", pool, 2, seed=0, context=context)}
    unseen = picks[3]
    assert unseen.terms["effort_mm"] == pytest.approx(four.boundary_matrix[1, 1]) and unseen.terms["effort_mm"] > 50
    assert unseen.score < 1.0 and unseen.score == pytest.approx(1.0 / unseen.terms["effort_mm"])
    assert unseen.effort_guess and not picks[1].effort_guess  # said so in the dock
    # the paper's B: the unseen class scores gap / 0.001 = 1000, and no effort is shown for it
    paper = {s.item.class_id: s for s in select("dice-per-effort-paper", pool, 2, seed=0, context=context)}
    assert paper[3].score == pytest.approx(1000.0, rel=1e-3)
    assert "effort_mm" not in paper[3].terms and "effort unknown" in paper[3].message
    assert paper[1].terms["effort_mm"] == pytest.approx(effort.boundary_matrix_of("paper")[1, 1], rel=1e-3)


def test_dice_per_effort_says_effort_unknown_before_any_outline():
    pool, context = roi_pool([(3, 1), (3, 2), (4, 2)], [], EffortModel(3), history=[[0.2, 0.7]])
    picks = select("dice-per-effort", pool, 3, seed=0, context=context)
    assert all("effort_mm" not in s.terms and "effort unknown" in s.message for s in picks)
    assert picks[0].item.class_id == 1 and picks[0].score == pytest.approx(0.8)  # ranked by the Dice gap


def test_dice_per_effort_uses_the_predicted_outline_as_the_model_matures():
    effort = EffortModel(3)
    labels = np.zeros((40, 40), np.int64)
    labels[5:25, 5:25] = 1
    labels[30:36, 30:36] = 2
    for _ in range(20):
        effort.observe(labels, [1, 2])  # class 2's B is a 6×6 square's outline, ~23 mm at 1 mm
    pool, context = roi_pool([(3, 2), (4, 2)], [], effort, spacing=())
    pool.terms = {QueryItem("c", 3, 2): {"effort_pred_mm": 200.0}, QueryItem("c", 4, 2): {"effort_pred_mm": 10.0}}
    picks = select("dice-per-effort", pool, 2, seed=0, context=context)
    assert [s.item.slice_index for s in picks] == [4, 3]  # the prediction says slice 4's outline is short
    weight = 20 / (20 + 5)
    b_only = effort.estimate(2, set(), {2}, estimator="prior").mm
    assert picks[1].terms["effort_mm"] == pytest.approx(weight * 200 + (1 - weight) * b_only)
    paper = select("dice-per-effort-paper", pool, 2, seed=0, context=context)
    assert paper[0].terms["effort_mm"] == pytest.approx(paper[1].terms["effort_mm"])  # B alone: no difference


# ----------------------------------------------------------------- baselines


def test_slice_uniform_shortens_the_longest_unlabelled_run():
    pool = PoolScores("slice", 3, False, None, [QueryItem("c", n) for n in range(9)], [], n_slices={"c": 9})
    picks = select("slice-uniform", pool, 9, seed=0)
    assert [s.item.slice_index for s in picks] == [4, 1, 6, 2, 7, 0, 3, 5, 8]


def test_slice_uniform_on_rois_gives_all_open_rois_of_a_slice_first():
    candidates = [QueryItem("c", n, cls) for n in range(5) for cls in (1, 2) if (n, cls) != (2, 1)]
    pool = PoolScores("roi", 3, False, None, candidates, [QueryItem("c", 2, 1)], n_slices={"c": 5})
    picks = select("slice-uniform", pool, 3, seed=0)
    assert [(s.item.slice_index, s.item.class_id) for s in picks] == [(2, 2), (0, 1), (0, 2)]


def test_random_is_repeatable_with_a_seed_and_differs_across_seeds():
    pool = case_pool({f"c{i:02d}": {} for i in range(30)}, has_model=False)
    first = names(select("random", pool, 5, seed=1))
    assert first == names(select("random", pool, 5, seed=1))
    assert first != names(select("random", pool, 5, seed=2))
    assert len(set(first)) == 5


# ----------------------------------------------------------------- gradient-guided VAE


def test_random_roi_draws_single_rois_and_refuses_slice_pools():
    candidates = [QueryItem("c", n, cls) for n in range(10) for cls in (1, 2)]
    pool = PoolScores("roi", 3, False, None, candidates, [], n_slices={"c": 10})
    picks = select("random-roi", pool, 6, seed=0)
    assert len({s.item for s in picks}) == 6 and all(s.strategy == "random-roi" for s in picks)
    assert all(s.item.class_id in (1, 2) for s in picks)
    assert len({s.item.slice_index for s in picks}) > 1  # not whole slices
    slices = PoolScores("slice", 3, False, None, [QueryItem("c", n) for n in range(4)], [], n_slices={"c": 4})
    assert "roi items, not slice items" in select("random-roi", slices, 1, seed=0)[0].message


def vae_pool(latents, seeds):
    candidates = [QueryItem(name) for name in latents]
    all_latents = {QueryItem(name): np.asarray(z, float) for name, z in latents.items()}
    all_latents |= {QueryItem(name): np.asarray(z, float) for name, (z, _moved) in seeds.items()}
    moved = {QueryItem(name): np.asarray(moved, float) for name, (_z, moved) in seeds.items()}
    return PoolScores("case", 3, True, "v1", candidates, [QueryItem(name) for name in seeds],
                      vae_latents=all_latents, gradient_latents=moved)


def test_gradient_vae_takes_the_nearest_sample_ahead_of_the_gradient_step():
    latents = {"behind": [-0.05, 0.0], "sideways": [0.0, -0.2], "ahead": [0.5, 0.3], "far_ahead": [1.0, 0.1]}
    pool = vae_pool(latents, {"seed": ([0.0, 0.0], [0.1, 0.0])})
    picks = select("gradient-vae", pool, 1, seed=0)
    assert names(picks) == ["ahead"]
    assert picks[0].terms["direction_cosine"] >= math.cos(math.radians(45))
    cosine = direction_cosine(np.array([latents["behind"]]), np.zeros(2), np.array([0.1, 0.0]))
    assert cosine[0] == pytest.approx(-1.0)


def test_gradient_vae_gives_one_per_seed_then_fills_with_nearest_unused():
    latents = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [-0.3, 0.2], "d": [5.0, 5.0]}
    seeds = {"s1": ([0.0, 0.0], [0.01, 0.0]), "s2": ([0.0, 0.0], [0.0, 0.01])}
    picks = select("gradient-vae", vae_pool(latents, seeds), 3, seed=0)
    assert sorted(names(picks)[:2]) == ["a", "b"] and names(picks)[2] == "c"
    assert all(s.item in vae_pool(latents, seeds).candidates for s in picks)


def test_gradient_vae_without_seeds_falls_back_to_random():
    pool = vae_pool({"a": [0.0, 1.0], "b": [1.0, 0.0]}, {})
    picks = select("gradient-vae", pool, 2, seed=0)
    assert len(picks) == 2 and "no labelled seed" in picks[0].message


# ----------------------------------------------------------------- quality threshold


def quality(poor, adjust, acceptable):
    probabilities = np.array([poor, adjust, acceptable])
    return {"quality_p_poor": poor, "quality_p_adjust": adjust, "quality_p_acceptable": acceptable,
            "quality_class": float(probabilities.argmax()), "quality_prob": float(probabilities.max()),
            "quality_examples": 12.0, "mc_top": 0.0}


def test_quality_threshold_sends_poor_and_adjust_to_the_expert_and_offers_acceptable():
    pool = case_pool({"good": quality(0.05, 0.15, 0.8), "poor": quality(0.8, 0.15, 0.05),
                      "adjust": quality(0.2, 0.6, 0.2), "fine": quality(0.1, 0.3, 0.6)})
    picks = select("quality-threshold", pool, 4, seed=0)
    assert names(picks) == ["poor", "adjust", "fine", "good"]
    assert [s.pseudo_label for s in picks] == [False, False, True, True]
    assert names(select("quality-threshold", pool, 2, seed=0)) == ["poor", "adjust"]
    offered = pseudo_label_candidates(pool, threshold=0.7)
    assert names(offered) == ["good"] and offered[0].pseudo_label
    assert names(pseudo_label_candidates(pool)) == ["good", "fine"]


def test_quality_threshold_ranks_the_expert_items_by_predicted_dice():
    # all three Poor, with the same band probabilities: only the predicted Dice tells them apart
    same = quality(0.8, 0.15, 0.05)
    dice = {"d": 0.1, "b": 0.4, "e": 0.25, "a": 0.3, "c": 0.05}
    pool = case_pool({name: {**same, "quality_dice": value} for name, value in dice.items()})
    assert names(select("quality-threshold", pool, 5, seed=0)) == ["c", "d", "e", "a", "b"]


def test_an_acceptable_rating_from_too_few_examples_is_not_offered_as_a_pseudo_label():
    barely = {**quality(0.05, 0.15, 0.8), "quality_examples": 2.0}  # still (nearly) the model's own soft Dice
    pool = case_pool({"calibrated": quality(0.05, 0.15, 0.8), "barely": barely, "poor": quality(0.8, 0.15, 0.05)})
    picks = select("quality-threshold", pool, 3, seed=0)
    assert names(picks) == ["poor", "barely", "calibrated"]
    assert [s.pseudo_label for s in picks] == [False, False, True]
    assert names(pseudo_label_candidates(pool)) == ["calibrated"]


def test_quality_threshold_with_unknown_quality_ranks_by_mc_dropout():
    unknown = {"quality_class": math.nan, "quality_p_poor": math.nan, "quality_p_adjust": math.nan,
               "quality_p_acceptable": math.nan, "quality_prob": math.nan}
    pool = case_pool({"calm": {**unknown, "mc_top": 0.1}, "wild": {**unknown, "mc_top": 0.5}},
                     quality_status="quality unknown: 3 rated prediction(s), at least 6 needed")
    picks = select("quality-threshold", pool, 2, seed=0)
    assert names(picks) == ["wild", "calm"]
    assert "at least 6 needed" in picks[0].message and "MC-dropout" in picks[0].message
    assert pseudo_label_candidates(pool) == []


# ----------------------------------------------------------------- bad input


def test_bad_input_is_handled_by_select():
    empty = case_pool({})
    assert select("entropy", empty, 3, seed=0) == []
    all_labelled = case_pool({}, labelled=["a", "b"])
    assert select("random", all_labelled, 3, seed=0) == []
    small = case_pool({"a": {"entropy": 0.1}, "b": {"entropy": 0.2}})
    assert sorted(names(select("entropy", small, 10, seed=0))) == ["a", "b"]
    assert select("entropy", small, 0, seed=0) == []
    with pytest.raises(AlsegError, match="non-negative"):
        select("entropy", small, -1, seed=0)
    with pytest.raises(AlsegError, match="choose from: random, random-roi, slice-uniform"):
        get_strategy("entropyy")


def test_needs_the_pool_lacks_fall_back_to_random_with_the_reason():
    no_model = case_pool({"a": {}, "b": {}}, has_model=False)
    picks = select("mc-dropout-top", no_model, 2, seed=0)
    assert len(picks) == 2 and all("no model yet" in s.message for s in picks)
    assert all(s.strategy == "random" for s in picks)
    no_mc = case_pool({"a": {"entropy": 1.0}})
    assert "no MC-dropout scores" in select("representative", no_mc, 1, seed=0)[0].message
    wrong_kind = select("dice-per-effort", no_mc, 1, seed=0)[0]
    assert "roi items, not case items" in wrong_kind.message


def test_nan_scores_are_ranked_last_and_reported():
    pool = case_pool({"nan": {"entropy": math.nan}, "low": {"entropy": 0.1}, "high": {"entropy": 0.5}})
    picks = select("entropy", pool, 3, seed=0)
    assert names(picks) == ["high", "low", "nan"]
    assert all("1 item(s) had no score" in s.message for s in picks)


def test_exact_ties_follow_the_seed_not_insertion_order():
    terms = {f"c{i}": {"entropy": 1.0} for i in range(12)}
    forward, backward = case_pool(terms), case_pool(dict(reversed(list(terms.items()))))
    assert names(select("entropy", forward, 12, seed=3)) == names(select("entropy", backward, 12, seed=3))
    assert names(select("entropy", forward, 12, seed=3)) != names(select("entropy", forward, 12, seed=4))


# ----------------------------------------------------------------- every strategy, real pools


def synthetic_case(rng, k, shape=(32, 32)):
    labels = np.zeros((k, *shape), np.int64)
    labels[:, 8:20, 8:20] = 1
    labels[:, 20:26, 10:18] = 2
    image = rng.normal(0, 0.2, (1, k, *shape)).astype(np.float32)
    image[0] += labels.astype(np.float32)
    return image, labels


@pytest.fixture(scope="module")
def one_thread(one_torch_thread):
    return one_torch_thread


@pytest.fixture(scope="module", params=["slice", "roi", "case"])
def real_pool(request, one_thread):
    """A pool scored by a tiny real net with every need (2D: one 6-slice case; 3D: 5 cases)."""
    granularity = request.param
    dims = 3 if granularity == "case" else 2
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net, *bootstrap = [ModelSpec(dims, 1, 3, TINY, dropout=0.5).build() for _ in range(3)]
    images, labels = {}, {}
    for index in range(1 if dims == 2 else 5):
        image, truth = synthetic_case(rng, 6 if dims == 2 else 8)
        mask = np.zeros(truth.shape, bool)
        if dims == 2:
            mask[[0, 3]] = True
            mask[1] = truth[1] == 1
        elif index < 2:
            mask[:] = True
        images[f"c{index}"], labels[f"c{index}"] = image, (truth, mask)
    validation = {QueryItem("c0", 5)} if dims == 2 else {QueryItem("c4")}
    predictor = QualityPredictor().fit(rng.normal(size=(12, len(FEATURE_NAMES))), np.linspace(0.3, 0.95, 12))
    pool = score_pool(ScoreRequest(net, net.spec, images, labels, granularity=granularity, n_classes=3,
                                   needs=ALL_NEEDS, mc_samples=3, bootstrap_nets=bootstrap,
                                   quality_model=predictor, validation=validation, vae_steps=10, device=one_thread))
    return pool, validation


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_valid_suggestions_on_a_real_pool(name, real_pool):
    pool, validation = real_pool
    k = 3
    picks = select(name, pool, k, seed=0, context=SelectionContext(EffortModel(3)))
    assert 0 < len(picks) <= k
    items = [s.item for s in picks]
    assert len(set(items)) == len(items)
    assert all(item in pool.candidates and item not in pool.labelled for item in items)
    assert not any(item.region in validation or QueryItem(item.case) in validation for item in items)
    for s in picks:
        assert s.bbox is not None and len(s.bbox) == 3
        assert all(0 <= lo < hi for lo, hi in s.bbox)
        assert isinstance(s.terms, dict) and s.terms
        assert math.isfinite(s.score) or "no score" in s.message
