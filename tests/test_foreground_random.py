"""The foreground-aware random baseline: draws follow predicted foreground; random without a model."""

import numpy as np
import pytest
from scipy import stats

from napari_alseg.domain import TERM_FOREGROUND
from napari_alseg.pool import PoolScores
from napari_alseg.strategies import STRATEGIES, QueryItem, select
from napari_alseg.strategies.foreground_random import FOREGROUND_SHARE, NAME, ROI_NAME, foreground_weights

FOREGROUND = {"none": 0.0, "small": 100.0, "medium": 300.0, "large": 600.0}


def pool_of(items, foreground, *, granularity="case", has_model=True, with_term=True):
    terms = {item: ({TERM_FOREGROUND: value} if with_term else {"entropy": 0.1}) for item, value in zip(items, foreground)}
    return PoolScores(granularity, 3, has_model, "v1" if has_model else None, list(items), [], terms=terms)


def case_pool(**options):
    return pool_of([QueryItem(name) for name in FOREGROUND], list(FOREGROUND.values()), **options)


def expected_first_pick():
    values = np.array(list(FOREGROUND.values()))
    return (1 - FOREGROUND_SHARE) / len(values) + FOREGROUND_SHARE * values / values.sum()


def test_registered_for_every_granularity():
    strategy = STRATEGIES[NAME]
    assert strategy.granularities == {"case", "slice", "roi"} and strategy.needs == {"model"}
    roi = STRATEGIES[ROI_NAME]  # what makes a 2D stack's session rank ROIs rather than slices
    assert roi.granularity == "roi" and roi.granularities == {"roi"} and roi.needs == {"model"}
    rois = [QueryItem("c", 0, c) for c in (1, 2, 3, 4)]
    pool = pool_of(rois, list(FOREGROUND.values()), granularity="roi")
    picks = select(ROI_NAME, pool, 4, seed=2)
    assert [s.item for s in picks] == [s.item for s in select(NAME, pool, 4, seed=2)]
    assert all(s.strategy == ROI_NAME for s in picks)
    assert all("no model yet" in s.message
               for s in select(ROI_NAME, pool_of(rois, [1.0] * 4, granularity="roi", has_model=False), 2, seed=0))


def test_weights_mix_uniform_and_foreground():
    np.testing.assert_allclose(foreground_weights(np.array([0.0, 1.0, 3.0])),
                               [1 / 9, 1 / 9 + 2 / 3 * 1 / 4, 1 / 9 + 2 / 3 * 3 / 4])
    np.testing.assert_allclose(foreground_weights(np.zeros(4)), 0.25)
    np.testing.assert_allclose(foreground_weights(np.array([np.nan, -1.0, 2.0])), [1 / 9, 1 / 9, 7 / 9])


def test_first_picks_follow_predicted_foreground():
    n_draws = 4000
    pool = case_pool()
    counts = dict.fromkeys(FOREGROUND, 0)
    for seed in range(n_draws):
        counts[select(NAME, pool, 1, seed=seed)[0].item.case] += 1
    observed = np.array([counts[name] for name in FOREGROUND])
    expected = expected_first_pick() * n_draws
    assert stats.chisquare(observed, expected).pvalue > 0.01
    np.testing.assert_allclose(observed / n_draws, expected_first_pick(), atol=0.025)
    assert observed[0] > 0  # an item with no predicted foreground still comes up (the uniform third)


@pytest.mark.parametrize("granularity, items", [
    ("slice", [QueryItem("c", n) for n in range(4)]),
    ("roi", [QueryItem("c", 0, c) for c in (1, 2, 3, 4)]),
])
def test_slices_and_rois_follow_foreground_too(granularity, items):
    pool = pool_of(items, list(FOREGROUND.values()), granularity=granularity)
    picks = [select(NAME, pool, 1, seed=seed)[0].item for seed in range(2000)]
    frequencies = np.array([picks.count(item) for item in items]) / len(picks)
    np.testing.assert_allclose(frequencies, expected_first_pick(), atol=0.035)


def test_k_picks_are_distinct_weighted_draws_without_replacement():
    pool = case_pool()
    picks = select(NAME, pool, 4, seed=3)
    assert sorted(s.item.case for s in picks) == sorted(FOREGROUND)
    assert [s.score for s in picks] == sorted((s.score for s in picks), reverse=True)
    assert all(s.terms[TERM_FOREGROUND] == FOREGROUND[s.item.case] for s in picks)
    # the largest item is the most often in a draw of two, the empty one the least
    pairs = [tuple(s.item.case for s in select(NAME, pool, 2, seed=seed)) for seed in range(1000)]
    in_pair = {name: sum(name in pair for pair in pairs) for name in FOREGROUND}
    assert in_pair["large"] > in_pair["medium"] > in_pair["small"] > in_pair["none"]


def test_same_seed_same_draws():
    assert select(NAME, case_pool(), 3, seed=11) == select(NAME, case_pool(), 3, seed=11)


def test_without_a_model_it_is_plain_random():
    no_model = case_pool(has_model=False)
    picks = select(NAME, no_model, 2, seed=5)
    assert [s.item for s in picks] == [s.item for s in select("random", no_model, 2, seed=5)]
    assert all("no model yet" in s.message and "random" in s.message for s in picks)
    counts = dict.fromkeys(FOREGROUND, 0)
    for seed in range(2000):
        counts[select(NAME, no_model, 1, seed=seed)[0].item.case] += 1
    np.testing.assert_allclose(np.array(list(counts.values())) / 2000, 0.25, atol=0.035)


def test_without_the_foreground_term_it_is_plain_random_and_says_so():
    picks = select(NAME, case_pool(with_term=False), 2, seed=5)
    assert [s.item for s in picks] == [s.item for s in select("random", case_pool(with_term=False), 2, seed=5)]
    assert all("no predicted foreground" in s.message for s in picks)


# ----------------------------------------------------------------- a real (tiny) scoring run


@pytest.fixture(scope="module")
def scored_slices(one_torch_thread):
    """A tiny 2D net trained to see bright squares, scoring a case whose slices 0-3 hold
    squares of growing size and 4-7 hold none; slice 1 is half labelled."""
    import torch

    from napari_alseg.model import ModelSpec, TrainConfig, TrainingItem, fine_tune
    from napari_alseg.scoring import ScoreRequest, score_pool

    rng = np.random.default_rng(0)
    truth = np.zeros((8, 32, 32), np.int64)
    for n, half in enumerate((3, 5, 7, 9)):
        truth[n, 16 - half:16 + half, 16 - half:16 + half] = 1
    image = (truth * 2.0 + rng.normal(0, 0.2, truth.shape))[None].astype(np.float32)
    torch.manual_seed(0)
    net = ModelSpec(2, 1, 2, (4, 8, 8, 8, 16, 4)).build()
    items = [TrainingItem(image[:, n], truth[n], np.ones((32, 32), bool)) for n in (0, 2, 3, 5, 6)]
    result = fine_tune(net, items, TrainConfig(steps=150, batch_size=4, patch_size=None, augment=False,
                                               learning_rate=3e-2, device="cpu"))
    net.load_state_dict(result.state_dict)
    labelled = np.zeros(truth.shape, bool)
    labelled[1, :, :16] = True  # half of slice 1: a partial label, still a candidate
    pool = score_pool(ScoreRequest(net, net.spec, {"c": image}, {"c": (truth, labelled)}, granularity="slice",
                                   n_classes=2, needs={"model"}, device=one_torch_thread))
    return pool, truth, labelled


def test_scoring_computes_the_foreground_over_unlabelled_voxels(scored_slices):
    pool, truth, labelled = scored_slices
    assert all(TERM_FOREGROUND in pool.terms[item] for item in pool.candidates)
    foreground = {item.slice_index: pool.terms[item][TERM_FOREGROUND] for item in pool.candidates}
    # the trained net sees the squares: slices with one have far more predicted foreground
    empty = max(foreground[n] for n in (4, 5, 6, 7))
    assert foreground[0] > empty and min(foreground[2], foreground[3]) > 5 * empty
    for n in (0, 2, 3):
        assert foreground[n] == pytest.approx((truth[n] == 1).sum(), rel=0.5)
    # slice 1: only its unlabelled right half counts (the square straddles both halves)
    assert foreground[1] == pytest.approx((truth[1][:, 16:] == 1).sum(), rel=0.5)
    assert foreground[1] < foreground[2]


def test_random_foreground_follows_the_scored_foreground(scored_slices):
    pool = scored_slices[0]
    items = sorted(pool.candidates)
    weights = foreground_weights(np.array([pool.terms[item][TERM_FOREGROUND] for item in items]))
    picks = [select(NAME, pool, 1, seed=seed)[0] for seed in range(2000)]
    assert not any("random suggestions" in s.message for s in picks)
    frequencies = np.array([sum(s.item == item for s in picks) for item in items]) / len(picks)
    np.testing.assert_allclose(frequencies, weights, atol=0.035)
    squares = sum(frequencies[i] for i, item in enumerate(items) if item.slice_index in (0, 1, 2, 3))
    assert squares > 0.7  # 4 of 8 slices hold the foreground and draw most of the picks
